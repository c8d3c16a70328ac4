import { afterEach, expect, it } from 'vitest';
import { createIcs, type Ics, NodeDownError, silentLogger, UnavailableError, VirtualClock } from '@clusterinfra/core';
import { createMemoryNetwork, memory, type MemoryNetwork } from '@clusterinfra/transport-mem';
import { deferred } from './harness.js';

const SVC = { channel: 'default', subservice: 1 };
let nodes: Ics[] = [];
let virtual: VirtualClock | undefined;
afterEach(async () => {
  let done = false;
  const closing = Promise.all(nodes.map((n) => n.close())).then(() => (done = true));
  // On a virtual clock, closing needs time to move (graceful link closes, grace timers).
  if (virtual) await virtual.advanceUntil(() => done, 60_000);
  await closing;
  nodes = [];
  virtual = undefined;
});

function node(network: MemoryNetwork, nodeNum: number, address: string, peers: Map<number, string>, clock?: VirtualClock, incarnation?: number): Ics {
  const ics = createIcs({
    transport: memory({ network, address }),
    clusterName: 'links',
    nodeNum,
    logger: silentLogger,
    peers: (n) => peers.get(n),
    ...(clock ? { clock } : {}),
    ...(incarnation ? { incarnation } : {}),
  });
  nodes.push(ics);
  return ics;
}

it('fails calls in flight on a lost link (may have run) and reconnects for the next ones', async () => {
  const network = createMemoryNetwork({ seed: 2 });
  const peers = new Map([
    [1, 'a'],
    [2, 'b'],
  ]);
  const a = await node(network, 1, 'a', peers).start();
  const b = await node(network, 2, 'b', peers).start();
  const started = deferred();
  b.registerService({
    ...SVC,
    name: 's',
    handlers: { hang: (_x, ctx) => (started.resolve(), new Promise((_r, reject) => ctx.signal.addEventListener('abort', reject))), ping: () => 'pong' },
  });
  const downs: string[] = [];
  a.on('link', (e) => e.state === 'down' && downs.push(e.reason ?? ''));
  const inFlight = a.call(2, SVC, 'hang').catch((e: unknown) => e);
  await started.promise;
  network.killLinks('a', 'b');
  const err = await inFlight;
  expect(err).toBeInstanceOf(UnavailableError);
  expect((err as UnavailableError).mayHaveRun).toBe(true);
  expect(downs).toEqual(['reset']);
  expect(await a.call(2, SVC, 'ping')).toBe('pong');
  expect(a.stats().pendingCalls).toBe(0);
});

it('retries a failing connect with backoff and delivers queued calls once the network heals (virtual time)', async () => {
  const clock = (virtual = new VirtualClock());
  const network = createMemoryNetwork({ seed: 3, clock });
  const peers = new Map([
    [1, 'a'],
    [2, 'b'],
  ]);
  const a = await node(network, 1, 'a', peers, clock).start();
  const b = await node(network, 2, 'b', peers, clock).start();
  b.registerService({ ...SVC, name: 's', handlers: { ping: () => 'pong' } });
  network.partition('a', 'b');
  let result: unknown;
  void a.call(2, SVC, 'ping', null, { timeoutMs: 60_000 }).then((v) => (result = v));
  // Connects across the partition time out (3 s each) and are retried.
  await clock.advance(10_000);
  expect(result).toBeUndefined();
  expect(a.stats().reconnects).toBeGreaterThanOrEqual(2);
  expect(a.stats().queuedMessages).toBe(1);
  network.heal();
  expect(await clock.advanceUntil(() => result !== undefined, 30_000)).toBe(true);
  expect(result).toBe('pong');
});

it('a newer incarnation of a node ends its former self: pending calls fail, its links are refused', async () => {
  const network = createMemoryNetwork({ seed: 4 });
  const peers = new Map([
    [1, 'a'],
    [2, 'b-old'],
  ]);
  const a = await node(network, 1, 'a', peers, undefined, 100).start();
  const old = await node(network, 2, 'b-old', peers, undefined, 200).start();
  const started = deferred();
  old.registerService({
    ...SVC,
    name: 's',
    handlers: { hang: (_x, ctx) => (started.resolve(), new Promise((_r, reject) => ctx.signal.addEventListener('abort', reject))) },
  });
  a.registerService({ ...SVC, name: 'a', handlers: { ping: (_x, ctx) => `pong from 1 to incarnation ${ctx.caller.incarnation}` } });
  const pending = a.call(2, SVC, 'hang').catch((e: unknown) => e);
  await started.promise;
  // Node 2 restarts elsewhere with a newer incarnation and calls node 1.
  const events: unknown[] = [];
  a.on('incarnation', (e) => events.push(e));
  peers.set(2, 'b-new');
  const fresh = await node(network, 2, 'b-new', peers, undefined, 300).start();
  expect(await fresh.call(1, SVC, 'ping')).toBe('pong from 1 to incarnation 300');
  const err = await pending;
  expect(err).toBeInstanceOf(NodeDownError);
  expect((err as NodeDownError).sent).toBe('may-have-run');
  expect(events).toEqual([{ node: 2, previous: 200, current: 300 }]);
  // The former incarnation can no longer reach node 1.
  const fromOld = await old.call(1, SVC, 'ping', null, { timeoutMs: 300 }).catch((e: unknown) => e);
  expect(fromOld).toBeInstanceOf(Error);
  expect(a.stats().pendingCalls).toBe(0);
});

it('a node declared down stays refused until it comes back as a new incarnation', async () => {
  const network = createMemoryNetwork({ seed: 5 });
  const peers = new Map([
    [1, 'a'],
    [2, 'b'],
  ]);
  const a = await node(network, 1, 'a', peers, undefined, 10).start();
  const b = await node(network, 2, 'b', peers, undefined, 20).start();
  a.registerService({ ...SVC, name: 'a', handlers: { ping: () => 'pong' } });
  b.registerService({ ...SVC, name: 'b', handlers: { ping: () => 'pong' } });
  expect(await b.call(1, SVC, 'ping')).toBe('pong');
  await a.nodeDown(2);
  let ups = 0;
  a.on('link', (e) => e.state === 'up' && e.node === 2 && ups++);
  // Incarnation 20 is down for node 1: its new link attempts are refused.
  const refused = await b.call(1, SVC, 'ping', null, { timeoutMs: 300 }).catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(Error);
  expect(ups).toBe(0);
  // The same node number as a new incarnation is welcome.
  peers.set(2, 'b2');
  const again = await node(network, 2, 'b2', peers, undefined, 30).start();
  expect(await again.call(1, SVC, 'ping')).toBe('pong');
  expect(ups).toBe(1);
});

it('close() does not wait for ever on a handler that ignores its abort signal (virtual time)', async () => {
  const clock = (virtual = new VirtualClock());
  const network = createMemoryNetwork({ seed: 6, clock });
  const peers = new Map([
    [1, 'a'],
    [2, 'b'],
  ]);
  const a = await node(network, 1, 'a', peers, clock).start();
  const b = await node(network, 2, 'b', peers, clock).start();
  const started = deferred();
  b.registerService({ ...SVC, name: 's', handlers: { stubborn: () => (started.resolve(), new Promise(() => {})) } });
  void a.call(2, SVC, 'stubborn', null, { timeoutMs: 600_000 }).catch(() => {});
  await clock.advanceUntil(() => b.servingCount(1) === 1, 1000);
  await started.promise;
  let closed = false;
  void b.close().then(() => (closed = true));
  await clock.advance(4_999);
  expect(closed).toBe(false);
  expect(await clock.advanceUntil(() => closed, 1000)).toBe(true);
});

it('a call made by a handler inherits its deadline and cancellation, and travels raised (virtual time)', async () => {
  const clock = (virtual = new VirtualClock());
  const network = createMemoryNetwork({ seed: 7, clock });
  const peers = new Map([
    [1, 'a'],
    [2, 'b'],
    [3, 'c'],
  ]);
  const a = await node(network, 1, 'a', peers, clock).start();
  const b = await node(network, 2, 'b', peers, clock).start();
  const c = await node(network, 3, 'c', peers, clock).start();
  let inner: { deadline: number | undefined; priority: boolean; aborted?: unknown } | undefined;
  c.registerService({
    ...SVC,
    name: 'inner',
    handlers: {
      inner: (_x, ctx) =>
        new Promise((_r, reject) => {
          inner = { deadline: ctx.deadline, priority: ctx.priority };
          ctx.signal.addEventListener('abort', () => {
            inner!.aborted = ctx.signal.reason;
            reject(ctx.signal.reason);
          });
        }),
    },
  });
  b.registerService({ ...SVC, name: 'outer', handlers: { outer: () => b.call(3, SVC, 'inner') } });
  const start = clock.now();
  let outcome: unknown;
  void a.call(2, SVC, 'outer', null, { timeoutMs: 1000 }).catch((e: unknown) => (outcome = e));
  await clock.advanceUntil(() => inner !== undefined, 500);
  // No timeout of its own: the nested call got the outer call's deadline, not the 30 s default.
  expect(inner!.deadline).toBeLessThanOrEqual(start + 1000);
  expect(inner!.priority).toBe(true);
  await clock.advanceUntil(() => outcome !== undefined && inner?.aborted !== undefined, 5000);
  expect(outcome).toBeInstanceOf(Error);
  expect((outcome as { code: string }).code).toBe('ICS_ERR_DEADLINE_EXCEEDED');
  expect((inner!.aborted as { code: string }).code).toMatch(/ICS_ERR_(DEADLINE_EXCEEDED|CANCELLED)/);
});

it('admitIncarnation: a link from a new incarnation is held until the answer, refused (node-number-in-use) or attached; a held link that closes meanwhile keeps nothing open', async () => {
  virtual = new VirtualClock();
  const network = createMemoryNetwork({ seed: 3, clock: virtual });
  const peers = new Map([[1, 'a']]);
  let answer = deferred<boolean>();
  const asked: number[] = [];
  const a = createIcs({ transport: memory({ network, address: 'a' }), clusterName: 'links', nodeNum: 1, logger: silentLogger, clock: virtual, peers: (n) => peers.get(n), admitIncarnation: (q) => (asked.push(q.incarnation), answer.promise) });
  nodes.push(a);
  a.registerService({ ...SVC, name: 's', handlers: { ping: () => 'pong' } });
  await a.start();
  const outcome = (p: Promise<unknown>): { v?: unknown } => {
    const o: { v?: unknown } = {};
    void p.then((v) => (o.v = v), (e: unknown) => (o.v = e));
    return o;
  };
  // Refused: the dialler hears why.
  const b = node(network, 2, 'b', peers, virtual, 100);
  await b.start();
  const refused: string[] = [];
  b.on('refused', (e) => refused.push(e.reason));
  const first = outcome(b.call(1, SVC, 'ping', null, { timeoutMs: 5_000 }));
  await virtual.advance(100);
  expect(asked).toEqual([100]);
  expect(first.v).toBeUndefined();
  answer.resolve(false);
  await virtual.advanceUntil(() => first.v !== undefined, 10_000);
  expect(refused).toEqual(['node-number-in-use']);
  // Admitted: the call goes through.
  answer = deferred<boolean>();
  const c = node(network, 2, 'c', new Map([[1, 'a']]), virtual, 200);
  await c.start();
  const second = outcome(c.call(1, SVC, 'ping', null, { timeoutMs: 5_000 }));
  await virtual.advance(100);
  answer.resolve(true);
  await virtual.advanceUntil(() => second.v !== undefined, 10_000);
  expect(second.v).toBe('pong');
  // Held, and the dialler goes away meanwhile: a still closes.
  answer = deferred<boolean>();
  const d = node(network, 2, 'd', new Map([[1, 'a']]), virtual, 300);
  await d.start();
  void d.call(1, SVC, 'ping', null, { timeoutMs: 5_000 }).catch(() => {});
  await virtual.advance(100);
  expect(asked).toEqual([100, 200, 300]);
  let closed = false;
  void d.close().then(() => (closed = true));
  await virtual.advanceUntil(() => closed, 10_000);
  answer.resolve(true);
  let aClosed = false;
  void a.close().then(() => (aClosed = true));
  await virtual.advanceUntil(() => aClosed, 10_000);
  expect(aClosed).toBe(true);
});
