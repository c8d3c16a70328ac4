/**
 * One death, one answer (issue 14): a call in flight to a node that is then
 * declared down settles with NodeDownError whichever arrives first, the lost
 * link or the verdict; a call whose link was lost with no verdict says so
 * with UnavailableError. All on the virtual clock.
 */
import { afterEach, expect, it } from 'vitest';
import { createIcs, DeadlineExceededError, type Ics, NodeDownError, silentLogger, UnavailableError, VirtualClock } from '@clusterinfra/core';
import { createMemoryNetwork, memory, type MemoryNetwork } from '@clusterinfra/transport-mem';
import { range, simCluster, type SimCluster } from './clms-harness.js';
import { deferred } from './harness.js';

const SVC = { channel: 'default', subservice: 1 };
let endpoints: Ics[] = [];
let clock: VirtualClock;
let cluster: SimCluster | undefined;
afterEach(async () => {
  let done = false;
  const closing = Promise.all(endpoints.map((n) => n.close())).then(() => (done = true));
  await clock.advanceUntil(() => done, 60_000);
  await closing;
  endpoints = [];
  await cluster?.close();
  cluster = undefined;
});

/** Nodes 1 and 2; node 2 serves `hang` (never answers until aborted) and `ping`. */
async function pair(linkLossGraceMs?: number): Promise<{ a: Ics; b: Ics; network: MemoryNetwork; started: Promise<void> }> {
  clock = new VirtualClock();
  const network = createMemoryNetwork({ seed: 7, clock });
  const peers = new Map([
    [1, 'a'],
    [2, 'b'],
  ]);
  const make = (nodeNum: number, address: string): Ics => {
    const ics = createIcs({ transport: memory({ network, address }), clusterName: 'death', nodeNum, logger: silentLogger, peers: (n) => peers.get(n), clock, ...(linkLossGraceMs === undefined ? {} : { linkLossGraceMs }) });
    endpoints.push(ics);
    return ics;
  };
  const a = await make(1, 'a').start();
  const b = await make(2, 'b').start();
  const started = deferred();
  b.registerService({
    ...SVC,
    name: 's',
    handlers: { hang: (_x, ctx) => (started.resolve(), new Promise((_r, reject) => ctx.signal.addEventListener('abort', reject))), ping: () => 'pong' },
  });
  return { a, b, network, started: started.promise };
}

/** Settles `p` into a value to inspect, and says whether it has settled. */
function watch<T>(p: Promise<T>): { settled: () => boolean; result: () => unknown } {
  let done = false;
  let result: unknown;
  p.then(
    (v) => ((done = true), (result = v)),
    (e: unknown) => ((done = true), (result = e)),
  );
  return { settled: () => done, result: () => result };
}

/** A call to `hang` from node 1 to node 2, in flight when their links are killed. */
async function lostInFlight(linkLossGraceMs: number | undefined, timeoutMs = 60_000): Promise<{ a: Ics; call: ReturnType<typeof watch> }> {
  const { a, network, started } = await pair(linkLossGraceMs);
  const call = watch(a.call(2, SVC, 'hang', null, { timeoutMs }));
  await clock.advance(10);
  await started;
  network.killLinks('a', 'b');
  return { a, call };
}

it('without a grace (the default of a bare endpoint), a lost link fails its calls at once', async () => {
  const { a, call } = await lostInFlight(undefined);
  await clock.advance(1);
  expect(call.settled()).toBe(true);
  expect(call.result()).toBeInstanceOf(UnavailableError);
});

it('a call whose link was lost waits for the verdict: declared down, it fails with NodeDownError (may have run)', async () => {
  const { a, call } = await lostInFlight(1_000);
  await clock.advance(500);
  expect(call.settled()).toBe(false);
  expect(a.stats().pendingCalls).toBe(1);
  await a.nodeDown(2);
  await clock.advance(1);
  expect(call.result()).toBeInstanceOf(NodeDownError);
  expect((call.result() as NodeDownError).sent).toBe('may-have-run');
  expect(a.stats().pendingCalls).toBe(0);
});

it('with no verdict within the grace, it fails with UnavailableError that says so', async () => {
  const { a, call } = await lostInFlight(1_000);
  await clock.advance(999);
  expect(call.settled()).toBe(false);
  await clock.advance(2);
  expect(call.result()).toBeInstanceOf(UnavailableError);
  expect((call.result() as UnavailableError).mayHaveRun).toBe(true);
  expect((call.result() as Error).message).toMatch(/not declared down within 1000 ms/);
  // A later NodeDown changes nothing for it: one answer.
  await a.nodeDown(2);
  expect(a.stats().pendingCalls).toBe(0);
});

it('a link that comes up again ends the wait at once: the node lives, its answer is lost', async () => {
  const { a, call } = await lostInFlight(5_000);
  await clock.advance(1);
  expect(call.settled()).toBe(false);
  // The next call dials again.
  const ping = watch(a.call(2, SVC, 'ping'));
  expect(await clock.advanceUntil(() => ping.settled(), 4_000)).toBe(true);
  expect(ping.result()).toBe('pong');
  expect(call.result()).toBeInstanceOf(UnavailableError);
  expect((call.result() as Error).message).toMatch(/linked again/);
});

it('the deadline still ends a call waiting for the verdict', async () => {
  const { a, call } = await lostInFlight(5_000, 300);
  await clock.advance(300);
  expect(call.result()).toBeInstanceOf(DeadlineExceededError);
  expect(a.stats().pendingCalls).toBe(0);
});

it('the option is validated', () => {
  clock = new VirtualClock();
  const network = createMemoryNetwork({ seed: 1, clock });
  expect(() => createIcs({ transport: memory({ network, address: 'x' }), clusterName: 'death', nodeNum: 1, clock, linkLossGraceMs: -1 })).toThrow(expect.objectContaining({ code: 'CONFIG_ERR_INVALID_OPTION' }));
});

/** A formed 3-node cluster, with a call from node 1 to node 3 arrived and hanging there. */
async function clusterCallInFlight(seed: number): Promise<{ s: SimCluster; call: ReturnType<typeof watch> }> {
  const s = (cluster = simCluster(3, { seed }));
  clock = s.clock;
  await s.until(() => range(3).every((n) => range(3).every((m) => s.node(n).info(m)?.state === 'Up')), 30_000, 'formation');
  let arrived = false;
  s.node(3).communication.registerService({ ...SVC, name: 'app', handlers: { hang: (_x, ctx) => ((arrived = true), new Promise((_r, reject) => ctx.signal.addEventListener('abort', reject))) } });
  const call = watch(s.node(1).communication.call(3, SVC, 'hang', null, { timeoutMs: 60_000 }));
  await s.until(() => arrived, 5_000, 'the call to arrive');
  return { s, call };
}

it('under CLMS, a call in flight to a node that is killed fails with NodeDownError, not with the lost link', async () => {
  const { s, call } = await clusterCallInFlight(3);
  s.kill(3);
  await s.until(() => call.settled(), 5_000, 'the call to settle');
  expect(call.result()).toBeInstanceOf(NodeDownError);
  expect((call.result() as NodeDownError).sent).toBe('may-have-run');
});

it('under CLMS, a call whose link to a live node was reset fails with UnavailableError (the node was not declared down)', async () => {
  const { s, call } = await clusterCallInFlight(4);
  const head = s.node(1).lastTransition;
  s.network.killLinks('node-1', 'node-3');
  await s.until(() => call.settled(), 5_000, 'the call to settle');
  expect(call.result()).toBeInstanceOf(UnavailableError);
  expect(s.node(1).info(3)?.state).toBe('Up');
  expect(s.node(1).transitions(head).filter((t) => t.node === 3)).toEqual([]);
});
