/**
 * CLMS at scale (issue 4: messages per membership transition grow linearly
 * with the node count): what a member sends once the cluster is formed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type SimCluster, simCluster } from './clms-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);
const allUp = (s: SimCluster, ns: number[]): boolean => ns.every((n) => ns.every((m) => s.node(n).info(m)?.state === 'Up'));
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
});
