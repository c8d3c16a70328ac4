/**
 * CLMS at scale (issue 4: messages per membership transition grow linearly
 * with the node count): what a member sends once the cluster is formed, and
 * a formation of many nodes started at once (a join storm).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { allUp, range, type SimCluster, simCluster } from './clms-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const framesSent = (s: SimCluster, n: number): number => s.node(n).communication.stats().messagesSent;

describe('scale', () => {
  it('a formed cluster sends heartbeats only: a member does not resend reports the master acknowledged', async () => {
    const size = 8;
    sim = simCluster(size);
    await sim.until(() => allUp(sim!, range(size)) && sim!.converged(range(size)), 30_000, 'formation');
    await sim.clock.advance(1000);
    const master = sim.node(1).master!;
    const members = range(size).filter((n) => n !== master);
    const before = members.map((n) => framesSent(sim!, n));
    const head = sim.node(1).lastTransition;
    const ms = 2000;
    await sim.clock.advance(ms);
    expect(sim.node(1).lastTransition).toBe(head);
    // One heartbeat answer per interval; the nodeup-done reports of the
    // formation were owed until the node left ComingUp and, before the fix,
    // were sent again every tick: 7 more calls per member per interval.
    const ticks = ms / sim.node(1).timing.heartbeatIntervalMs;
    members.forEach((n, i) => expect(framesSent(sim!, n) - before[i]!).toBeLessThanOrEqual(ticks + 2));
  });

  it('forms 48 nodes started at once (joins queued longer than a join call waits): one master, one history, frames per transition linear', async () => {
    const size = 48;
    // Seeds: the candidates only, as a large cluster is configured (every
    // node probing every other one would be n probes per attempt).
    sim = simCluster(size, { extra: (n) => ({ seeds: [1, 2, 3].filter((m) => m !== n).map((m) => `node-${m}`) }) });
    // 5 ms per hop: each transition takes a round trip or two, so the later
    // joins wait in the master's queue longer than a join call may (they are
    // told 'queued' and ask again), and the members' reports overlap.
    sim.network.setDefaultFaults({ latencyMs: 5 });
    await sim.until(() => allUp(sim!, range(size)) && sim!.converged(range(size)), 60_000, 'formation of 48 nodes');
    const masters = new Set(range(size).map((n) => sim!.node(n).master));
    expect(masters.size).toBe(1);
    const transitions = sim.node(1).lastTransition;
    // A ComingUp and an Up per node, the master's record, nothing repeated.
    expect(transitions).toBeLessThanOrEqual(2 * size + 2);
    const frames = range(size).reduce((a, n) => a + framesSent(sim!, n), 0);
    // Per transition: an append, its answer and a commit per member, and a
    // nodeup report per member for each ComingUp (with its answer), plus the
    // probes and heartbeats of the formation: linear in the node count.
    expect(frames / transitions).toBeLessThan(6 * size);
  });
});
