import { describe, expect, it } from 'vitest';
import { cryptoRandom, InvalidArgumentError, seededRandom } from '@clusterinfra/core';

describe('random sources', () => {
  it('a seed replays exactly, and different seeds differ', () => {
    const draw = (seed: number | string) => {
      const r = seededRandom(seed);
      return [r.next(), r.int(1000), ...r.bytes(7)];
    };
    expect(draw(42)).toEqual(draw(42));
    expect(draw('abc')).toEqual(draw('abc'));
    expect(draw(42)).not.toEqual(draw(43));
  });

  it('a seed is a string or a finite number: anything else is refused (every object was the seed "[object Object]")', () => {
    for (const seed of [null, undefined, {}, [], Number.NaN, Number.POSITIVE_INFINITY, true]) expect(() => seededRandom(seed as never)).toThrow(InvalidArgumentError);
    expect(seededRandom('x').fork('y').next()).toBe(seededRandom('x/y').next());
  });

  it('stays in range and is roughly uniform', () => {
    const r = seededRandom(7);
    const buckets = new Array(10).fill(0);
    let outOfRange = 0;
    for (let i = 0; i < 100_000; i++) {
      const x = r.next();
      if (!(x >= 0 && x < 1)) outOfRange++;
      else buckets[Math.floor(x * 10)]++;
    }
    expect(outOfRange).toBe(0);
    for (const b of buckets) expect(Math.abs(b - 10_000)).toBeLessThan(600);
    for (let i = 0; i < 1000; i++) {
      const n = r.int(3);
      expect([0, 1, 2]).toContain(n);
    }
  });

  it('forks independent, reproducible streams', () => {
    const a = seededRandom(1).fork('net');
    const b = seededRandom(1).fork('net');
    const c = seededRandom(1).fork('clms');
    const seq = (r: typeof a) => Array.from({ length: 5 }, () => r.next());
    const sa = seq(a);
    expect(sa).toEqual(seq(b));
    expect(sa).not.toEqual(seq(c));
  });

  it('the crypto source gives fresh bytes', () => {
    const x = cryptoRandom.bytes(32);
    const y = cryptoRandom.bytes(32);
    expect(x.length).toBe(32);
    expect(Buffer.from(x).equals(Buffer.from(y))).toBe(false);
    const v = cryptoRandom.next();
    expect(v >= 0 && v < 1).toBe(true);
  });
});
