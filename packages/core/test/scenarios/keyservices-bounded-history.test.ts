/**
 * Key services outlive the history's bound (`historyLimit`): a node that
 * joins after the transitions placing a key service were compacted into the
 * master's snapshot still knows where it lives and at which epoch. Before
 * the snapshot carried them, such a joiner had no view of the key service,
 * and at 1,000 simulated nodes one that became master placed it again at
 * the epoch already used (K2).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { allUp, range, type SimCluster, simCluster } from './clms-harness.js';
import { settle } from './keyservices-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const LIMIT = 16;

describe('key services and a bounded history', () => {
  it('a late joiner whose history starts after the placement knows host, epoch and readiness; failover goes on from that epoch', async () => {
    sim = simCluster(3, { candidates: [1, 2, 3], extra: () => ({ historyLimit: LIMIT }) });
    for (const n of [1, 3]) sim.node(n).registerKeyService({ name: 'counter', subservice: 1, handlers: { add: (x) => x } });
    await sim.until(() => allUp(sim!, range(3)) && sim!.converged(range(3)) && sim!.node(2).keyService('counter')?.ready === true, 30_000, 'formation');
    const placed = sim.node(2).keyService('counter')!;
    expect(placed).toMatchObject({ host: 1, epoch: 1, ready: true });
    // More than LIMIT transitions after the placement: it leaves every node's memory.
    for (let i = 0; i < LIMIT + 4; i++) await settle(sim, sim.node(2).setInfo({ round: i }));
    expect(sim.node(2).firstTransition).toBeGreaterThan(placed.since);

    const late = sim.start(4, { historyLimit: LIMIT });
    await sim.until(() => allUp(sim!, range(4)) && sim!.converged(range(4)), 30_000, 'node 4 joins');
    expect(late.firstTransition).toBeGreaterThan(placed.since);
    expect(late.keyService('counter')).toMatchObject({ host: 1, epoch: 1, ready: true });
    expect(await settle(sim, late.callKeyService('counter', 'add', 5))).toBe(5);

    // The host dies: node 3 takes over at the next epoch, as node 4 sees it too.
    sim.kill(1);
    await sim.until(() => [2, 3, 4].every((n) => sim!.node(n).keyService('counter')?.ready === true && sim!.node(n).keyService('counter')?.host === 3), 30_000, 'failover');
    expect(late.keyService('counter')).toMatchObject({ host: 3, epoch: 2, ready: true });
  });
});
