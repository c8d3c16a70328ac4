/**
 * Key services under faults, on the virtual clock: a host on the minority
 * side of a partition stops within a bound and says so (K5); a host that was
 * paused past its failure timeout (a zombie) never acts with its old epoch
 * when it wakes, as a store fenced by epoch proves (K1, K3); a host declared
 * down while alive, and cut off before it hears so, is failed over only after
 * the fence wait, when it can no longer act (K1, K4).
 */
import { afterEach, expect, it } from 'vitest';
import type { KeyServiceActivity, KeyServiceContext } from '@clusterinfra/core';
import { NodeClock } from '@clusterinfra/sim';
import { type SimCluster, simCluster } from './clms-harness.js';
import { FencedStore, Journal, range, readyElsewhere, registerCounter, settle } from './keyservices-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const allUp = (s: SimCluster, ns: number[]): boolean => ns.every((n) => ns.every((m) => s.node(n).info(m)?.state === 'Up')) && s.converged(ns);

it('a host on the minority side deactivates within the failure timeout (plus a heartbeat) and says so; the majority moves the service after', async () => {
  sim = simCluster(5, { candidates: [1, 2, 3] });
  const store = new FencedStore();
  const journal = new Journal(() => sim!.clock.now());
  const stops: (KeyServiceActivity & { node: number; at: number })[] = [];
  for (const n of range(5)) {
    registerCounter(sim.node(n), { store, journal });
    sim.node(n).on('keyservice-host', (a) => !a.active && stops.push({ ...a, node: n, at: sim!.clock.now() }));
  }
  await sim.until(() => allUp(sim!, range(5)) && readyElsewhere(sim!, range(5), 'counter'), 30_000, 'placement');
  const host = sim.node(1).keyService('counter')!.host!;
  const master = sim.node(1).master!;
  // The host and one more node (not the master, unless the master hosts) are cut off.
  const minority = [host, range(5).find((n) => n !== host && n !== master)!];
  const majority = range(5).filter((n) => !minority.includes(n));
  const { failureTimeoutMs, heartbeatIntervalMs } = sim.node(host).timing;
  const cut = sim.clock.now();
  for (const a of minority) for (const b of majority) sim.network.partition(`node-${a}`, `node-${b}`);
  await sim.until(() => stops.some((s) => s.node === host), 10_000, 'the minority host stops');
  const stop = stops.find((s) => s.node === host)!;
  expect(stop.reason).toBe('lost quorum');
  // K5: within the bound (virtual time: the failure timeout, then at most one heartbeat tick).
  expect(stop.at - cut).toBeLessThanOrEqual(failureTimeoutMs + heartbeatIntervalMs);
  expect(sim.node(host).decisionRecords().some((r) => r.kind === 'quorum-lost')).toBe(true);
  // Calls on the minority side are refused rather than served.
  const onMinority = await settle(sim, sim.node(minority[1]!).callKeyService('counter', 'add', 1, { timeoutMs: 500 }).catch((e: unknown) => e));
  expect(onMinority).toBeInstanceOf(Error);
  // K4: the majority assigns a new host only after the old one stopped.
  await sim.until(() => readyElsewhere(sim!, majority, 'counter', host), 30_000, 'failover on the majority');
  const moved = journal.lines.find((l) => l.text === `failover counter epoch 2`)!;
  expect(moved.at).toBeGreaterThanOrEqual(stop.at);
  expect(await settle(sim, sim.node(majority[0]!).callKeyService('counter', 'add', 1))).toBeGreaterThan(0);
  expect(store.stale).toEqual([]);
  sim.network.heal();
  await sim.until(() => allUp(sim!, range(5)), 60_000, 'heal');
});

it('a zombie host (paused past its timeout) never acts with its old epoch when it wakes: a store fenced by epoch sees no stale attempt', async () => {
  const clocks = new Map<number, NodeClock>();
  sim = simCluster(3, {
    candidates: [1, 2, 3],
    extra: (n, base) => {
      // Each node on its own pausable view of the virtual clock (SIGSTOP-like).
      const c = new NodeClock(base);
      clocks.set(n, c);
      return { clock: c };
    },
  });
  const store = new FencedStore();
  const journal = new Journal(() => sim!.clock.now());
  for (const n of range(3)) {
    const node = sim.node(n);
    registerCounter(node, {
      store,
      journal,
      // The host also writes on its own, every 20 ms, guarded by isActive() as the docs say.
      onFailover: (ctx: KeyServiceContext) => {
        const tick = (): void => {
          if (ctx.signal.aborted) return;
          if (ctx.isActive()) store.write(ctx.epoch, n, 'background');
          clocks.get(n)!.setTimeout(tick, 20);
        };
        clocks.get(n)!.setTimeout(tick, 20);
      },
    });
  }
  await sim.until(() => allUp(sim!, range(3)) && readyElsewhere(sim!, range(3), 'counter'), 30_000, 'placement');
  const first = sim.node(1).keyService('counter')!;
  const zombie = first.host!;
  const others = range(3).filter((n) => n !== zombie);
  await sim.clock.advance(100);
  expect(store.accepted.some((w) => w.node === zombie && w.epoch === first.epoch)).toBe(true);
  // Pause the host: its timers stop and its links go quiet, as with SIGSTOP.
  sim.network.pause(`node-${zombie}`);
  clocks.get(zombie)!.pause();
  await sim.until(() => readyElsewhere(sim!, others, 'counter', zombie), 30_000, 'failover while the host is paused');
  const second = sim.node(others[0]!).keyService('counter')!;
  expect(second.epoch).toBeGreaterThan(first.epoch);
  await settle(sim, sim.node(others[0]!).callKeyService('counter', 'add', 1));
  await sim.clock.advance(100);
  expect(store.highest).toBe(second.epoch);
  // Wake it. Its held timers fire first (the background writer among them), and a local
  // caller that still believes it is the host calls at once.
  const woke = sim.clock.now();
  clocks.get(zombie)!.resume();
  sim.network.resume(`node-${zombie}`);
  const local = sim.node(zombie).callKeyService<number>('counter', 'add', 10, { timeoutMs: 20_000 });
  expect(await settle(sim, local, 30_000, 'the zombie\u2019s own call')).toBeGreaterThan(0);
  await sim.clock.advance(1000);
  // K3: no write with an old epoch was even attempted, and nothing after the wake-up ran at epoch 1.
  expect(store.stale).toEqual([]);
  expect(journal.lines.filter((l) => l.at >= woke && l.node === zombie && l.text.includes(`epoch ${first.epoch}`) && !l.text.startsWith('stopped'))).toEqual([]);
  expect(store.accepted.filter((w) => w.what === 'add 10').map((w) => w.epoch)).toEqual([store.accepted.find((w) => w.what === 'add 10')!.epoch]);
  expect(store.accepted.find((w) => w.what === 'add 10')!.epoch).toBeGreaterThanOrEqual(second.epoch);
});

it('a host declared down while alive and cut off before it hears so: the new host starts only after the fence wait, when the old one has stopped (K1, K4)', async () => {
  sim = simCluster(3, { candidates: [1, 2, 3] });
  const store = new FencedStore();
  const journal = new Journal(() => sim!.clock.now());
  const contexts = new Map<number, KeyServiceContext>();
  // Hosted by a member, not the master (a master cut off loses its quorum at once).
  for (const n of [2, 3]) registerCounter(sim.node(n), { store, journal, onFailover: (ctx) => void contexts.set(n, ctx) });
  await sim.until(() => allUp(sim!, range(3)) && readyElsewhere(sim!, range(3), 'counter'), 30_000, 'placement');
  const host = sim.node(1).keyService('counter')!.host!;
  expect(sim.node(1).master).toBe(1);
  const others = range(3).filter((n) => n !== host);
  const { failureTimeoutMs } = sim.node(host).timing;
  // The host hears nobody any more (it can still send): it never learns it was declared down.
  for (const o of others) sim.network.partition(`node-${o}`, `node-${host}`, { oneWay: true });
  const declared = sim.clock.now();
  await settle(sim, sim.node(1).declareDown(host));
  await sim.until(() => readyElsewhere(sim!, others, 'counter', host), 30_000, 'failover');
  const next = sim.node(1).keyService('counter')!.host!;
  const started = journal.lines.find((l) => l.node === next && l.text === 'failover counter epoch 2')!;
  const stopped = journal.lines.find((l) => l.node === host && l.text === 'stopped counter epoch 1');
  // The fence wait: no failover before the old host's lease can have run out…
  expect(started.at - declared).toBeGreaterThanOrEqual(failureTimeoutMs);
  // …and by then the old host may not act, whether or not its own timers noticed yet.
  expect(contexts.get(host)!.isActive()).toBe(false);
  if (stopped) expect(stopped.at).toBeLessThanOrEqual(started.at);
  // It refuses calls made to it directly, and the fenced store never saw a stale epoch.
  const direct = await settle(sim, sim.node(host).callKeyService('counter', 'add', 1, { timeoutMs: 300 }).catch((e: unknown) => e));
  expect(direct).toBeInstanceOf(Error);
  expect(await settle(sim, sim.node(next).callKeyService('counter', 'add', 2))).toBeGreaterThan(0);
  expect(store.stale).toEqual([]);
  expect(store.accepted.at(-1)).toMatchObject({ epoch: 2, node: next });
});
