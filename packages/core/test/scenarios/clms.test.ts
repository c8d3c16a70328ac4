import { afterEach, describe, expect, it } from 'vitest';
import type { Transition } from '@clusterinfra/core';
import { type SimCluster, simCluster } from './clms-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);
const stateOn = (s: SimCluster, on: number, of: number): string | undefined => s.node(on).info(of)?.state;
const allUp = (s: SimCluster, ns: number[]): boolean => ns.every((n) => ns.every((m) => stateOn(s, n, m) === 'Up'));

/** M1/M2: numbers go up by one, and two nodes agree on every number both applied. */
function checkHistories(s: SimCluster, ns: number[]): void {
  const hs = ns.map((n) => s.node(n).transitions());
  for (const h of hs) h.forEach((t, i) => i > 0 && expect(t.number).toBe(h[i - 1]!.number + 1));
  const byNumber = new Map<number, Transition>();
  for (const h of hs) {
    for (const t of h) {
      const seen = byNumber.get(t.number);
      if (seen) expect(t).toEqual(seen);
      else byNumber.set(t.number, t);
    }
  }
}

describe('formation', () => {
  for (const size of [1, 2, 3, 5]) {
    it(`forms a ${size}-node cluster: one master, every node Up everywhere, one history`, async () => {
      sim = simCluster(size, { candidates: range(Math.min(size, 3)) });
      await sim.until(() => allUp(sim!, range(size)) && sim!.converged(range(size)), 30_000, 'formation');
      const masters = new Set(range(size).map((n) => sim!.node(n).master));
      expect(masters.size).toBe(1);
      expect(sim.node(1).candidates).toContain([...masters][0]);
      checkHistories(sim, range(size));
      const h = sim.node(1).transitions();
      expect(h[0]!.number).toBe(1);
      expect(h.filter((t) => t.kind === 'state' && t.to === 'Up').map((t) => t.node).sort()).toEqual(range(size));
    });
  }
});

describe('failures', () => {
  it('kills a non-master: GoingDown then Down everywhere after cleanup, callbacks once per node', async () => {
    sim = simCluster(3);
    const downs = new Map<number, number[]>();
    for (const n of [1, 2, 3]) {
      downs.set(n, []);
      sim.node(n).registerSubsystem({ name: 'probe', nodedown: (e) => void downs.get(n)!.push(e.node) });
    }
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const victim = [1, 2, 3].find((n) => n !== master)!;
    const survivors = [1, 2, 3].filter((n) => n !== victim);
    const t0 = sim.clock.now();
    sim.kill(victim);
    await sim.until(() => survivors.every((n) => stateOn(sim!, n, victim) === 'Down'), 10_000, 'Down');
    // A crash is seen through the broken links: far quicker than the failure timeout.
    expect(sim.clock.now() - t0).toBeLessThan(sim.node(master).timing.failureTimeoutMs);
    for (const n of survivors) expect(downs.get(n)).toEqual([victim]);
    const states = sim.node(master).transitions().filter((t) => t.node === victim).map((t) => t.to);
    expect(states.slice(-2)).toEqual(['GoingDown', 'Down']);
    checkHistories(sim, survivors);
    const record = sim.node(master).decisionRecords().find((r) => r.kind === 'down');
    expect(record?.node).toBe(victim);
  });

  it('kills the master: a surviving candidate takes over with a higher term, history intact', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const old = sim.node(1).master!;
    const oldTerm = sim.node(old).currentTerm;
    const before = sim.node(old).transitions();
    const survivors = [1, 2, 3].filter((n) => n !== old);
    sim.kill(old);
    await sim.until(
      () => survivors.every((n) => stateOn(sim!, n, old) === 'Down') && sim!.converged(survivors),
      20_000,
      'failover',
    );
    const master = sim.node(survivors[0]!).master!;
    expect(survivors).toContain(master);
    expect(sim.node(master).currentTerm).toBeGreaterThan(oldTerm);
    // Every transition committed under the old master is still there, unchanged.
    const after = sim.node(master).transitions();
    expect(after.slice(0, before.length)).toEqual(before);
    checkHistories(sim, survivors);
  });

  it('a pause shorter than the timeout is not a failure; a longer one is, and the node rejoins as a new incarnation', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const victim = [1, 2, 3].find((n) => n !== master)!;
    const timeout = sim.node(master).timing.failureTimeoutMs;
    const head = sim.node(master).lastTransition;
    sim.network.pause(`node-${victim}`);
    await sim.clock.advance(timeout / 2);
    sim.network.resume(`node-${victim}`);
    await sim.clock.advance(timeout * 2);
    expect(stateOn(sim, master, victim)).toBe('Up');
    expect(sim.node(master).lastTransition).toBe(head);

    const oldIncarnation = sim.node(victim).incarnation;
    sim.network.pause(`node-${victim}`);
    await sim.until(() => stateOn(sim!, master, victim) === 'Down', 10_000, 'the paused node declared down');
    sim.network.resume(`node-${victim}`);
    await sim.until(
      () => stateOn(sim!, master, victim) === 'Up' && sim!.node(master).info(victim)!.incarnation !== oldIncarnation && sim!.converged([1, 2, 3]),
      30_000,
      'rejoin as a new incarnation',
    );
    expect(sim.node(victim).incarnation).not.toBe(oldIncarnation);
  });
});

describe('membership API', () => {
  it('a node leaves cleanly: ShuttingDown then Down, and it closes', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const leaver = [1, 2, 3].find((n) => n !== master)!;
    let left = false;
    void sim.node(leaver).leave().then(() => (left = true));
    await sim.until(() => left && stateOn(sim!, master, leaver) === 'Down', 10_000, 'leave');
    const states = sim.node(master).transitions().filter((t) => t.node === leaver).map((t) => t.to);
    expect(states.slice(-2)).toEqual(['ShuttingDown', 'Down']);
  });

  it('declares a node down through the API, from any node', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const [asker, victim] = [1, 2, 3].filter((n) => n !== master) as [number, number];
    void sim.node(asker).declareDown(victim, 'operator said so');
    await sim.until(() => stateOn(sim!, master, victim) === 'GoingDown' || stateOn(sim!, master, victim) === 'Down', 10_000, 'declared down');
    const t = sim.node(master).transitions().find((x) => x.node === victim && x.to === 'GoingDown');
    expect(t?.cause).toBe('operator said so');
  });

  it('a late joiner receives the whole history', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    sim.start(4, { seeds: ['node-1', 'node-2', 'node-3'] });
    await sim.until(() => allUp(sim!, [1, 2, 3, 4]) && sim!.converged([1, 2, 3, 4]), 30_000, 'late join');
    expect(sim.node(4).transitions()).toEqual(sim.node(1).transitions());
  });
});

describe('metadata', () => {
  it('setInfo replicates metadata as a transition', async () => {
    sim = simCluster(3, { extra: (n) => ({ meta: { zone: `z${n}` } }) });
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    expect(sim.node(1).info(2)?.meta).toEqual({ zone: 'z2' });
    let done = false;
    void sim.node(2).setInfo({ zone: 'z9', rack: 4 }).then(() => (done = true));
    await sim.until(() => done && [1, 2, 3].every((n) => sim!.node(n).info(2)?.meta.zone === 'z9'), 10_000, 'meta');
    const t = sim.node(3).transitions().at(-1)!;
    expect(t).toMatchObject({ kind: 'meta', node: 2, from: 'Up', to: 'Up' });
    expect(sim.node(1).info(2)?.state).toBe('Up');
  });
});
