/** Local health (clms/protocol/awareness.ts): the score of a node's own lateness, pure and deterministic. */
import { describe, expect, it } from 'vitest';
import { LocalHealth } from '../src/clms/protocol/awareness.js';

describe('LocalHealth', () => {
  it('stays at 0 while ticks are on time or late by less than the tolerance', () => {
    const h = new LocalHealth({ intervalMs: 50, max: 8 });
    for (let t = 0; t < 1000; t += 50) expect(h.tick(t, t + 12)).toBe(0);
    expect(h.multiplier).toBe(1);
    expect(h.scale(300)).toBe(300);
    expect(h.lateEvents).toBe(0);
  });

  it('rises by the intervals a late tick lost, up to max, and stretches waits by score + 1', () => {
    const h = new LocalHealth({ intervalMs: 50, max: 8 });
    expect(h.tick(100, 230)).toBe(3); // 130 ms late: 3 intervals
    expect(h.scale(300)).toBe(1200);
    expect(h.tick(280, 1280)).toBe(8); // capped
    expect(h.multiplier).toBe(9);
    expect(h.lateEvents).toBe(2);
  });

  it('decays by one per tick on time, back to 0', () => {
    const h = new LocalHealth({ intervalMs: 50, max: 8 });
    h.tick(0, 200);
    const seen: number[] = [];
    for (let i = 1; i <= 6; i++) seen.push(h.tick(200 + i * 50, 200 + i * 50 + 1));
    expect(seen).toEqual([3, 2, 1, 0, 0, 0]);
  });

  it('counts a timeout that fired late as its own lateness; early or on-time ones are not', () => {
    const h = new LocalHealth({ intervalMs: 100, max: 4, toleranceMs: 10 });
    expect(h.lateBy(-5)).toBe(false);
    expect(h.lateBy(10)).toBe(false);
    expect(h.lateBy(11)).toBe(true);
    expect(h.score).toBe(1);
  });

  it('max 0 turns it off: nothing is ever late', () => {
    const h = new LocalHealth({ intervalMs: 50, max: 0 });
    expect(h.tick(0, 5000)).toBe(0);
    expect(h.lateBy(5000)).toBe(false);
    expect(h.multiplier).toBe(1);
  });
});
