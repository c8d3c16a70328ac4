/**
 * A master deposed while an entry of its own was replicating keeps it as
 * its uncommitted entry, as every member that acknowledged it does. Before,
 * it forgot it: the members holding the entry then found no candidate up
 * to date, refused every vote, and the cluster stayed masterless until
 * every node evicted itself ("no master for too long": registry faults
 * seed 4, after its master crashed).
 */
import { afterEach, expect, it } from 'vitest';
import { allUp, range, type SimCluster, simCluster } from './clms-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

it('a master deposed while its entry replicates still counts it, so the members that hold it can elect a master', async () => {
  // Two candidates, four voters (every Up member): a quorum is three.
  sim = simCluster(4, { candidates: [1, 2] });
  await sim.until(() => allUp(sim!, range(4)) && sim!.converged(range(4)) && sim!.node(1).isMaster, 30_000, 'formation with master 1');
  const incarnations = range(4).map((n) => sim!.node(n).incarnation);
  const before = sim.node(1).lastTransition;
  // Node 2 is cut from node 1; nodes 3 and 4 get node 1's entry, but their answers are lost.
  sim.network.partition('node-1', 'node-2');
  sim.network.partition('node-3', 'node-1', { oneWay: true });
  sim.network.partition('node-4', 'node-1', { oneWay: true });
  void sim.node(1).setInfo({ round: 1 }).catch(() => {});
  await sim.until(() => !sim!.node(1).isMaster, 30_000, 'node 1 stepping down (no quorum for its entry)');
  sim.network.heal();
  // Frames sent across the cut were blackholed on links that stayed open; a reliable link resets instead.
  sim.network.killLinks('node-1');
  await sim.until(() => sim!.converged(range(4)) && sim!.node(1).lastTransition > before, 30_000, 'a master again, and the entry committed');
  expect(sim.node(1).info(1)?.meta).toEqual({ round: 1 });
  // Nobody had to start again as a new incarnation.
  expect(range(4).map((n) => sim!.node(n).incarnation)).toEqual(incarnations);
});
