import { readdirSync, readFileSync } from 'node:fs';
import {
  AbortedError,
  AddressInUseError,
  ConnectTimeoutError,
  HandshakeRejectedError,
  InvalidOptionError,
  LinkClosedError,
  realClock,
  SeededRandom,
  silentLogger,
  TransportClosedError,
} from '@clusterinfra/core';
import { describe, expect, it } from 'vitest';
import { createMemoryNetwork, memory, type MemoryNetwork } from '../src/index.js';
import { connect, failure, frame, range, record, seqOf, settle, world } from './helpers.js';

function invalid(fn: () => unknown): InvalidOptionError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect((err as InvalidOptionError).code).toBe('CONFIG_ERR_INVALID_OPTION');
    return err as InvalidOptionError;
  }
  throw new Error('expected InvalidOptionError');
}

describe('options', () => {
  const network = createMemoryNetwork();
  const ctx = {
    identity: { clusterName: 'c', nodeNum: 1, incarnation: 1 },
    clock: realClock,
    random: new SeededRandom(1),
    logger: silentLogger,
  };

  it('rejects bad transport options with the option path', () => {
    expect(invalid(() => memory({ network, maxFrameSize: 0 })).path).toBe('maxFrameSize');
    expect(invalid(() => memory({ network, maxFrameSize: 64 * 1024 * 1024 + 1 })).path).toBe('maxFrameSize');
    expect(invalid(() => memory({ network, highWaterMark: -1 })).path).toBe('highWaterMark');
    expect(invalid(() => memory({ network, connectTimeoutMs: Number.NaN })).path).toBe('connectTimeoutMs');
    expect(invalid(() => memory({ network, address: '' })).path).toBe('address');
    expect(invalid(() => memory({ network, secret: '' })).path).toBe('secret');
    expect(invalid(() => memory({ network: {} as MemoryNetwork })).path).toBe('network');
    expect(invalid(() => memory(undefined as never)).path).toBe('network');
    expect(invalid(() => memory({ network, bogus: 1 } as never)).message).toMatch(/bogus/);
  });

  it('rejects a bad identity when the transport is created', () => {
    const factory = memory({ network });
    const err = invalid(() => factory.create({ ...ctx, identity: { ...ctx.identity, nodeNum: 0 } }));
    expect(err.path).toBe('identity.nodeNum');
  });

  it('rejects bad network options and fault settings with the option path', () => {
    expect(invalid(() => createMemoryNetwork({ faults: { dropRate: 2 } })).path).toBe('faults.dropRate');
    expect(invalid(() => createMemoryNetwork({ traceLimit: -1 })).path).toBe('traceLimit');
    expect(invalid(() => createMemoryNetwork({ clock: {} as never })).path).toBe('clock');
    expect(invalid(() => createMemoryNetwork({ seed: {} as never })).path).toBe('seed');
    expect(invalid(() => network.setLinkFaults('a', 'b', { latencyMs: -5 })).path).toBe('latencyMs');
    expect(invalid(() => network.setDefaultFaults({ reorderRate: 1.5 })).path).toBe('reorderRate');
  });

  it('uses the defaults and declares its capabilities', () => {
    const t = memory({ network }).create(ctx);
    expect(t.kind).toBe('memory');
    expect(t.address).toBe('node-1');
    expect(t.capabilities).toEqual({
      maxFrameSize: 1024 * 1024,
      nativeBulk: false,
      authentication: true,
      encryption: false,
      crashSimulation: true,
    });
    expect(memory({ network, maxFrameSize: 8 * 1024 * 1024 }).create(ctx).capabilities.maxFrameSize).toBe(8 * 1024 * 1024);
    expect(memory({ network, address: 'db-1' }).create(ctx).address).toBe('db-1');
  });
});

describe('listen and connect', () => {
  it('refuses a second listener on a taken address', async () => {
    const w = world();
    await w.node(1).listen();
    await expect(w.node(1).listen()).rejects.toBeInstanceOf(AddressInUseError);
    const other = w.node(2, { address: 'node-1' });
    await expect(other.listen()).rejects.toMatchObject({ code: 'TRANSPORT_ERR_ADDRESS_IN_USE' });
  });

  it('frees the address when the listener closes', async () => {
    const w = world();
    const l = await w.node(1).listen();
    let closes = 0;
    l.on('close', () => closes++);
    await l.close();
    await l.close();
    expect(closes).toBe(1);
    expect(w.network.isListening('node-1')).toBe(false);
    const err = (await failure(w.clock, w.node(2).connect('node-1'))) as { code: string; retryable: boolean };
    expect(err.code).toBe('TRANSPORT_ERR_CONNECTION_REFUSED');
    await w.node(1).listen();
  });

  it('refuses a connection to its own node number (identity)', async () => {
    const w = world();
    const l = await w.node(1).listen();
    const rejected: string[] = [];
    l.on('rejected', (info) => rejected.push((info.error as HandshakeRejectedError).reason));
    const err = await failure(w.clock, w.node(1, { address: 'elsewhere' }).connect(l.address));
    expect(err).toBeInstanceOf(HandshakeRejectedError);
    expect((err as HandshakeRejectedError).reason).toBe('identity');
    expect((err as HandshakeRejectedError).by).toBe('remote');
    expect(rejected).toEqual(['identity']);
  });

  it('refuses a peer with a secret when the listener has none (auth), and says so on both sides', async () => {
    const w = world();
    const l = await w.node(1).listen();
    const rejected: HandshakeRejectedError[] = [];
    l.on('rejected', (info) => {
      expect(info.remoteAddress).toBe('node-2');
      expect(info.remote?.nodeNum).toBe(2);
      rejected.push(info.error as HandshakeRejectedError);
    });
    const err = await failure(w.clock, w.node(2, { secret: 'x' }).connect(l.address));
    expect((err as HandshakeRejectedError).reason).toBe('auth');
    expect(rejected.map((e) => [e.reason, e.by])).toEqual([['auth', 'local']]);
    const ok = await settle(w.clock, w.node(3).connect(l.address));
    expect(ok.remote.nodeNum).toBe(1);
  });

  it('honours timeoutMs and the abort signal', async () => {
    const w = world();
    const n1 = w.node(1);
    const l = await n1.listen();
    w.network.partition('node-1', 'node-2');
    const n2 = w.node(2);
    const t0 = w.clock.now();
    expect(await failure(w.clock, n2.connect(l.address, { timeoutMs: 20 }))).toBeInstanceOf(ConnectTimeoutError);
    expect(w.clock.now() - t0).toBe(20);
    const ac = new AbortController();
    const pending = n2.connect(l.address, { signal: ac.signal });
    await w.clock.advance(100);
    ac.abort(new Error('stop'));
    expect(await failure(w.clock, pending)).toBeInstanceOf(AbortedError);
    await expect(n2.connect(l.address, { signal: ac.signal })).rejects.toBeInstanceOf(AbortedError);
    await expect(n2.listen({ signal: ac.signal })).rejects.toBeInstanceOf(AbortedError);
    expect(w.clock.pending).toBe(0); // no timer left behind
  });

  it('fails pending connects when the transport closes, and refuses new ones', async () => {
    const w = world({ faults: { latencyMs: 100 } });
    const l = await w.node(1).listen();
    const n2 = w.node(2);
    const pending = n2.connect(l.address);
    await w.clock.advance(10);
    const closing = n2.close();
    expect(await failure(w.clock, pending)).toBeInstanceOf(TransportClosedError);
    await settle(w.clock, closing);
    await expect(n2.connect(l.address)).rejects.toBeInstanceOf(TransportClosedError);
    await expect(n2.listen()).rejects.toBeInstanceOf(TransportClosedError);
  });
});

describe('links', () => {
  it('copies frames on send: the receiver never shares memory with the sender', async () => {
    const w = world();
    const p = await connect(w, await w.node(1).listen(), w.node(2));
    const got: Uint8Array[] = [];
    p.in.on('frame', (f) => got.push(f));
    const sent = frame(1, 16);
    p.out.send(sent);
    sent.fill(0xee);
    await w.clock.advance(0);
    expect(seqOf(got[0]!)).toBe(1);
    expect(got[0]!.buffer).not.toBe(sent.buffer);
    const view = new Uint8Array(new ArrayBuffer(32), 8, 8).fill(3);
    p.out.send(view);
    await w.clock.advance(0);
    expect(got[1]!.byteLength).toBe(8);
    expect([...got[1]!]).toEqual(new Array(8).fill(3));
  });

  it('counts unconsumed bytes as buffered while the receiver is paused, then drains', async () => {
    const w = world();
    const n2 = w.node(2, { highWaterMark: 1000 });
    const p = await connect(w, await w.node(1).listen(), n2, false);
    expect(p.out.send(frame(0, 600))).toBe(true);
    expect(p.out.send(frame(1, 600))).toBe(false);
    expect(p.out.needDrain).toBe(true);
    await w.clock.advance(1000);
    expect(p.out.bufferedBytes).toBe(1200); // delivered to the paused end, not consumed
    const got = record(p.in);
    const drained = p.out.waitDrain();
    p.in.resume();
    await drained;
    expect(got).toEqual([0, 1]);
    expect(p.out.bufferedBytes).toBe(0);
    expect(p.out.needDrain).toBe(false);
  });

  it('uses the smaller maximum frame size of the two ends', async () => {
    const w = world();
    const p = await connect(w, await w.node(1, { maxFrameSize: 100 }).listen(), w.node(2));
    expect(() => p.out.send(new Uint8Array(101))).toThrow(/exceeds the maximum of 100/);
    expect(p.out.send(new Uint8Array(100))).toBe(true);
  });

  it('closes gracefully under latency: everything sent first, then remote-closed', async () => {
    const w = world({ faults: { latencyMs: 30, jitterMs: 20 }, seed: 5 });
    const p = await connect(w, await w.node(1).listen(), w.node(2));
    const got = record(p.in);
    const events: string[] = [];
    p.in.on('close', (i) => events.push(`in:${i.reason}:${got.length}`));
    for (const i of range(50)) p.out.send(frame(i));
    const closed = p.out.close();
    expect(p.out.state).toBe('closing');
    expect(() => p.out.send(frame(99))).toThrow(LinkClosedError);
    expect((await settle(w.clock, closed)).reason).toBe('closed');
    expect(events).toEqual(['in:remote-closed:50']);
    expect(got).toEqual(range(50));
  });

  it('a graceful close waits until a paused receiver consumed what it holds', async () => {
    const w = world();
    const p = await connect(w, await w.node(1).listen(), w.node(2), false);
    p.out.send(frame(1));
    await settle(w.clock, p.out.close());
    await w.clock.advance(10);
    expect(p.in.state).toBe('closing');
    const got = record(p.in);
    p.in.resume();
    expect(got).toEqual([1]);
    expect((await p.in.closed).reason).toBe('remote-closed');
  });

  it('closing both ends at once closes both as closed', async () => {
    const w = world({ faults: { latencyMs: 10 } });
    const p = await connect(w, await w.node(1).listen(), w.node(2));
    const [a, b] = await settle(w.clock, Promise.all([p.out.close(), p.in.close()]));
    expect([a.reason, b.reason]).toEqual(['closed', 'closed']);
  });

  it('transport.destroy resets the peers; transport.close closes gracefully and is idempotent', async () => {
    const w = world();
    const l = await w.node(1).listen();
    const n2 = w.node(2);
    const n3 = w.node(3);
    const a = await connect(w, l, n2);
    const b = await connect(w, l, n3);
    n2.destroy();
    expect((await a.out.closed).reason).toBe('destroyed');
    await w.clock.advance(0);
    expect((await a.in.closed).reason).toBe('reset');
    const c1 = n3.close();
    const c2 = n3[Symbol.asyncDispose]();
    await settle(w.clock, Promise.all([c1, c2]));
    expect(n3.close()).toBe(c1);
    expect((await b.in.closed).reason).toBe('remote-closed');
    expect(n3.linkCount).toBe(0);
  });

  it('a throwing frame handler does not wedge the network', async () => {
    const w = world();
    const p = await connect(w, await w.node(1).listen(), w.node(2));
    const errors: unknown[] = [];
    const onError = (err: unknown): void => {
      errors.push(err);
    };
    process.prependListener('uncaughtException', onError);
    const listeners = process.listeners('uncaughtException').filter((f) => f !== onError);
    for (const f of listeners) process.off('uncaughtException', f);
    try {
      const got: number[] = [];
      p.in.on('frame', (f) => {
        got.push(seqOf(f));
        if (seqOf(f) === 0) throw new Error('handler bug');
      });
      p.out.send(frame(0));
      p.out.send(frame(1));
      await w.clock.advance(0);
      await new Promise((r) => setImmediate(r));
      expect(got).toEqual([0, 1]);
      expect(errors.map((e) => (e as Error).message)).toEqual(['handler bug']);
    } finally {
      process.off('uncaughtException', onError);
      for (const f of listeners) process.on('uncaughtException', f);
    }
  });
});

describe('scheduling and trace', () => {
  it('arms one clock timer for the whole queue, not one per frame', async () => {
    const w = world({ faults: { latencyMs: 10, jitterMs: 5 } });
    const p = await connect(w, await w.node(1).listen(), w.node(2));
    const got = record(p.in);
    const before = w.clock.fired;
    for (const i of range(1000)) p.out.send(frame(i));
    expect(w.clock.pending).toBe(1);
    await w.clock.advance(100);
    expect(got).toEqual(range(1000));
    expect(w.clock.fired - before).toBeLessThan(1000);
  });

  it('keeps a bounded trace with a running hash, and counts', async () => {
    const w = world({ traceLimit: 10 });
    const p = await connect(w, await w.node(1).listen(), w.node(2));
    const seen: string[] = [];
    w.network.on('trace', (e) => seen.push(e.event));
    const h0 = w.network.traceHash();
    for (const i of range(30)) p.out.send(frame(i));
    await w.clock.advance(0);
    expect(w.network.trace.length).toBe(10);
    expect(w.network.traceLength).toBeGreaterThan(30);
    expect(w.network.trace.at(-1)!.event).toBe('deliver');
    expect(w.network.trace.at(-1)!.frame).toBe(30);
    expect(w.network.trace.map((e) => e.index)).toEqual(range(10).map((i) => w.network.traceLength - 10 + i));
    expect(seen.filter((e) => e === 'deliver').length).toBe(30);
    expect(w.network.traceHash()).not.toBe(h0);
    expect(w.network.traceHash()).toMatch(/^[0-9a-f]{64}$/);
    expect(w.network.stats()).toMatchObject({ sent: 30, delivered: 30, connections: 1, queued: 0 });
  });

  it('networks are independent worlds', async () => {
    const a = world();
    const b = world();
    await a.node(1).listen();
    await b.node(1).listen(); // same address, other world
    const err = (await failure(b.clock, b.node(2).connect('node-7'))) as { code: string };
    expect(err.code).toBe('TRANSPORT_ERR_CONNECTION_REFUSED');
    expect(b.network.stats().refused).toBe(1);
    expect(a.network.stats().refused).toBe(0);
    expect(a.network.traceHash()).not.toBe(b.network.traceHash());
  });

  it('src never reads time or chance behind the clock and the seeded random source', () => {
    const dir = new URL('../src/', import.meta.url);
    const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(3);
    for (const f of files) {
      const code = readFileSync(new URL(f, dir), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
      expect(code, f).not.toMatch(/Math\.random|Date\.now|performance\.now|(?<![.\w])set(Timeout|Interval|Immediate)\s*\(/);
    }
  });
});

describe('network.destroy', () => {
  it('ends every transport and leaves no timer behind', async () => {
    const w = world({ faults: { latencyMs: 50 } });
    const n1 = w.node(1);
    const l = await n1.listen();
    const p = await connect(w, l, w.node(2));
    p.out.send(frame(1));
    const pending = w.node(3).connect(l.address);
    await w.network[Symbol.asyncDispose]();
    expect(p.out.state).toBe('closed');
    expect(p.in.state).toBe('closed');
    expect(await failure(w.clock, pending)).toBeInstanceOf(TransportClosedError);
    expect(w.clock.pending).toBe(0);
    expect(w.network.stats()).toMatchObject({ queued: 0, holding: 0, openConnections: 0 });
    expect(w.network.isListening('node-1')).toBe(false);
  });
});
