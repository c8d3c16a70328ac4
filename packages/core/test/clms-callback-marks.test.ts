/**
 * What a node ran for each (node, incarnation): nodeup callbacks, the
 * nodeup event, cleanup. Asked for every member about every joiner, so kept
 * without string keys; bounded, so a peer that restarts for ever does not
 * grow it for ever.
 */
import { describe, expect, it } from 'vitest';
import { Marks } from '../src/clms/driver/callbacks.js';

describe('callback marks', () => {
  it('sets each flag once per (node, incarnation), the others independent', () => {
    const m = new Marks();
    expect(m.add(4, 1_765_000_000_001, 1)).toBe(true);
    expect(m.add(4, 1_765_000_000_001, 1)).toBe(false);
    expect(m.has(4, 1_765_000_000_001, 1)).toBe(true);
    expect(m.has(4, 1_765_000_000_001, 2)).toBe(false);
    expect(m.add(4, 1_765_000_000_001, 2)).toBe(true);
    expect(m.has(4, 1_765_000_000_002, 1)).toBe(false);
    expect(m.has(5, 1_765_000_000_001, 1)).toBe(false);
  });

  it('keeps the last eight incarnations of a node', () => {
    const m = new Marks();
    for (let inc = 1; inc <= 20; inc++) m.add(7, inc, 4);
    expect(m.has(7, 20, 4)).toBe(true);
    expect(m.has(7, 13, 4)).toBe(true);
    expect(m.has(7, 12, 4)).toBe(false);
    expect(m.has(7, 1, 4)).toBe(false);
  });
});
