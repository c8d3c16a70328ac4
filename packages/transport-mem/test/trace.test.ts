import { describe, expect, it } from 'vitest';
import { Trace, type TraceInput } from '../src/trace.js';

/** The digest after recording `entries` (each `[at, input, content?]`) on a fresh trace. */
function digestOf(entries: [number, TraceInput, Uint8Array?][]): string {
  const t = new Trace(4);
  for (const [at, input, content] of entries) t.record(at, input, content);
  return t.digest();
}

const deliver = (over: Partial<TraceInput> = {}): TraceInput => ({ event: 'deliver', from: 'node-1', to: 'node-2', link: 1, frame: 1, size: 3, ...over });

describe('Trace hash', () => {
  it('is the same for the same entries, and a hex SHA-256', () => {
    const entries: [number, TraceInput, Uint8Array?][] = [
      [0, deliver(), new Uint8Array([1, 2, 3])],
      [5, deliver({ frame: 2 }), new Uint8Array([4, 5, 6])],
    ];
    expect(digestOf(entries)).toBe(digestOf(entries));
    expect(digestOf(entries)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('tells apart entries that differ in any one field', () => {
    const base = digestOf([[7, deliver(), new Uint8Array([1, 2, 3])]]);
    const variants: [number, TraceInput, Uint8Array?][] = [
      [8, deliver(), new Uint8Array([1, 2, 3])],
      [7, deliver({ event: 'drop' }), new Uint8Array([1, 2, 3])],
      [7, deliver({ from: 'node-3' }), new Uint8Array([1, 2, 3])],
      [7, deliver({ to: 'node-3' }), new Uint8Array([1, 2, 3])],
      [7, deliver({ link: 2 }), new Uint8Array([1, 2, 3])],
      [7, deliver({ frame: 2 }), new Uint8Array([1, 2, 3])],
      [7, deliver({ size: 4 }), new Uint8Array([1, 2, 3])],
      [7, deliver({ detail: 'x' }), new Uint8Array([1, 2, 3])],
      [7, deliver(), new Uint8Array([1, 2, 4])],
      [7, deliver()],
    ];
    const seen = new Set([base]);
    for (const v of variants) seen.add(digestOf([v]));
    expect(seen.size).toBe(variants.length + 1);
  });

  it('cannot confuse where one field ends and the next begins', () => {
    // The same characters split differently between from, to and detail; a field absent or empty.
    const a = digestOf([[0, { event: 'connect', from: 'ab', to: 'c' }]]);
    const b = digestOf([[0, { event: 'connect', from: 'a', to: 'bc' }]]);
    const c = digestOf([[0, { event: 'connect', from: 'abc' }]]);
    const d = digestOf([[0, { event: 'connect', from: 'abc', to: '' }]]);
    const e = digestOf([[0, { event: 'connect', to: 'abc' }]]);
    expect(new Set([a, b, c, d, e]).size).toBe(5);
    // Content bytes that spell out the next entry are not that entry.
    const f = digestOf([[0, { event: 'hold' }, new Uint8Array([1, 2])], [0, { event: 'hold' }]]);
    const g = digestOf([[0, { event: 'hold' }], [0, { event: 'hold' }, new Uint8Array([1, 2])]]);
    expect(f).not.toBe(g);
  });

  it('a string seen before counts as that string, and differently placed strings differ', () => {
    // node-1 then node-2 both ways round: each trace writes each address out once, then refers to it.
    const ab = digestOf([[0, deliver()], [1, deliver()], [2, deliver({ from: 'node-2', to: 'node-1' })]]);
    const ba = digestOf([[0, deliver()], [1, deliver({ from: 'node-2', to: 'node-1' })], [2, deliver()]]);
    expect(ab).not.toBe(ba);
    expect(ab).toBe(digestOf([[0, deliver()], [1, deliver()], [2, deliver({ from: 'node-2', to: 'node-1' })]]));
  });

  it('an entry with every field and the largest inline content fits wherever the batch stands (up to its flush size)', () => {
    // Every offset an entry can start at just below the flush size is reached by some first entry's padding.
    const e: TraceInput = { event: 'deliver', from: 'a', to: 'b', link: 1, frame: 1, size: 256, detail: 'd' };
    const full = new Uint8Array(256).fill(1);
    for (let pad = 0; pad < 320; pad++) {
      const t = new Trace(0);
      t.record(0, e, new Uint8Array(pad));
      for (let i = 0; i < 260; i++) t.record(i, e, full);
      expect(t.digest()).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it('hashes large contents whole, batches across its flush size, and keeps its string table bounded', () => {
    const big = (fill: number) => new Uint8Array(100_000).fill(7).map((x, i) => (i === 99_999 ? fill : x));
    expect(digestOf([[0, deliver(), big(1)]])).not.toBe(digestOf([[0, deliver(), big(2)]]));
    // Many entries with ever-new details (more than the string table keeps) and small contents, past several flushes.
    const many = (last: number): string => {
      const t = new Trace(4);
      for (let i = 0; i < 20_000; i++) t.record(i, { event: 'faults', from: `n-${i % 7}`, detail: `settings ${i}` }, new Uint8Array(200).fill(i & 0xff));
      t.record(20_000, { event: 'heal', from: `n-${last}` });
      return t.digest();
    };
    expect(many(1)).toBe(many(1));
    expect(many(1)).not.toBe(many(2));
    // The digest is a snapshot: recording more afterwards changes the next one.
    const t = new Trace(4);
    t.record(0, deliver());
    const first = t.digest();
    expect(t.digest()).toBe(first);
    t.record(1, deliver());
    expect(t.digest()).not.toBe(first);
  });
});
