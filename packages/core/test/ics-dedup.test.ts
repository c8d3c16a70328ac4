/**
 * R4's dedup window: the last `window` message ids of a sender, one slot per
 * `id % window`. Its slots grow with the ids (a peer that sent little holds
 * little); it must answer exactly as a full `window`-slot array does.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DedupWindow } from '../src/ics/peer.js';

/** The model: every slot from the start. */
function full(window: number): (id: number) => boolean {
  const slots = new Uint32Array(window);
  return (id) => {
    const slot = id % window;
    if (slots[slot] === id) return false;
    slots[slot] = id;
    return true;
  };
}

describe('dedup window', () => {
  it('answers as a full window does, for any ids', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 16, max: 5000 }),
        fc.array(fc.oneof(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 20_000 }), fc.integer({ min: 1, max: 0xffff_ffff })), { maxLength: 400 }),
        (window, ids) => {
          const d = new DedupWindow(window);
          const model = full(window);
          for (const id of ids) expect(d.firstSight(id)).toBe(model(id));
        },
      ),
      { numRuns: 300, seed: 5 },
    );
  });

  it('answers as a full window does for ids that grow one by one, repeated and replayed', () => {
    const window = 4096;
    const d = new DedupWindow(window);
    const model = full(window);
    for (let id = 1; id <= 10_000; id++) {
      expect(d.firstSight(id)).toBe(model(id));
      // A repeat of this one, and of one a window ago (forgotten by then).
      expect(d.firstSight(id)).toBe(model(id));
      if (id > window) expect(d.firstSight(id - window)).toBe(model(id - window));
    }
  });

  it('keeps an id whose slot a smaller id takes later, across growth', () => {
    // 150 grows the slots from 64; were they too few for it, 22 would take its slot and 150 would pass again.
    const d = new DedupWindow(4096);
    expect([150, 22, 150, 22].map((id) => d.firstSight(id))).toEqual([true, true, false, false]);
  });

  it('is a duplicate only within the window', () => {
    const d = new DedupWindow(64);
    expect(d.firstSight(5)).toBe(true);
    expect(d.firstSight(5)).toBe(false);
    expect(d.firstSight(5 + 64)).toBe(true);
    expect(d.firstSight(5)).toBe(true);
  });
});
