/**
 * Issue 16, 1(b): a GoingDown the master appended but never committed (it
 * could send but no longer receive), committed by the next master as part of
 * its first commit (Raft carries it over). The new master verifies the node
 * first (docs/protocol.md, "A carried GoingDown"); every committed GoingDown
 * has a decision record naming who proposed it, on what evidence, and what
 * the verification found.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { DecisionRecord } from '../../src/clms/types.js';
import { allUp, range, type SimCluster, simCluster } from './clms-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

describe('a GoingDown carried over by the next master', () => {
  it('of a dead node is re-verified, committed, and recorded on the new master with the proposer, its evidence and the verdict', async () => {
    const victim = 5;
    let deafened: number | undefined;
    sim = simCluster(5, {
      candidates: [1, 2, 3],
      extra: (n) => ({
        preset: 'lan',
        // The moment the master has decided to propose the victim's GoingDown,
        // it goes deaf: its append still reaches everyone, no answer comes back.
        confirmDown: (node) => {
          if (node === victim && deafened === undefined) {
            deafened = n;
            for (const m of range(5)) if (m !== n) sim!.network.partition(`node-${m}`, `node-${n}`, { oneWay: true });
          }
          return true;
        },
      }),
    });
    await sim.until(() => allUp(sim!, range(5)) && sim!.converged(range(5)), 30_000, 'formation');
    const first = sim.node(1).master!;
    const head = sim.node(first).lastTransition;
    sim.kill(victim);
    await sim.until(() => deafened !== undefined, 10_000, 'the master deciding to propose the GoingDown');
    expect(deafened).toBe(first);
    const survivors = range(5).filter((n) => n !== victim && n !== first);
    const next = (): number | undefined => sim!.node(survivors[0]!).master;
    await sim.until(() => next() !== undefined && next() !== first && sim!.converged(survivors), 30_000, 'a new master');
    const newMaster = next()!;
    const committed = (): boolean => sim!.node(newMaster).transitions(head).some((t) => t.node === victim && t.to === 'GoingDown');
    await sim.until(committed, 10_000, "the victim's GoingDown committed by the new master");
    // The deaf master never committed it (it heard no answer), so only the carry-over commits it.
    const down = sim.node(newMaster).transitions(head).find((t) => t.kind === 'state' && t.node === victim && t.to === 'GoingDown');
    expect(down, 'the GoingDown committed by the next master').toBeDefined();
    expect(down!.term).toBeLessThan(sim.node(newMaster).decisionRecords().find((r) => r.kind === 'master' && r.node === newMaster)!.term);
    expect(sim.node(first).decisionRecords().some((r) => r.kind === 'down' && r.node === victim)).toBe(false);
    const records = range(5).filter((n) => n !== victim).flatMap((n) => sim!.node(n).decisionRecords().filter((r) => r.kind === 'down' && r.node === victim && r.term === down!.term).map((r) => ({ on: n, ...r })));
    expect(records.map((r) => r.on)).toEqual([newMaster]);
    const [record] = records;
    expect(record!.rule).toContain(`proposed by master ${first} (term ${down!.term})`);
    expect(record!.rule).toContain(`evidence "${down!.cause}"`);
    expect(record!.rule).toContain('re-verified: unreachable');
    // The new master's own alive failed, and the helpers it asked could not reach the victim.
    expect(Object.keys(record!.observers!)).toContain(String(newMaster));
    expect(Object.values(record!.observers!)).toContain('could not reach it');
    expect(record!.timings?.verified).toBeGreaterThanOrEqual(0);
  });

  it('of a healthy node is re-verified as reachable before it commits; committed all the same, the node is back as a new incarnation', async () => {
    let victim: number | undefined;
    let deafened: number | undefined;
    sim = simCluster(5, {
      candidates: [1, 2, 3],
      extra: (n) => ({
        preset: 'lan',
        // The master fences the healthy node it was told to declare down,
        // then goes deaf: its append reaches everyone, no answer comes back.
        fence: async (node) => {
          if (node === victim && deafened === undefined) {
            deafened = n;
            for (const m of range(5)) if (m !== n) sim!.network.partition(`node-${m}`, `node-${n}`, { oneWay: true });
          }
        },
      }),
    });
    await sim.until(() => allUp(sim!, range(5)) && sim!.converged(range(5)), 30_000, 'formation');
    const first = sim.node(1).master!;
    victim = range(5).find((n) => n !== first && !sim!.node(n).candidates.includes(n))!;
    const before = sim.node(victim).incarnation;
    const head = sim.node(first).lastTransition;
    void sim.node(first).declareDown(victim, 'an operator mistake').catch(() => {});
    await sim.until(() => deafened !== undefined, 10_000, 'the master fencing the healthy node');
    const survivors = range(5).filter((n) => n !== victim && n !== first);
    const next = (): number | undefined => sim!.node(survivors[0]!).master;
    await sim.until(() => next() !== undefined && next() !== first && sim!.converged(survivors), 30_000, 'a new master');
    const newMaster = next()!;
    const record = (): DecisionRecord | undefined => sim!.node(newMaster).decisionRecords().find((r) => r.kind === 'down' && r.node === victim);
    await sim.until(() => record() !== undefined, 10_000, "the victim's carried GoingDown committed and recorded");
    const down = sim.node(newMaster).transitions(head).find((t) => t.kind === 'state' && t.node === victim && t.to === 'GoingDown');
    expect(down?.cause).toBe('an operator mistake');
    expect(down!.incarnation).toBe(before);
    expect(record()!.rule).toContain(`proposed by master ${first} (term ${down!.term})`);
    expect(record()!.rule).toContain('re-verified: reachable');
    expect(record()!.observers?.[String(newMaster)]).toBe('answered');
    // The node learns at once and comes back as a new incarnation.
    await sim.until(() => sim!.node(newMaster).info(victim!)?.state === 'Up' && sim!.node(newMaster).info(victim!)?.incarnation !== before, 30_000, 'the victim back as a new incarnation');
  });
});
