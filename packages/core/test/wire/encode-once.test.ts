/**
 * `encodeOnce`: a value encoded once is written as the same bytes the
 * writer makes of the value itself, wherever it sits in a body, so a frame
 * is the same byte for byte; the receiver decodes plain data. What it
 * cannot vouch for (bytes that may go out of line, what the writer
 * refuses) stays a plain value, so the send behaves as before.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NotSerializableError } from '../../src/errors/index.js';
import { BulkRef, decodeBody, Encoded, encodeBody, encodeOnce } from '../../src/ics/wire/index.js';

const transition = (n: number) => ({ number: n, term: 2, kind: 'state', node: 7, incarnation: 1_765_000_000_123, from: 'NeverUp', to: 'ComingUp', cause: 'joined', time: 1_765_000_000_000.5, address: 'node-7', meta: { rack: 'b', weight: 3 }, keyServices: [{ name: 'ks', critical: true }] });

describe('encodeOnce', () => {
  it('writes the bytes the value itself makes, at any place in a body', () => {
    const entries = [transition(1), transition(2)];
    const plain = { term: 2, history: 'h', commit: 1, entries };
    const once = { term: 2, history: 'h', commit: 1, entries: entries.map((t) => encodeOnce(t)) };
    expect(once.entries[0]).toBeInstanceOf(Encoded);
    expect(Buffer.from(encodeBody(once)).equals(Buffer.from(encodeBody(plain)))).toBe(true);
    expect(decodeBody(encodeBody(once))).toEqual(plain);
  });

  it('agrees with the writer on any plain data', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
        const outcome = (body: unknown): string => {
          try {
            return Buffer.from(encodeBody(body)).toString('hex');
          } catch (e) {
            return `refused: ${(e as Error).message}`;
          }
        };
        const wrapped = { v: typeof v === 'object' && v !== null ? encodeOnce(v) : v, after: [1, 'x'] };
        expect(outcome(wrapped)).toBe(outcome({ v, after: [1, 'x'] }));
      }),
      { numRuns: 300, seed: 11 },
    );
  });

  it('is made once per object', () => {
    const t = transition(3);
    expect(encodeOnce(t)).toBe(encodeOnce(t));
    expect(encodeOnce(transition(3))).not.toBe(encodeOnce(t));
  });

  it('leaves a value with bytes, or one the writer refuses, as it is', () => {
    const withBytes = { meta: { blob: new Uint8Array(4) } };
    expect(encodeOnce(withBytes)).toBe(withBytes);
    const withRef = { ref: new BulkRef(1, 10) };
    expect(encodeOnce(withRef)).toBe(withRef);
    const bad = { when: new Date(0) };
    expect(encodeOnce(bad)).toBe(bad);
    expect(() => encodeBody({ x: encodeOnce(bad) })).toThrow(NotSerializableError);
  });

  it('counts its nesting against the body limit where it is written', () => {
    const nested = { a: [{ b: 1 }] }; // three levels
    const once = encodeOnce(nested);
    expect((once as Encoded).depth).toBe(3);
    expect(() => encodeBody({ x: once }, { maxDepth: 4 })).not.toThrow();
    expect(() => encodeBody({ x: once }, { maxDepth: 3 })).toThrow(NotSerializableError);
    // The same limit the value itself meets.
    expect(() => encodeBody({ x: nested }, { maxDepth: 3 })).toThrow(NotSerializableError);
  });
});
