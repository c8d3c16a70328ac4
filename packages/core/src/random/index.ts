/**
 * Chance is injected (DESIGN §4): jitter, nonces, incarnations and fault
 * schedules draw from a `RandomSource`. The real one uses `node:crypto`;
 * the seeded one is a small, fast PRNG (sfc32 seeded through splitmix32)
 * that replays exactly from its seed.
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import { InvalidArgumentError } from '../errors/index.js';

export interface RandomSource {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, maxExclusive). */
  int(maxExclusive: number): number;
  /** `n` random bytes. Real sources use the OS CSPRNG. */
  bytes(n: number): Uint8Array;
}

/** The real random source, backed by the OS CSPRNG. */
export class CryptoRandom implements RandomSource {
  private readonly buf = new Uint32Array(256);
  private pos = 256;

  next(): number {
    if (this.pos >= this.buf.length) {
      randomFillSync(this.buf);
      this.pos = 0;
    }
    return this.buf[this.pos++]! / 4294967296;
  }

  int(maxExclusive: number): number {
    return Math.floor(this.next() * maxExclusive);
  }

  bytes(n: number): Uint8Array {
    return new Uint8Array(randomBytes(n));
  }
}

export const cryptoRandom: RandomSource = new CryptoRandom();

function hashSeed(seed: number | string): number {
  // FNV-1a over the string form: any seed value maps to 32 bits stably.
  const s = String(seed);
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A deterministic random source: the same seed gives the same sequence. */
export class SeededRandom implements RandomSource {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  readonly seed: number | string;

  constructor(seed: number | string) {
    // Anything else would hash as its String() ("[object Object]" for every object): the same stream for different seeds.
    if (!(typeof seed === 'string' || (typeof seed === 'number' && Number.isFinite(seed)))) throw new InvalidArgumentError(`a seed is a string or a finite number, got ${seed === null ? 'null' : typeof seed}`);
    this.seed = seed;
    let s = hashSeed(seed);
    const splitmix = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = splitmix();
    this.b = splitmix();
    this.c = splitmix();
    this.d = splitmix();
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  next(): number {
    return this.nextUint32() / 4294967296;
  }

  int(maxExclusive: number): number {
    return Math.floor(this.next() * maxExclusive);
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.nextUint32();
      for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = (v >>> (8 * j)) & 0xff;
    }
    return out;
  }

  /** An independent stream derived from this seed and `label`. */
  fork(label: string): SeededRandom {
    return new SeededRandom(`${String(this.seed)}/${label}`);
  }
}

export function seededRandom(seed: number | string): SeededRandom {
  return new SeededRandom(seed);
}
