/**
 * What a peer that passed the handshake can make this node hold, over the
 * memory transport (issue 15, section 1). The peer speaks the wire format
 * itself (rogue.ts); the TCP twin is packages/transport-tcp/test/ics-hostile.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type HandlerContext, type Ics, type IcsOptions, WireStatus } from '@clusterinfra/core';
import { FrameType, type ResponseFrame } from '../../src/ics/wire/index.js';
import { deferred, makeCluster, type TestCluster } from './harness.js';
import { onDefault, rogue, type Rogue } from './rogue.js';

let cluster: TestCluster | undefined;
const rogues: Rogue[] = [];
afterEach(async () => {
  for (const r of rogues.splice(0)) r.close();
  await cluster?.close();
  cluster = undefined;
});

const SINK = { channel: 'default', subservice: 1 };

async function target(extra: Partial<IcsOptions> = {}): Promise<Ics> {
  cluster = await makeCluster('memory', 1, { extra: () => extra });
  const t = cluster.node(1);
  t.registerService({ ...SINK, name: 'sink', handlers: { put: (x) => (Array.isArray(x) ? x.length : 0) } });
  return t;
}

async function attacker(t: Ics, nodeNum: number): Promise<Rogue> {
  const r = await rogue(cluster!.network!, t, nodeNum);
  rogues.push(r);
  return r;
}

const responses = (r: Rogue): ResponseFrame[] => r.frames.filter((f): f is ResponseFrame => f.type === FrameType.Response);

async function answered(r: Rogue, id: number): Promise<ResponseFrame> {
  await expect.poll(() => responses(r).some((f) => f.id === id)).toBe(true);
  return responses(r).find((f) => f.id === id)!;
}

describe('ICS bounds: out-of-line references', () => {
  it('refuses values for an unknown service before holding any of them', async () => {
    const t = await target();
    const r = await attacker(t, 50);
    r.bulkMessage({ id: 1, service: onDefault(99), refs: 500 });
    r.bulkMessage({ id: 2, service: onDefault(99), refs: 500, firstStream: 501, oneWay: true });
    r.bulkMessage({ id: 3, service: onDefault(1), method: 'nope', refs: 500, firstStream: 1001 });
    expect((await answered(r, 1)).status).toBe(WireStatus.NOT_FOUND);
    expect((await answered(r, 3)).status).toBe(WireStatus.NOT_FOUND);
    await expect.poll(() => t.stats().dropped).toBeGreaterThanOrEqual(3);
    expect(t.stats().bulkStreamsPending).toBe(0);
    expect(t.stats().bulkBytesPending).toBe(0);
    // Their chunks are read and dropped.
    for (let s = 1; s <= 1500; s += 100) r.chunk(s, new Uint8Array([1]));
    await expect.poll(() => t.stats().bulkBytesReceived).toBe(15);
    expect(t.stats().bulkStreamsPending).toBe(0);
  });

  it('charges every value at least bulkStreamCost, per peer and node-wide, and keeps nothing for a refused one', async () => {
    const t = await target({ bulkReceiveBudget: 64 * 1024, bulkReceiveBudgetTotal: 96 * 1024, bulkStreamCost: 4096 });
    const a = await attacker(t, 50);
    const b = await attacker(t, 51);
    // 16 one-byte values cost 16 × 4 KiB: the whole per-peer budget.
    a.bulkMessage({ id: 1, service: onDefault(1), refs: 16 });
    await expect.poll(() => t.stats().bulkStreamsPending).toBe(16);
    expect(t.stats().bulkBytesPending).toBe(64 * 1024);
    a.bulkMessage({ id: 2, service: onDefault(1), refs: 1, firstStream: 100 });
    const refused = await answered(a, 2);
    expect(refused.status).toBe(WireStatus.RESOURCE_EXHAUSTED);
    expect(String((refused.body as { message: string }).message)).toContain('per-peer');
    expect(t.stats().bulkStreamsPending).toBe(16);
    // Another identity gets only what is left node-wide.
    b.bulkMessage({ id: 1, service: onDefault(1), refs: 8 });
    await expect.poll(() => t.stats().bulkStreamsPending).toBe(24);
    b.bulkMessage({ id: 2, service: onDefault(1), refs: 1, firstStream: 100 });
    expect(String(((await answered(b, 2)).body as { message: string }).message)).toContain("node's bulk budget");
    expect(t.stats().bulkBytesPending).toBe(96 * 1024);
    // The accepted message is delivered once its values are in, and its charge is released.
    for (let s = 1; s <= 16; s++) a.chunk(s, new Uint8Array([s]));
    const done = await answered(a, 1);
    expect(done.status).toBe(WireStatus.OK);
    expect(done.body).toBe(16);
    expect(t.stats().bulkBytesPending).toBe(32 * 1024);
    expect(t.stats().bulkStreamsPending).toBe(8);
  });

  it('caps the values pending per peer', async () => {
    const t = await target({ maxBulkStreamsPerPeer: 4 });
    const a = await attacker(t, 50);
    a.bulkMessage({ id: 1, service: onDefault(1), refs: 3 });
    a.bulkMessage({ id: 2, service: onDefault(1), refs: 2, firstStream: 10 });
    expect((await answered(a, 2)).status).toBe(WireStatus.RESOURCE_EXHAUSTED);
    expect(t.stats().bulkStreamsPending).toBe(3);
  });

  it('closes a link whose message carries more references than maxBulkRefsPerMessage', async () => {
    const t = await target({ maxBulkRefsPerMessage: 8 });
    const a = await attacker(t, 50);
    a.bulkMessage({ id: 1, service: onDefault(1), refs: 8 });
    await expect.poll(() => t.stats().bulkStreamsPending).toBe(8);
    a.bulkMessage({ id: 2, service: onDefault(1), refs: 9, firstStream: 100 });
    await a.link.closed;
    expect(t.stats().bulkStreamsPending).toBe(0);
    expect(t.stats().bulkBytesPending).toBe(0);
  });

  it('a sender refuses to put more values in one message than maxBulkRefsPerMessage', async () => {
    cluster = await makeCluster('memory', 2, { extra: () => ({ maxBulkRefsPerMessage: 2, bulkThreshold: 1024 }) });
    cluster.node(2).registerService({ ...SINK, name: 'sink', handlers: { put: (x) => (x as unknown[]).length } });
    const big = () => new Uint8Array(2048);
    await expect(cluster.node(1).call(2, SINK, 'put', [big(), big()])).resolves.toBe(2);
    await expect(cluster.node(1).call(2, SINK, 'put', [big(), big(), big()])).rejects.toMatchObject({ code: 'ICS_ERR_RESOURCE_EXHAUSTED' });
  });
});

/** A handler that runs until its signal aborts. */
const untilAborted = (_x: unknown, ctx: HandlerContext): Promise<never> =>
  new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error)));

/** A Request frame to subservice `sub` of the default channel. */
function request(r: Rogue, id: number, sub: number, method: string, body: unknown = null, priority = false): boolean {
  return r.send({ type: FrameType.Request, id, channel: 16, service: onDefault(sub), method, priority, timeoutMs: 60_000, body });
}

describe('ICS bounds: the window is enforced on receipt', () => {
  it('closes the link of a peer that sends more messages than the window granted', async () => {
    const t = await target({ window: { messages: 16, bytes: 1024 * 1024 } });
    t.registerService({ channel: 'default', subservice: 2, name: 'never', handlers: {} });
    let running = 0;
    t.registerService({ channel: 'default', subservice: 3, name: 'hang', handlers: { hang: (x, ctx) => (running++, untilAborted(x, ctx)) } });
    const a = await attacker(t, 50);
    const hang = (id: number): boolean =>
      request(a, id, 3, 'hang', null);
    for (let id = 1; id <= 16; id++) hang(id);
    await expect.poll(() => running).toBe(16);
    expect(t.stats().linksClosedForViolation).toBe(0);
    hang(17);
    const closed = await a.link.closed;
    expect(closed.reason).not.toBe('closed');
    expect(t.stats().linksClosedForViolation).toBe(1);
    expect(running).toBe(16);
  });

  it("grants a channel's window the first time the peer sends on it, and the bulk lane's with its first chunk: one Credit each, none at link-up", async () => {
    const t = await target({ window: { messages: 1024, bytes: 8 * 1024 * 1024 }, bulkWindow: 4 * 1024 * 1024 });
    const a = await attacker(t, 50);
    const credits = (): { channel: number; messages: number; bytes: number }[] =>
      a.frames.filter((f) => f.type === FrameType.Credit).map((f) => ({ channel: f.channel, messages: f.messages, bytes: f.bytes }));
    request(a, 1, 1, 'put', [1]);
    await answered(a, 1);
    // Nothing for the channels the peer never used (the builtins, each with the same window), nor for the bulk lane yet.
    expect(credits()).toEqual([{ channel: 16, messages: 1024 - 16, bytes: 8 * 1024 * 1024 - 256 * 1024 }]);
    request(a, 2, 1, 'put', [2]);
    await answered(a, 2);
    expect(credits()).toHaveLength(1);
    a.bulkMessage({ id: 3, service: onDefault(1), refs: 1, firstStream: 1 });
    a.chunk(1, new Uint8Array([7]));
    await answered(a, 3);
    expect(credits()).toEqual([
      { channel: 16, messages: 1024 - 16, bytes: 8 * 1024 * 1024 - 256 * 1024 },
      { channel: 0, messages: 0, bytes: 3 * 1024 * 1024 },
    ]);
  });

  it('counts bytes by the sender rule: a message may go while a byte of credit is left', async () => {
    const t = await target({ window: { messages: 1024, bytes: 256 * 1024 } });
    let running = 0;
    t.registerService({ channel: 'default', subservice: 3, name: 'hang', handlers: { hang: (x, ctx) => (running++, untilAborted(x, ctx)) } });
    const a = await attacker(t, 50);
    const hang = (id: number): boolean =>
      request(a, id, 3, 'hang', 'x'.repeat(100 * 1024));
    for (let id = 1; id <= 3; id++) hang(id); // 300 KiB: the third went with 56 KiB of credit left
    await expect.poll(() => running).toBe(3);
    hang(4);
    await a.link.closed;
    expect(t.stats().linksClosedForViolation).toBe(1);
    expect(running).toBe(3);
  });

  it('an honest sender never trips it: one-way floods, cancelled and timed-out calls through a small window', async () => {
    cluster = await makeCluster('memory', 2, { extra: () => ({ window: { messages: 16, bytes: 256 * 1024 }, bulkThreshold: 4096 }) });
    const [a, b] = [cluster.node(1), cluster.node(2)];
    let got = 0;
    b.registerService({
      ...SINK,
      name: 'sink',
      handlers: {
        note: () => void got++,
        slow: (_x, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => setTimeout(resolve, 5))),
        echo: (x) => x,
      },
    });
    for (let i = 0; i < 500; i++) await a.send(2, SINK, 'note', i % 10 === 0 ? new Uint8Array(8192) : i);
    const slow = Array.from({ length: 40 }, () => a.call(2, SINK, 'slow', null, { timeoutMs: 20 }).catch(() => 'gave up'));
    const echoes = Array.from({ length: 100 }, (_, i) => a.call(2, SINK, 'echo', 'y'.repeat(i * 100)));
    expect(await Promise.all(slow)).toEqual(Array(40).fill('gave up'));
    expect((await Promise.all(echoes)).length).toBe(100);
    await expect.poll(() => got).toBe(500);
    expect(b.stats().linksClosedForViolation).toBe(0);
    expect(a.stats().linksClosedForViolation).toBe(0);
  });
});

describe("ICS bounds: each peer gets a share of a service's queue", () => {
  it('refuses a flooding peer past its share and serves the others in turn', async () => {
    cluster = await makeCluster('memory', 2);
    const t = cluster.node(1);
    const gate: (() => void)[] = [];
    const order: string[] = [];
    t.registerService({
      ...SINK,
      name: 'one',
      pool: { max: 1, queue: 8, queuePerPeer: 4 },
      handlers: { put: (x) => new Promise<void>((resolve) => gate.push(() => (order.push(String(x)), resolve()))) },
    });
    const a = await attacker(t, 50);
    for (let id = 1; id <= 7; id++) {
      request(a, id, 1, 'put', `a${id}`);
    }
    // One runs, four wait, two are refused.
    await expect.poll(() => responses(a).length).toBe(2);
    expect(responses(a).map((f) => f.status)).toEqual([WireStatus.RESOURCE_EXHAUSTED, WireStatus.RESOURCE_EXHAUSTED]);
    const honest = cluster.node(2).call(1, SINK, 'put', 'b1');
    await expect.poll(() => gate.length).toBe(1);
    // Another node still gets in, and is served after one more of the flooder's, not after all of them.
    await expect.poll(() => t.servingCount(2)).toBe(1);
    for (let i = 0; i < 6; i++) {
      await expect.poll(() => gate.length).toBeGreaterThan(0);
      gate.shift()!();
    }
    await honest;
    expect(order).toEqual(['a1', 'a2', 'b1', 'a3', 'a4', 'a5']);
  });
});

describe('ICS bounds: a peer that does not read', () => {
  it('is not served past linkBacklogHighWater, and is closed once it overruns the window', async () => {
    const t = await target({ linkBacklogHighWater: 64 * 1024, window: { messages: 64, bytes: 8 * 1024 * 1024 } });
    let served = 0;
    t.registerService({ channel: 'default', subservice: 2, name: 'echo', handlers: { echo: (x) => (served++, x) } });
    const a = await attacker(t, 50);
    a.link.pause();
    const echo = (id: number): boolean =>
      request(a, id, 2, 'echo', 'e'.repeat(16 * 1024));
    for (let id = 1; id <= 64; id++) echo(id);
    await expect.poll(() => t.stats().messagesReceived).toBeGreaterThanOrEqual(64);
    // Served until the unread answers passed the mark (64 KiB of 16 KiB answers), then held.
    expect(served).toBeGreaterThanOrEqual(4);
    expect(served).toBeLessThanOrEqual(6);
    expect(t.stats().linksClosedForViolation).toBe(0);
    // The answers it was sent gave back their credit; the held ones did not.
    for (let id = 65; id <= 64 + served; id++) echo(id);
    await new Promise((r) => setTimeout(r, 20));
    expect(t.stats().linksClosedForViolation).toBe(0);
    echo(65 + served);
    await a.link.closed;
    expect(t.stats().linksClosedForViolation).toBe(1);
  });

  it('serves what it held once the peer reads again', async () => {
    const t = await target({ linkBacklogHighWater: 64 * 1024 });
    let served = 0;
    t.registerService({ channel: 'default', subservice: 2, name: 'echo', handlers: { echo: (x) => (served++, x) } });
    const a = await attacker(t, 50);
    a.link.pause();
    for (let id = 1; id <= 40; id++) {
      request(a, id, 2, 'echo', 'e'.repeat(16 * 1024));
    }
    await expect.poll(() => t.stats().messagesReceived).toBeGreaterThanOrEqual(40);
    expect(served).toBeLessThan(40);
    a.link.resume();
    await expect.poll(() => responses(a).length).toBe(40);
    expect(served).toBe(40);
  });

  it('stops reading a peer that floods priority messages it does not read the answers of', async () => {
    const t = await target({ linkBacklogHighWater: 64 * 1024 });
    t.registerService({ channel: 'default', subservice: 2, name: 'echo', handlers: { echo: (x) => x } });
    const a = await attacker(t, 50);
    a.link.pause();
    for (let id = 1; id <= 200; id++) {
      request(a, id, 2, 'echo', 'p'.repeat(16 * 1024), true);
    }
    await new Promise((r) => setTimeout(r, 50));
    // Held past the mark again: the link is no longer read.
    const read = t.stats().messagesReceived;
    expect(read).toBeLessThan(200);
    a.link.resume();
    await expect.poll(() => responses(a).length).toBe(200);
  });

  it('closes a link whose unsent bytes pass linkBacklogMax', async () => {
    const t = await target({ linkBacklogHighWater: 64 * 1024, linkBacklogMax: 1024 * 1024 });
    const gate: (() => void)[] = [];
    t.registerService({
      channel: 'default',
      subservice: 2,
      name: 'big',
      handlers: { big: () => new Promise((resolve) => gate.push(() => resolve('b'.repeat(512 * 1024)))) },
    });
    const a = await attacker(t, 50);
    a.link.pause();
    for (let id = 1; id <= 4; id++) {
      request(a, id, 2, 'big', null);
    }
    await expect.poll(() => gate.length).toBe(4);
    for (const open of gate) open();
    await a.link.closed;
    expect(t.stats().linksClosedForViolation).toBe(1);
  });
});

describe('ICS bounds: peers', () => {
  it('forgets identities that came and went, and keeps refusing a downed incarnation', async () => {
    const t = await target();
    for (let n = 100; n < 140; n++) {
      const r = await attacker(t, n);
      request(r, 1, 1, 'put', [1]);
      await expect.poll(() => responses(r).length).toBe(1);
      r.close();
    }
    await expect.poll(() => t.stats().peers).toBe(0);
    // A downed incarnation stays refused after its entry was forgotten.
    const r = await attacker(t, 200);
    request(r, 1, 1, 'put', [1]);
    await expect.poll(() => responses(r).length).toBe(1);
    await t.nodeDown(200);
    await r.link.closed;
    await expect.poll(() => t.stats().peers).toBe(0);
    const again = await attacker(t, 200);
    await again.link.closed;
    expect(t.isConnected(200)).toBe(false);
    // A new incarnation is welcome.
    const next = await rogue(cluster!.network!, t, 200, 2);
    rogues.push(next);
    request(next, 1, 1, 'put', [1, 2]);
    expect((await answered(next, 1)).body).toBe(2);
  });

  it('forgets a peer whose calls failed for want of an address', async () => {
    cluster = await makeCluster('memory', 1);
    const t = cluster.node(1);
    await expect(t.call(77, SINK, 'put')).rejects.toMatchObject({ code: 'ICS_ERR_UNAVAILABLE' });
    expect(t.stats().peers).toBe(0);
  });
});

describe('ICS bounds: one-way messages', () => {
  it('charge their out-of-line values to the window: trySend asks to wait, and everything arrives', async () => {
    cluster = await makeCluster('memory', 2);
    const [a, b] = [cluster.node(1), cluster.node(2)];
    let got = 0;
    let bytes = 0;
    b.registerService({ ...SINK, name: 'sink', handlers: { put: (x) => void (got++, (bytes += (x as { data: Uint8Array }).data.byteLength)) } });
    await a.call(2, SINK, 'nothing').catch(() => undefined); // link up
    const droppedBefore = b.stats().dropped;
    const total = 48;
    let waits = 0;
    let maxPending = 0;
    for (let i = 0; i < total; i += 4) {
      let flowing = true;
      for (let j = 0; j < 4; j++) flowing = a.trySend(2, SINK, 'put', { i: i + j, data: new Uint8Array(1024 * 1024) }) && flowing;
      maxPending = Math.max(maxPending, b.stats().bulkBytesPending);
      if (!flowing) {
        waits++;
        await new Promise<void>((resolve) => a.once('drain', () => resolve()));
      }
    }
    await expect.poll(() => got, { timeout: 20_000 }).toBe(total);
    expect(bytes).toBe(total * 1024 * 1024);
    // The 8 MiB window holds 8 of them: trySend asked to wait.
    expect(waits).toBeGreaterThan(0);
    expect(maxPending).toBeLessThanOrEqual(9 * 1024 * 1024);
    expect(b.stats().dropped).toBe(droppedBefore);
    expect(a.stats().oneWayDropped).toBe(0);
  });

  it('are never lost silently: send rejects, trySend counts the drop', async () => {
    cluster = await makeCluster('memory', 2, { extra: () => ({ window: { messages: 16, bytes: 256 * 1024 } }) });
    const [a, b] = [cluster.node(1), cluster.node(2)];
    b.registerService({ ...SINK, name: 'sink', handlers: { put: (x, ctx) => untilAborted(x, ctx) } });
    await a.call(2, SINK, 'nothing').catch(() => undefined); // link up
    const sent = Array.from({ length: 16 }, (_, i) => a.send(2, SINK, 'put', i));
    await Promise.all(sent); // handed to the link: the window is now spent
    const queued = a.send(2, SINK, 'put', 'waits for credit');
    let accepted = 0;
    for (let i = 0; i < 5; i++) if (!a.trySend(2, SINK, 'put', i)) accepted++;
    expect(accepted).toBe(5); // queued, each with false: wait for drain
    await a.nodeDown(2);
    await expect(queued).rejects.toMatchObject({ code: 'ICS_ERR_NODE_DOWN' });
    expect(a.stats().oneWayDropped).toBe(5);
  });
});

describe('ICS bounds: a forgotten peer met again', () => {
  it("never reuses a message id the other side still remembers (its duplicate window would drop the call)", async () => {
    cluster = await makeCluster('memory', 2);
    const [a, b] = [cluster.node(1), cluster.node(2)];
    const stubborn = deferred();
    b.registerService({ ...SINK, name: 'sink', handlers: { echo: (x) => x, stubborn: () => stubborn.promise } });
    for (let i = 0; i < 3; i++) await a.call(2, SINK, 'echo', i);
    // A handler on node 2 that ignores its abort keeps node 1's entry there (and its duplicate window) alive.
    const lost = a.call(2, SINK, 'stubborn').catch((e: unknown) => e);
    await expect.poll(() => b.servingCount(1)).toBe(1);
    cluster.network!.killLinks('node-1', 'node-2');
    expect(await lost).toMatchObject({ code: 'ICS_ERR_UNAVAILABLE' });
    // Node 1 forgot node 2; node 2 still remembers node 1.
    await expect.poll(() => a.stats().peers).toBe(0);
    expect(b.servingCount(1)).toBe(1);
    await expect(a.call(2, SINK, 'echo', 'again', { timeoutMs: 5000 })).resolves.toBe('again');
    stubborn.resolve();
  });
});
