/**
 * Membership under the faults real deployments make (issue 16), each as a
 * deterministic scenario on the memory network and the virtual clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { range, type SimCluster, simCluster } from './clms-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const stateOn = (s: SimCluster, on: number, of: number): string | undefined => s.node(on).info(of)?.state;
const allUp = (s: SimCluster, ns: number[]): boolean => ns.every((n) => ns.every((m) => stateOn(s, n, m) === 'Up'));

describe("a node's own trouble is not evidence against others", () => {
  it('every link of the master reset at once: no member is declared down', async () => {
    sim = simCluster(5, { candidates: [1, 2, 3], extra: () => ({ preset: 'lan' }) });
    await sim.until(() => allUp(sim!, range(5)) && sim!.converged(range(5)), 30_000, 'formation');
    const master = sim.node(1).master!;
    const head = sim.node(master).lastTransition;
    const killed = sim.network.killLinks(`node-${master}`);
    expect(killed).toBeGreaterThan(0);
    await sim.clock.advance(sim.node(master).timing.failureTimeoutMs * 3);
    const downs = sim.node(master).transitions(head).filter((t) => t.kind === 'state' && (t.to === 'GoingDown' || t.to === 'Down'));
    expect(downs.map((t) => `${t.node} ${t.to} (${t.cause})`)).toEqual([]);
    expect(allUp(sim, range(5))).toBe(true);
    expect(sim.converged(range(5))).toBe(true);
  });
});

describe('a master that can send but not receive', () => {
  it('evicts no healthy member, and every committed GoingDown has a decision record', async () => {
    sim = simCluster(5, { candidates: [1, 2, 3], extra: () => ({ preset: 'lan' }) });
    await sim.until(() => allUp(sim!, range(5)) && sim!.converged(range(5)), 30_000, 'formation');
    const master = sim.node(1).master!;
    const head = sim.node(master).lastTransition;
    const others = range(5).filter((n) => n !== master);
    for (const n of others) sim.network.partition(`node-${n}`, `node-${master}`, { oneWay: true });
    await sim.clock.advance(sim.node(master).timing.failureTimeoutMs * 10);
    sim.network.heal();
    await sim.until(() => sim!.converged(range(5).filter((n) => sim!.node(n).master !== undefined)) && others.every((n) => sim!.node(n).master !== undefined), 30_000, 'a master again');
    await sim.clock.advance(sim.node(others[0]!).timing.failureTimeoutMs * 5);
    const history = sim.node(others[0]!).transitions(head);
    const downs = history.filter((t) => t.kind === 'state' && t.to === 'GoingDown');
    // Only the deaf master may have been taken out: the members could not reach it.
    expect(downs.filter((t) => t.node !== master).map((t) => `${t.node} (${t.cause})`)).toEqual([]);
    for (const t of downs) {
      const recorded = range(5).some((n) => sim!.node(n).decisionRecords().some((r) => r.kind === 'down' && r.node === t.node && r.term === t.term));
      expect(recorded, `a decision record for #${t.number} ${t.node} GoingDown`).toBe(true);
    }
  });
});
