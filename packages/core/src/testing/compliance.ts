/**
 * The transport compliance suite. Every transport runs it from one test
 * file:
 *
 *   import { transportComplianceSuite } from '@clusterinfra/core/testing';
 *   transportComplianceSuite('tcp', () => ({ create: (o) => tcp({...}).create(...) }));
 *
 * Cases that need a capability the transport does not declare are skipped
 * (and reported as skipped by vitest, so the gap is visible).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Link, LinkCloseInfo, Listener, Transport } from '../contracts/transport.js';
import {
  ClusterInfraError,
  FrameTooLargeError,
  HandshakeRejectedError,
  LinkClosedError,
} from '../errors/index.js';

export interface HarnessNodeOptions {
  nodeNum: number;
  /** @default 'compliance' */
  clusterName?: string;
  /** Shared secret, for transports that authenticate. */
  secret?: string;
}

export interface ComplianceHarness {
  /** Create a transport for one node. The suite closes what it creates. */
  create(options: HarnessNodeOptions): Transport | Promise<Transport>;
  /** An address in the transport's format where nothing listens. */
  unusedAddress(): string | Promise<string>;
  /**
   * Make the node behind `transport` die abruptly, as a process crash would:
   * its links end without a goodbye. Needed when `crashSimulation` is declared.
   */
  crash?(transport: Transport): void | Promise<void>;
  /** Called after each case; the suite makes a new harness for the next one. */
  teardown?(): void | Promise<void>;
}

export interface ComplianceOptions {
  /** Largest frame the size cases send; capped to keep the suite fast. @default min(maxFrameSize, 4 MiB) */
  largestFrame?: number;
  /** Links opened by the "many links" case. @default 32 */
  manyLinks?: number;
  /**
   * The reason a peer from another cluster is refused with. A transport whose
   * nodes share a secret may answer it like a wrong secret (`auth`), so that a
   * stranger cannot probe for the cluster name. @default 'cluster-name'
   */
  otherClusterReason?: 'cluster-name' | 'auth';
}

const CLUSTER = 'compliance';

function frameOf(seq: number, size: number): Uint8Array {
  const f = new Uint8Array(size);
  for (let i = 0; i < size; i++) f[i] = (seq * 31 + i * 7) & 0xff;
  if (size >= 4) new DataView(f.buffer).setUint32(0, seq);
  return f;
}

function seqOf(frame: Uint8Array): number {
  return new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(0);
}

function checkFrame(frame: Uint8Array, seq: number, size: number): void {
  expect(frame.byteLength).toBe(size);
  const want = frameOf(seq, size);
  // Compare as buffers: expect on a multi-megabyte array is slow.
  expect(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength).equals(Buffer.from(want))).toBe(true);
}

/** Collects frames of a link and resolves when `count` arrived. */
function collect(link: Link, count: number): Promise<Uint8Array[]> {
  const frames: Uint8Array[] = [];
  return new Promise((resolve, reject) => {
    if (count === 0) return resolve(frames);
    link.on('frame', (f) => {
      frames.push(f);
      if (frames.length === count) resolve(frames);
    });
    link.on('close', (info) => {
      if (frames.length < count)
        reject(new Error(`link closed (${info.reason}) after ${frames.length} of ${count} frames`));
    });
    link.resume();
  });
}

function nextLink(listener: Listener): Promise<Link> {
  return new Promise((resolve) => listener.once('link', resolve));
}

function nextClose(link: Link): Promise<LinkCloseInfo> {
  return link.closed;
}

export function transportComplianceSuite(
  name: string,
  makeHarness: () => ComplianceHarness | Promise<ComplianceHarness>,
  options: ComplianceOptions = {},
): void {
  describe(`transport compliance: ${name}`, () => {
    let harness: ComplianceHarness | undefined;
    const created: Transport[] = [];

    async function node(nodeNum: number, extra: Partial<HarnessNodeOptions> = {}): Promise<Transport> {
      harness ??= await makeHarness();
      const t = await harness.create({ nodeNum, clusterName: CLUSTER, ...extra });
      created.push(t);
      return t;
    }

    /** Two nodes, node 1 listening, node 2 connected to it; both ends resumed by the caller. */
    async function pair(extra: { server?: Partial<HarnessNodeOptions>; client?: Partial<HarnessNodeOptions> } = {}) {
      const server = await node(1, extra.server);
      const client = await node(2, extra.client);
      const listener = await server.listen();
      const accepted = nextLink(listener);
      const outbound = await client.connect(listener.address);
      const inbound = await accepted;
      return { server, client, listener, outbound, inbound };
    }

    // A fresh harness per case: no state leaks from one case to the next.
    afterEach(async () => {
      for (const t of created.splice(0)) t.destroy();
      await harness?.teardown?.();
      harness = undefined;
    });

    it('connects and both ends know each other', async () => {
      const { outbound, inbound, server, client } = await pair();
      expect(outbound.direction).toBe('outbound');
      expect(inbound.direction).toBe('inbound');
      expect(outbound.remote).toEqual(server.identity);
      expect(inbound.remote).toEqual(client.identity);
      expect(outbound.local).toEqual(client.identity);
      expect(outbound.state).toBe('open');
      expect(inbound.flowing).toBe(false);
    });

    it('delivers frames whole and in order, both ways', async () => {
      const { outbound, inbound } = await pair();
      const n = 2000;
      const gotIn = collect(inbound, n);
      const gotOut = collect(outbound, n);
      for (let i = 0; i < n; i++) {
        outbound.send(frameOf(i, 4 + (i % 97)));
        inbound.send(frameOf(i, 4 + (i % 89)));
      }
      const [a, b] = await Promise.all([gotIn, gotOut]);
      a.forEach((f, i) => checkFrame(f, i, 4 + (i % 97)));
      b.forEach((f, i) => checkFrame(f, i, 4 + (i % 89)));
    });

    it('holds frames until resume()', async () => {
      const { outbound, inbound, client, listener } = await pair();
      let early = 0;
      inbound.on('frame', () => early++);
      outbound.send(frameOf(7, 8));
      // Give delivery every chance to happen while paused: a frame on a
      // second link between the same nodes travels and is delivered.
      const accepted = nextLink(listener);
      const second = await client.connect(listener.address);
      const secondIn = await accepted;
      const probe = collect(secondIn, 1);
      second.send(frameOf(1, 8));
      await probe;
      expect(early).toBe(0);
      const got = collect(inbound, 1);
      const [f] = await got;
      checkFrame(f!, 7, 8);
      expect(early).toBe(1);
    });

    it('carries frames from 0 bytes up to the maximum size', async () => {
      const { outbound, inbound, client } = await pair();
      const max = Math.min(client.capabilities.maxFrameSize, options.largestFrame ?? 4 * 1024 * 1024);
      const sizes = [0, 1, 2, 3, 4, 100, 65_535, 65_536, 65_537, max - 1, max];
      const got = collect(inbound, sizes.length);
      sizes.forEach((size, i) => outbound.send(frameOf(i, size)));
      const frames = await got;
      frames.forEach((f, i) => {
        expect(f.byteLength).toBe(sizes[i]);
        if (sizes[i]! >= 4) checkFrame(f, i, sizes[i]!);
      });
    });

    it('sends a frame given in parts as one frame', async () => {
      const { outbound, inbound } = await pair();
      const got = collect(inbound, 3);
      const whole = frameOf(5, 100_000);
      outbound.sendv([whole.subarray(0, 10), whole.subarray(10, 50_000), whole.subarray(50_000)]);
      outbound.sendv([]);
      outbound.sendv([frameOf(6, 8)]);
      const frames = await got;
      checkFrame(frames[0]!, 5, 100_000);
      expect(frames[1]!.byteLength).toBe(0);
      checkFrame(frames[2]!, 6, 8);
    });

    it('refuses a frame over the maximum and keeps the link usable', async () => {
      const { outbound, inbound, client } = await pair();
      const max = client.capabilities.maxFrameSize;
      if (max > 64 * 1024 * 1024) return; // allocating max+1 would dominate the suite
      expect(() => outbound.send(new Uint8Array(max + 1))).toThrow(FrameTooLargeError);
      expect(() => outbound.sendv([new Uint8Array(max), new Uint8Array(1)])).toThrow(FrameTooLargeError);
      try {
        outbound.send(new Uint8Array(max + 1));
      } catch (err) {
        expect((err as ClusterInfraError).code).toBe('TRANSPORT_ERR_FRAME_TOO_LARGE');
      }
      const got = collect(inbound, 1);
      outbound.send(frameOf(1, 16));
      checkFrame((await got)[0]!, 1, 16);
      expect(outbound.state).toBe('open');
    });

    it('reports backpressure and drains once the receiver reads', async () => {
      const { outbound, inbound } = await pair();
      const size = 64 * 1024;
      let sent = 0;
      // The receiver is paused: the sender must see `false` long before memory grows without bound.
      while (outbound.send(frameOf(sent, size))) {
        sent++;
        if (sent > 20_000) throw new Error('send never reported backpressure');
        if (sent % 64 === 0) await new Promise((r) => setImmediate(r)); // allowed: the suite runs on real transports and yields so they can flush
      }
      sent++;
      expect(outbound.needDrain).toBe(true);
      const drained = outbound.waitDrain();
      const got = collect(inbound, sent);
      await drained;
      expect(outbound.needDrain).toBe(false);
      const frames = await got;
      expect(frames.length).toBe(sent);
      frames.forEach((f, i) => expect(seqOf(f)).toBe(i));
    });

    it('honours a high-water mark changed on the link', async () => {
      const { outbound, inbound } = await pair();
      expect(() => outbound.setHighWaterMark(0)).toThrow(ClusterInfraError);
      outbound.setHighWaterMark(1024);
      expect(outbound.highWaterMark).toBe(1024);
      // The receiver is paused: a 4 KiB frame already passes the mark.
      expect(outbound.send(frameOf(0, 4096))).toBe(false);
      expect(outbound.needDrain).toBe(true);
      const drained = outbound.waitDrain();
      const got = collect(inbound, 1);
      await drained;
      checkFrame((await got)[0]!, 0, 4096);
      // Raising the mark above what is buffered drains at once.
      outbound.setHighWaterMark(1);
      outbound.send(frameOf(1, 64));
      expect(outbound.needDrain).toBe(true);
      outbound.setHighWaterMark(16 * 1024 * 1024);
      expect(outbound.needDrain).toBe(false);
    });

    for (const closer of ['outbound', 'inbound'] as const) {
      it(`closes gracefully from the ${closer} end: every frame sent before close arrives`, async () => {
        const p = await pair();
        const [closing, other] = closer === 'outbound' ? [p.outbound, p.inbound] : [p.inbound, p.outbound];
        const n = 500;
        const got = collect(other, n);
        for (let i = 0; i < n; i++) closing.send(frameOf(i, 1000));
        const closed = closing.close();
        expect(closing.state).not.toBe('open');
        expect(() => closing.send(frameOf(0, 4))).toThrow(LinkClosedError);
        const frames = await got;
        frames.forEach((f, i) => checkFrame(f, i, 1000));
        expect((await nextClose(other)).reason).toBe('remote-closed');
        expect((await closed).reason).toBe('closed');
        expect(other.state).toBe('closed');
        expect(() => other.send(frameOf(0, 4))).toThrow(LinkClosedError);
      });

      it(`destroys from the ${closer} end: the peer sees a reset, not a graceful close`, async () => {
        const p = await pair();
        const [closing, other] = closer === 'outbound' ? [p.outbound, p.inbound] : [p.inbound, p.outbound];
        other.resume();
        const otherClosed = nextClose(other);
        closing.destroy();
        expect(closing.state).toBe('closed');
        expect((await closing.closed).reason).toBe('destroyed');
        const info = await otherClosed;
        expect(info.reason).toBe('reset');
      });
    }

    it('emits exactly one close event per link', async () => {
      const { outbound, inbound } = await pair();
      let outCloses = 0;
      let inCloses = 0;
      outbound.on('close', () => outCloses++);
      inbound.on('close', () => inCloses++);
      inbound.resume();
      outbound.resume();
      await outbound.close();
      outbound.destroy();
      await outbound.close();
      await inbound.closed;
      inbound.destroy();
      expect([outCloses, inCloses]).toEqual([1, 1]);
    });

    it('disposes a link with await using semantics', async () => {
      const { outbound, inbound } = await pair();
      inbound.resume();
      await outbound[Symbol.asyncDispose]();
      expect(outbound.state).toBe('closed');
      expect((await inbound.closed).reason).toBe('remote-closed');
    });

    it('reports a crashed peer as a reset', async (ctx) => {
      harness ??= await makeHarness();
      const probe = await node(9);
      if (!probe.capabilities.crashSimulation || !harness.crash) {
        ctx.skip();
        return;
      }
      const { outbound, inbound, server } = await pair();
      outbound.resume();
      inbound.resume();
      await harness.crash(server);
      const info = await outbound.closed;
      expect(info.reason).toBe('reset');
      expect(() => outbound.send(frameOf(0, 4))).toThrow(LinkClosedError);
    });

    it('handles many links at once', async () => {
      const server = await node(1);
      const listener = await server.listen();
      const count = options.manyLinks ?? 32;
      const perLink = 20;
      const inboundFrames = new Map<number, number[]>();
      let done!: () => void;
      const allIn = new Promise<void>((r) => (done = r));
      let total = 0;
      listener.on('link', (link) => {
        link.on('frame', (f) => {
          const list = inboundFrames.get(link.remote.nodeNum) ?? [];
          list.push(seqOf(f));
          inboundFrames.set(link.remote.nodeNum, list);
          link.send(f); // echo
          if (++total === count * perLink) done();
        });
        link.resume();
      });
      const clients = await Promise.all(Array.from({ length: count }, (_, i) => node(100 + i)));
      const links = await Promise.all(clients.map((c) => c.connect(listener.address)));
      const echoes = links.map((l) => collect(l, perLink));
      for (const l of links) for (let i = 0; i < perLink; i++) l.send(frameOf(i, 64));
      await allIn;
      const back = await Promise.all(echoes);
      for (const frames of back) expect(frames.map(seqOf)).toEqual(Array.from({ length: perLink }, (_, i) => i));
      expect([...inboundFrames.keys()].sort((a, b) => a - b)).toEqual(clients.map((c) => c.identity.nodeNum));
      for (const list of inboundFrames.values()) expect(list).toEqual(Array.from({ length: perLink }, (_, i) => i));
    });

    it('refuses a peer from another cluster, and says why on both sides', async () => {
      const server = await node(1);
      const stranger = await node(2, { clusterName: 'other-cluster' });
      const listener = await server.listen();
      let accepted = 0;
      listener.on('link', () => accepted++);
      const rejected = new Promise<ClusterInfraError>((r) => listener.once('rejected', (info) => r(info.error)));
      const err = await stranger.connect(listener.address).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(HandshakeRejectedError);
      const reason = options.otherClusterReason ?? 'cluster-name';
      expect((err as HandshakeRejectedError).reason).toBe(reason);
      expect((err as HandshakeRejectedError).by).toBe('remote');
      const local = await rejected;
      expect(local).toBeInstanceOf(HandshakeRejectedError);
      expect((local as HandshakeRejectedError).reason).toBe(reason);
      expect(accepted).toBe(0);
    });

    it('refuses a wrong or missing secret', async (ctx) => {
      harness ??= await makeHarness();
      const probe = await node(9, { secret: 'probe secret, sixteen bytes or more' });
      if (!probe.capabilities.authentication) {
        ctx.skip();
        return;
      }
      const server = await node(1, { secret: 'the right secret, long enough to pass' });
      const listener = await server.listen();
      let accepted = 0;
      listener.on('link', () => accepted++);
      for (const secret of ['a wrong secret, just as long as the right one', undefined]) {
        const client = await node(2, secret === undefined ? {} : { secret });
        const err = await client.connect(listener.address).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(HandshakeRejectedError);
        expect((err as HandshakeRejectedError).reason).toBe('auth');
      }
      const good = await node(3, { secret: 'the right secret, long enough to pass' });
      const linked = nextLink(listener); // may come a moment after connect() resolved
      const link = await good.connect(listener.address);
      expect(link.remote.nodeNum).toBe(1);
      expect((await linked).remote.nodeNum).toBe(3);
      expect(accepted).toBe(1);
    });

    it('fails to connect where nothing listens, with a typed error', async () => {
      const client = await node(2);
      harness ??= await makeHarness();
      const err = await client.connect(await harness.unusedAddress()).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ClusterInfraError);
      expect((err as ClusterInfraError).code).toBe('TRANSPORT_ERR_CONNECTION_REFUSED');
      expect((err as ClusterInfraError).retryable).toBe(true);
    });

    it('refuses listen and connect options it cannot take with InvalidOptionError, before anything is dialled', async () => {
      const server = await node(1);
      const client = await node(2);
      const listener = await server.listen();
      const path = async (p: Promise<unknown>): Promise<unknown> =>
        p.then(
          () => 'resolved',
          (e: unknown) => (e instanceof ClusterInfraError && e.code === 'CONFIG_ERR_INVALID_OPTION' ? (e as ClusterInfraError & { path: string }).path : e),
        );
      for (const [options, where] of [
        [null, '(root)'],
        [5, '(root)'],
        [{ signal: 5 }, 'signal'],
        [{ signal: {} }, 'signal'],
        [{ timeoutMs: -1 }, 'timeoutMs'],
        [{ timeoutMs: Number.NaN }, 'timeoutMs'],
        [{ timeoutMs: '100' }, 'timeoutMs'],
      ] as const) {
        expect(await path(client.connect(listener.address, options as never)), JSON.stringify(options)).toBe(where);
      }
      for (const [options, where] of [
        [null, '(root)'],
        [{ signal: 5 }, 'signal'],
      ] as const) {
        expect(await path(server.listen(options as never)), JSON.stringify(options)).toBe(where);
      }
      // The transport is still usable: a good connect goes through.
      const accepted = nextLink(listener);
      await client.connect(listener.address);
      expect((await accepted).remote).toEqual(client.identity);
    });

    it('closes the whole transport: links end gracefully, no new connections', async () => {
      const { server, client, listener, outbound, inbound } = await pair();
      outbound.resume();
      inbound.resume();
      const address = listener.address;
      await client.close();
      expect((await outbound.closed).reason).toBe('closed');
      expect((await inbound.closed).reason).toBe('remote-closed');
      const err = await client.connect(address).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as ClusterInfraError).code).toBe('TRANSPORT_ERR_TRANSPORT_CLOSED');
      await server.close();
      const late = await node(5);
      const refused = await late.connect(address).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((refused as ClusterInfraError).code).toBe('TRANSPORT_ERR_CONNECTION_REFUSED');
    });
  });
}
