/**
 * A decision a master began and finished only after it was deposed is not
 * carried into a later term of the same node (sim seed 214: it took the
 * number of an entry a quorum had committed, M2).
 */
import { afterEach, expect, it } from 'vitest';
import { allUp, range, type SimCluster, simCluster } from './clms-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});


it('a nodedown finished after the master was deposed is dropped, not committed when that node is master again', async () => {
  let release: (() => void) | undefined;
  const fenced = new Promise<void>((r) => (release = r));
  let fencing = false;
  // While it is cut off, node 1 is deposed but not declared down (the
  // others' policy refuses), however fast they verify: it must live on to
  // be master again.
  let spare1 = true;
  // Node 1's fence hangs until released: the nodedown waits in it while node 1 is deposed.
  sim = simCluster(3, { extra: (n) => (n === 1 ? { fence: () => ((fencing = true), fenced) } : { confirmDown: (node) => node !== 1 || !spare1 }) });
  await sim.until(() => allUp(sim!, range(3)) && sim!.converged(range(3)) && sim!.node(1).isMaster, 30_000, 'formation with master 1');
  const victim = sim.node(2).incarnation;
  void sim.node(1).declareDown(2, 'test').catch(() => {});
  await sim.until(() => fencing, 5_000, 'the fence to start');
  // Depose node 1: cut it off until another master is elected, then heal at
  // once (before node 1 itself is declared down).
  sim.network.isolate('node-1');
  const other = (): number | undefined => [2, 3].find((n) => sim!.node(n).isMaster);
  await sim.until(() => other() !== undefined, 30_000, 'another master');
  const deposedBy = other()!;
  sim.network.heal();
  // Frames sent across the cut were blackholed on links that stayed open; a
  // reliable link never loses frames, it resets (as the simulator does too).
  sim.network.killLinks('node-1');
  await sim.until(() => sim!.node(1).master === deposedBy, 30_000, 'node 1 following the new master');
  spare1 = false;
  release!();
  await sim.clock.advance(1000);
  // The new master goes; node 1, the first candidate, is master again.
  sim.kill(deposedBy);
  const rest = range(3).filter((n) => n !== deposedBy);
  await sim.until(() => sim!.node(1).isMaster && rest.every((n) => sim!.node(n).master === 1), 30_000, 'node 1 master again');
  await sim.until(() => sim!.node(1).info(deposedBy)?.state === 'Down', 30_000, 'the killed master Down');
  await sim.clock.advance(2000);
  // The deposed master's decision was dropped: node 2 was never declared down.
  expect(sim.node(1).transitions().filter((t) => t.node === 2 && t.to === 'GoingDown' && t.incarnation === victim)).toEqual([]);
  if (deposedBy !== 2) expect(sim.node(2).incarnation).toBe(victim);
  expect(sim.converged(rest)).toBe(true);
});
