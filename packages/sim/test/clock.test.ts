import { describe, expect, it } from 'vitest';
import { SeededRandom, type TimerHandle, VirtualClock } from '@clusterinfra/core';
import { NodeClock, runSeed, SimClock } from '@clusterinfra/sim';

/**
 * SimClock must fire exactly what core's VirtualClock fires, in the same
 * order and at the same times (the trace hashes depend on it): the same
 * random program of set, cancel and advance runs on both.
 */
async function program(clock: SimClock | VirtualClock, seed: string): Promise<string[]> {
  const r = new SeededRandom(seed);
  const out: string[] = [];
  const handles: TimerHandle[] = [];
  let id = 0;
  const set = (ms: number): void => {
    const me = id++;
    handles.push(
      clock.setTimeout(() => {
        out.push(`${me}@${clock.now()}`);
        // Timers set timers (at once and later) and cancel others, as ICS does.
        if (r.next() < 0.3) set(r.int(3) === 0 ? 0 : r.int(50));
        if (r.next() < 0.2 && handles.length > 0) handles[r.int(handles.length)]!.cancel();
      }, ms),
    );
  };
  for (let round = 0; round < 40; round++) {
    for (let i = r.int(30); i > 0; i--) set(r.int(3) === 0 ? r.int(5) : r.int(200));
    for (let i = r.int(10); i > 0; i--) handles[r.int(handles.length)]!.cancel();
    await clock.advance(r.int(120));
    out.push(`pending ${clock.pending} next ${clock.nextDue() ?? '-'} fired ${clock.fired}`);
  }
  return out;
}

describe('SimClock', () => {
  it('fires what VirtualClock fires, in the same order, at the same times', async () => {
    for (const seed of ['a', 'b', 'c', 'd']) {
      const want = await program(new VirtualClock(), seed);
      const got = await program(new SimClock(), seed);
      expect(got.length).toBeGreaterThan(500);
      expect(got, `program ${seed}`).toEqual(want);
    }
  });

  it('a cancelled timer leaves the heap at once', () => {
    const c = new SimClock();
    const hs = Array.from({ length: 100 }, (_, i) => c.setTimeout(() => {}, i));
    for (const h of hs.slice(0, 60)) h.cancel();
    expect(c.pending).toBe(40);
    expect(c.nextDue()).toBe(60);
  });

  it('advanceUntil stops when the predicate holds, or at the bound', async () => {
    const c = new SimClock();
    let n = 0;
    const tick = (): void => {
      n++;
      c.setTimeout(tick, 10);
    };
    c.setTimeout(tick, 10);
    expect(await c.advanceUntil(() => n === 5, 1000)).toBe(true);
    expect(c.now()).toBe(50);
    expect(await c.advanceUntil(() => false, 100)).toBe(false);
    expect(c.now()).toBe(150);
  });
});

describe('NodeClock on a SimClock', () => {
  it('holds timers while paused and fires them at resume in the order they fell due; a killed clock fires nothing', async () => {
    const base = new SimClock();
    const a = new NodeClock(base);
    const b = new NodeClock(base);
    const seen: string[] = [];
    a.setTimeout(() => seen.push(`a1@${base.now()}`), 10);
    a.setTimeout(() => seen.push(`a2@${base.now()}`), 20);
    const cancelled = a.setTimeout(() => seen.push('a3'), 25);
    b.setTimeout(() => seen.push(`b1@${base.now()}`), 15);
    a.pause();
    await base.advance(30);
    cancelled.cancel();
    expect(seen).toEqual(['b1@15']);
    base.setTimeout(() => a.resume(), 10);
    await base.advance(20);
    expect(seen).toEqual(['b1@15', 'a1@40', 'a2@40']);
    b.setTimeout(() => seen.push('b2'), 5);
    b.kill();
    await base.advance(20);
    expect(seen).toEqual(['b1@15', 'a1@40', 'a2@40']);
  });

  it('on core VirtualClock too (core scenario tests use it so)', async () => {
    const base = new VirtualClock();
    const a = new NodeClock(base);
    const seen: number[] = [];
    a.setTimeout(() => seen.push(base.now()), 10);
    a.pause();
    await base.advance(20);
    expect(seen).toEqual([]);
    a.resume();
    await base.advance(1);
    expect(seen).toEqual([20]);
  });
});

describe('profile huge', () => {
  it('a cluster forms, its master crashes, the others agree again with it Down', async () => {
    const r = await runSeed({ seed: 1, nodes: 24, profile: 'huge' });
    expect(r.violation).toBeUndefined();
    expect(r.milestones.map((m) => m.what)).toEqual(['formed', 'recovered']);
    expect(r.tail.some((l) => / crash n\d+ \(master\)/.test(l))).toBe(true);
    // Joins and ups of 24 nodes, then the master's GoingDown and Down, and a new master.
    expect(r.committed).toBeGreaterThanOrEqual(2 * 24 + 2);
    expect(r.replay).toBe('npm run sim -- --seed 1 --nodes 24 --profile huge');
  });
});
