/**
 * A join answer that arrives after the node moved on (the 1,000-node
 * simulator's seed 1: a node got transition #212 twice). A candidate that
 * lost the founding election holds the cluster's history before its join is
 * answered and applies what the master appends as a follower; when its
 * join answer is slow, the snapshot in it is older than what the node
 * already applied. Installing that snapshot took the node's history back,
 * and the transitions after it were applied and announced a second time
 * when the master sent them again (ClusterNode.tryJoin keeps what it has
 * since). Memory network, virtual clock: deterministic.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Ics, Transition } from '@clusterinfra/core';
import { range, type SimCluster, simCluster } from './clms-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

/** The last transition number a join answer's snapshot holds. */
function snapshotLast(answer: unknown): number | undefined {
  const s = (answer as { ok?: boolean; snapshot?: { number: number; tail: { number: number }[] } }).snapshot;
  if (!s) return undefined;
  return s.tail.at(-1)?.number ?? s.number;
}

describe('a join answer older than what the node applied as a follower', () => {
  it('takes nothing back: every transition is applied and announced once', async () => {
    const CANDIDATES = [1, 2, 3];
    sim = simCluster(6, { candidates: CANDIDATES });
    const s = sim;
    // Every `transition` event of each node, by number (a restart would make a new incarnation: none is expected).
    const seen = new Map<number, number[]>(range(6).map((n) => [n, []]));
    for (const n of range(6)) s.node(n).on('transition', (t: Transition) => seen.get(n)!.push(t.number));
    const incarnations = range(6).map((n) => s.node(n).incarnation);
    // The candidates' first join answer is held (as a slow network would)
    // until the node applied more than its snapshot holds, bounded in
    // virtual time. The answer itself is the master's, unchanged. (The
    // incarnation's ICS endpoint, `currentCommunication`, was made
    // synchronously in start(), before any join.)
    const held: { node: number; snapshot: number; appliedBefore: number }[] = [];
    for (const n of CANDIDATES) {
      const ics = s.node(n).currentCommunication;
      const call = ics.call.bind(ics);
      let first = true;
      ics.call = (async (...args: Parameters<Ics['call']>) => {
        const answer = await call(...args);
        const last = args[2] === 'join' && first ? snapshotLast(answer) : undefined;
        if (last === undefined) return answer;
        first = false;
        const until = s.clock.now() + 20_000;
        while (s.node(n).lastTransition <= last && s.clock.now() < until) await new Promise<void>((resolve) => s.clock.setTimeout(resolve, 10));
        held.push({ node: n, snapshot: last, appliedBefore: s.node(n).lastTransition });
        return answer;
      }) as Ics['call'];
    }
    await s.until(() => range(6).every((n) => range(6).every((m) => s.node(n).info(m)?.state === 'Up')) && s.converged(range(6)), 60_000, 'formation');
    // Let appends, commits and fetches after the late answer play out.
    await s.clock.advance(s.node(1).timing.failureTimeoutMs * 3);

    // The case happened: some candidate got its answer after applying beyond its snapshot.
    const late = held.filter((h) => h.appliedBefore > h.snapshot);
    expect(late.length, `held answers: ${JSON.stringify(held)}`).toBeGreaterThan(0);
    expect(range(6).map((n) => s.node(n).incarnation)).toEqual(incarnations);
    for (const n of range(6)) {
      const numbers = seen.get(n)!;
      const twice = numbers.filter((x, i) => numbers.indexOf(x) !== i);
      expect(twice, `node ${n} announced these transitions twice`).toEqual([]);
      // In order, no gap (M1), up to the head it holds.
      expect(numbers, `node ${n}`).toEqual(range(s.node(n).lastTransition));
    }
  });
});
