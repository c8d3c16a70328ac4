import { afterEach, expect, it } from 'vitest';
import type { ClusterNode } from '@clusterinfra/core';
import { type SimCluster, simCluster } from './clms-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

/** A counter key service: its state is the sum of what survivors report. */
function register(node: ClusterNode, log: string[], store: { epoch: number; writes: number[] }): void {
  let value = 0;
  let epoch = 0;
  node.registerKeyService({
    name: 'counter',
    critical: true,
    subservice: 1,
    idempotent: ['get'],
    handlers: {
      add: (n) => {
        // A fencing check as an external store would do it.
        if (epoch < store.epoch) throw new Error(`stale epoch ${epoch}`);
        store.epoch = epoch;
        store.writes.push(epoch);
        value += n as number;
        return value;
      },
      get: () => value,
    },
    failover: (ctx) => {
      epoch = ctx.epoch;
      log.push(`failover on ${ctx.node} epoch ${ctx.epoch}`);
    },
    pullData: (ctx) => ({ from: ctx.node, seen: node.nodeNum * 10 }),
    failoverData: (results, ctx) => {
      value = [...results.values()].reduce((s: number, r) => s + ((r as { seen: number } | null)?.seen ?? 0), 0);
      log.push(`data on ${ctx.node}: ${[...results.keys()].sort().join(',')}`);
    },
  });
}

it('places a critical key service, forms, fails over with pulled data, and calls by name follow it', async () => {
  sim = simCluster(3, { candidates: [1, 2, 3] });
  const log: string[] = [];
  const store = { epoch: 0, writes: [] as number[] };
  for (const n of range(3)) register(sim.node(n), log, store);
  await sim.until(
    () => range(3).every((n) => sim!.node(n).formed && range(3).every((m) => sim!.node(n).info(m)?.state === 'Up')) && sim!.converged(range(3)),
    30_000,
    'formed',
  );
  const first = sim.node(1).keyService('counter')!;
  expect(first.ready).toBe(true);
  expect(first.critical).toBe(true);
  for (const n of range(3)) expect(sim.node(n).keyService('counter')?.host).toBe(first.host);
  const caller = range(3).find((n) => n !== first.host)!;
  let got: unknown;
  void sim.node(caller).callKeyService('counter', 'add', 1).then((v) => (got = v));
  await sim.until(() => got !== undefined, 5000, 'first call');
  sim.kill(first.host!);
  const survivors = range(3).filter((n) => n !== first.host);
  await sim.until(
    () => survivors.every((n) => { const k = sim!.node(n).keyService('counter'); return k?.ready === true && k.host !== first.host; }),
    30_000,
    'failover',
  );
  const second = sim.node(survivors[0]!).keyService('counter')!;
  expect(second.epoch).toBeGreaterThan(first.epoch);
  // The new host pulled data from every survivor before it was ready.
  expect(log.some((l) => l === `data on ${second.host}: ${survivors.join(',')}`)).toBe(true);
  let after: unknown;
  void sim.node(survivors.find((n) => n !== second.host) ?? second.host!).callKeyService('counter', 'add', 5).then((v) => (after = v));
  await sim.until(() => after !== undefined, 5000, 'call after failover');
  expect(after).toBe(survivors.reduce((s, n) => s + n * 10, 0) + 5);
  // Writes were accepted only at growing epochs.
  expect(store.writes).toEqual([...store.writes].sort((a, b) => a - b));
  // The transitions say where it lived and when.
  const ks = sim.node(survivors[0]!).transitions().filter((t) => t.kind === 'keyservice');
  expect(ks.map((t) => t.keyService?.phase)).toEqual(expect.arrayContaining(['assigned', 'ready']));
});
