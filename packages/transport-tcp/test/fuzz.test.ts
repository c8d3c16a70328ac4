/**
 * Property tests of everything that parses bytes from the network before
 * authentication: the frame decoder and the handshake message parsers.
 * FUZZ_RUNS raises the number of runs (`npm run fuzz`).
 */
import { ClusterInfraError, FrameTooLargeError, IntegrityError, MalformedFrameError } from '@clusterinfra/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAGIC, MAX_CONTROL_SIZE, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, RECORD_JOIN_MAX, recordMaxPlaintext } from '../src/constants.js';
import { type DecodedFrame, FrameDecoder, encodeControl, encodeDataFrame } from '../src/frame.js';
import {
  type Hello,
  type Ready,
  type Welcome,
  encodeAuth,
  encodeHello,
  encodeReady,
  encodeWelcome,
  negotiateVersion,
  parseAuth,
  parseEmpty,
  parseHello,
  parseReady,
  parseReject,
  parseWelcome,
} from '../src/handshake.js';
import { RecordOpener, RecordSealer } from '../src/record.js';

const RUNS = Math.max(10_000, Number(process.env.FUZZ_RUNS ?? 0) || 0);
const params = { numRuns: RUNS };
const MAX = 512;

type Spec = { control: false; data: Uint8Array } | { control: true; type: number; body: Uint8Array };

const frameSpec: fc.Arbitrary<Spec> = fc.oneof(
  fc.uint8Array({ maxLength: MAX }).map((data) => ({ control: false as const, data })),
  fc
    .record({ type: fc.integer({ min: 0, max: 255 }), body: fc.uint8Array({ maxLength: 64 }) })
    .map(({ type, body }) => ({ control: true as const, type, body })),
);

/** Small frames, for the byte-at-a-time property (its cost grows with every byte). */
const smallFrameSpec: fc.Arbitrary<Spec> = fc.oneof(
  fc.uint8Array({ maxLength: 48 }).map((data) => ({ control: false as const, data })),
  fc
    .record({ type: fc.integer({ min: 0, max: 255 }), body: fc.uint8Array({ maxLength: 16 }) })
    .map(({ type, body }) => ({ control: true as const, type, body })),
);

function encode(specs: Spec[]): Uint8Array {
  return Buffer.concat(specs.map((s) => (s.control ? encodeControl(s.type, s.body) : encodeDataFrame(s.data))));
}

/** Split `bytes` at the given cut points (sorted, deduplicated, within range). */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.byteLength + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of [...points, bytes.byteLength]) {
    out.push(bytes.subarray(prev, p));
    prev = p;
  }
  return out;
}

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0;

/** Plain checks (not `expect`) in the hot path: these run hundreds of thousands of times. */
function sameFrame(got: DecodedFrame, want: Spec): void {
  const ok = want.control
    ? got.kind === 'control' && got.type === want.type && same(got.body, want.body)
    : got.kind === 'data' && same(got.data, want.data);
  if (!ok) throw new Error(`decoded ${JSON.stringify(got)} but encoded ${JSON.stringify(want)}`);
}

/** Feed chunks; return frames and the error thrown (which must be typed). */
function run(decoder: FrameDecoder, chunks: Uint8Array[]): { frames: DecodedFrame[]; error?: unknown } {
  const frames: DecodedFrame[] = [];
  try {
    for (const c of chunks) frames.push(...decoder.push(c));
  } catch (error) {
    return { frames, error };
  }
  return { frames };
}

function checkBounds(frames: DecodedFrame[], max: number): void {
  for (const f of frames) {
    const size = f.kind === 'data' ? f.data.byteLength : f.body.byteLength + 1;
    if (size > (f.kind === 'data' ? max : MAX_CONTROL_SIZE)) throw new Error(`frame of ${size} bytes over the limit`);
  }
}

function typed(error: unknown): void {
  if (error !== undefined && !(error instanceof ClusterInfraError)) throw new Error(`untyped error: ${String(error)}`);
}

describe('FrameDecoder under fuzzing', () => {
  it('random bytes in random chunks: only typed errors, never a frame over the max', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), fc.array(fc.nat(), { maxLength: 20 }), (bytes, cuts) => {
        const { frames, error } = run(new FrameDecoder({ maxFrameSize: MAX }), split(bytes, cuts));
        typed(error);
        checkBounds(frames, MAX);
      }),
      params,
    );
  });

  it('valid frames split anywhere decode to exactly what was encoded', () => {
    fc.assert(
      fc.property(fc.array(frameSpec, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 30 }), (specs, cuts) => {
        const { frames, error } = run(new FrameDecoder({ maxFrameSize: MAX }), split(encode(specs), cuts));
        if (error !== undefined) throw error;
        if (frames.length !== specs.length) throw new Error(`${frames.length} frames, want ${specs.length}`);
        frames.forEach((f, i) => sameFrame(f, specs[i]!));
      }),
      params,
    );
  });

  it('one byte at a time gives the same frames', () => {
    fc.assert(
      fc.property(fc.array(smallFrameSpec, { maxLength: 4 }), (specs) => {
        const bytes = encode(specs);
        const chunks = Array.from({ length: bytes.byteLength }, (_, i) => bytes.subarray(i, i + 1));
        const decoder = new FrameDecoder({ maxFrameSize: MAX });
        const { frames, error } = run(decoder, chunks);
        expect(error).toBeUndefined();
        expect(frames.length).toBe(specs.length);
        frames.forEach((f, i) => sameFrame(f, specs[i]!));
        expect(decoder.partial).toBe(false);
      }),
      params,
    );
  });

  it('truncated input: a prefix of the frames, and `partial` when cut inside one', () => {
    fc.assert(
      fc.property(fc.array(frameSpec, { minLength: 1, maxLength: 8 }), fc.nat(), (specs, cut) => {
        const bytes = encode(specs);
        const at = cut % (bytes.byteLength + 1);
        const decoder = new FrameDecoder({ maxFrameSize: MAX });
        const { frames, error } = run(decoder, [bytes.subarray(0, at)]);
        expect(error).toBeUndefined();
        frames.forEach((f, i) => sameFrame(f, specs[i]!));
        const boundaries = new Set<number>([0]);
        let end = 0;
        for (const s of specs) {
          end += 4 + (s.control ? 1 + s.body.byteLength : s.data.byteLength);
          boundaries.add(end);
        }
        expect(decoder.partial).toBe(!boundaries.has(at));
      }),
      params,
    );
  });

  it('garbage after valid frames: the frames come out, then at most a typed error', () => {
    fc.assert(
      fc.property(fc.array(frameSpec, { maxLength: 6 }), fc.uint8Array({ minLength: 1, maxLength: 64 }), (specs, junk) => {
        const decoder = new FrameDecoder({ maxFrameSize: MAX });
        const good = decoder.push(encode(specs));
        good.forEach((f, i) => sameFrame(f, specs[i]!));
        const { frames, error } = run(decoder, [junk]);
        typed(error);
        checkBounds(frames, MAX);
      }),
      params,
    );
  });

  it('mutated valid streams: only typed errors, never a frame over the max', () => {
    fc.assert(
      fc.property(
        fc.array(frameSpec, { minLength: 1, maxLength: 6 }),
        fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (specs, flips, cuts) => {
          const bytes = Buffer.from(encode(specs));
          for (const { at, value } of flips) bytes[at % bytes.byteLength] = value;
          const { frames, error } = run(new FrameDecoder({ maxFrameSize: MAX }), split(bytes, cuts));
          typed(error);
          checkBounds(frames, MAX);
        },
      ),
      params,
    );
  });

  it('any header: over-limit lengths fail at the 4th byte, before any body arrives', () => {
    const special = [0, 1, MAX, MAX + 1, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, 2 ** 31 + MAX_CONTROL_SIZE, 2 ** 31 + MAX_CONTROL_SIZE + 1, 2 ** 32 - 1];
    const header = fc.oneof(fc.constantFrom(...special), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
    fc.assert(
      fc.property(header, (value) => {
        const h = Buffer.alloc(4);
        h.writeUInt32BE(value >>> 0);
        const decoder = new FrameDecoder({ maxFrameSize: MAX });
        const control = value >= 2 ** 31;
        const length = value & 0x7fffffff;
        const bad = control ? length === 0 || length > MAX_CONTROL_SIZE : length > MAX;
        const { frames, error } = run(decoder, [h.subarray(0, 1), h.subarray(1, 3), h.subarray(3)]);
        if (bad) {
          expect(error).toBeInstanceOf(control ? MalformedFrameError : FrameTooLargeError);
          expect(frames).toEqual([]);
          expect(() => decoder.push(new Uint8Array(1))).toThrow(ClusterInfraError); // stays failed
        } else {
          expect(error).toBeUndefined();
          // A zero-length data frame is complete with its header; anything else waits for its body.
          expect(frames.length).toBe(!control && length === 0 ? 1 : 0);
          expect(decoder.partial).toBe(length !== 0 || control);
        }
      }),
      params,
    );
  });

  it('a frame split at every byte position decodes the same', () => {
    const specs: Spec[] = [
      { control: false, data: Uint8Array.from({ length: 40 }, (_, i) => i) },
      { control: true, type: 6, body: new Uint8Array(0) },
      { control: false, data: new Uint8Array(0) },
      { control: false, data: Uint8Array.of(9, 8, 7) },
    ];
    const bytes = encode(specs);
    for (let i = 0; i <= bytes.byteLength; i++) {
      for (let j = i; j <= bytes.byteLength; j += 7) {
        const { frames, error } = run(new FrameDecoder({ maxFrameSize: MAX }), [
          bytes.subarray(0, i),
          bytes.subarray(i, j),
          bytes.subarray(j),
        ]);
        expect(error).toBeUndefined();
        expect(frames.length).toBe(specs.length);
        frames.forEach((f, k) => sameFrame(f, specs[k]!));
      }
    }
  });

  it('refuses data frames while data is not allowed (the handshake phase)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 32 }), (data) => {
        const decoder = new FrameDecoder({ maxFrameSize: MAX, allowData: false });
        expect(() => decoder.push(encodeDataFrame(data))).toThrow(MalformedFrameError);
      }),
      params,
    );
  });
});

const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
const helloArb: fc.Arbitrary<Hello> = fc.record({
  minVersion: fc.integer({ min: 1, max: 100 }),
  maxVersion: fc.integer({ min: 100, max: 65535 }),
  flags: fc.integer({ min: 0, max: 255 }),
  nodeNum: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  incarnation: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  maxFrameSize: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  nonce: bytes32,
  clusterName: fc.string({ minLength: 1, maxLength: 60 }).map((s) => new Uint8Array(Buffer.from(s, 'utf8'))).filter((b) => b.byteLength <= 255),
});
const welcomeArb: fc.Arbitrary<Welcome> = fc.record({
  version: fc.integer({ min: 1, max: 65535 }),
  flags: fc.integer({ min: 0, max: 255 }),
  nonce: bytes32,
});
const readyArb: fc.Arbitrary<Ready> = fc.record({
  nodeNum: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  incarnation: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  maxFrameSize: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  proof: fc.oneof(fc.constant(new Uint8Array(0)), bytes32),
});

/** Every parser, for "only typed errors" properties. */
const parsers: Array<(b: Uint8Array) => unknown> = [
  parseHello,
  parseWelcome,
  parseReady,
  parseAuth,
  parseReject,
  (b) => parseEmpty(b, 'READY'),
];

function parsesOrTypedError(body: Uint8Array): void {
  for (const parse of parsers) {
    try {
      parse(body);
    } catch (err) {
      typed(err);
    }
  }
}

function sameHello(a: Hello, b: Hello): boolean {
  return a.minVersion === b.minVersion && a.maxVersion === b.maxVersion && a.flags === b.flags && a.nodeNum === b.nodeNum &&
    a.incarnation === b.incarnation && a.maxFrameSize === b.maxFrameSize && same(a.nonce, b.nonce) && same(a.clusterName, b.clusterName);
}

function sameWelcome(a: Welcome, b: Welcome): boolean {
  return a.version === b.version && a.flags === b.flags && same(a.nonce, b.nonce);
}

function sameReady(a: Ready, b: Ready): boolean {
  return a.nodeNum === b.nodeNum && a.incarnation === b.incarnation && a.maxFrameSize === b.maxFrameSize && same(a.proof, b.proof);
}

describe('handshake messages under fuzzing', () => {
  it('HELLO round-trips', () => {
    fc.assert(
      fc.property(helloArb, (h) => {
        if (!sameHello(parseHello(encodeHello(h)), h)) throw new Error('HELLO changed in a round trip');
      }),
      params,
    );
  });

  it('WELCOME round-trips', () => {
    fc.assert(
      fc.property(welcomeArb, (w) => {
        if (!sameWelcome(parseWelcome(encodeWelcome(w)), w)) throw new Error('WELCOME changed in a round trip');
      }),
      params,
    );
  });

  it('READY round-trips', () => {
    fc.assert(
      fc.property(readyArb, (r) => {
        if (!sameReady(parseReady(encodeReady(r)), r)) throw new Error('READY changed in a round trip');
      }),
      params,
    );
  });

  it('AUTH and REJECT round-trip', () => {
    fc.assert(
      fc.property(fc.oneof(fc.constant(new Uint8Array(0)), bytes32), (proof) => {
        expect(parseAuth(encodeAuth(proof))).toEqual(proof);
      }),
      params,
    );
  });

  it('random bytes: every parser returns or throws a typed error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (body) => parsesOrTypedError(body)),
      params,
    );
  });

  it('random bytes after the magic: every parser returns or throws a typed error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (rest) => parsesOrTypedError(Buffer.concat([MAGIC, rest]))),
      params,
    );
  });

  it('mutated, truncated and extended valid messages: typed errors only', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          helloArb.map((h) => ({ bytes: encodeHello(h), parse: parseHello as (b: Uint8Array) => unknown })),
          welcomeArb.map((w) => ({ bytes: encodeWelcome(w), parse: parseWelcome as (b: Uint8Array) => unknown })),
          readyArb.map((r) => ({ bytes: encodeReady(r), parse: parseReady as (b: Uint8Array) => unknown })),
        ),
        fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 6 }),
        fc.integer({ min: -80, max: 40 }),
        ({ bytes: valid, parse }, flips, resize) => {
          let body = Buffer.from(valid);
          for (const { at, value } of flips) body[at % body.byteLength] = value;
          if (resize < 0) body = body.subarray(0, Math.max(0, body.byteLength + resize));
          else body = Buffer.concat([body, Buffer.alloc(resize, 0xab)]);
          parsesOrTypedError(body);
          // Unmutated but resized, a message is always refused: sizes are exact.
          if (resize !== 0 && flips.length === 0) expect(() => parse(body)).toThrow(ClusterInfraError);
        },
      ),
      params,
    );
  });
});

describe('encrypted records under fuzzing', () => {
  const key = new Uint8Array(32).fill(7);
  const payloads = fc.array(fc.uint8Array({ minLength: 1, maxLength: 3000 }), { minLength: 1, maxLength: 6 });

  function sealAll(chunks: Uint8Array[], rekeyAfterBytes = 2 ** 32): Buffer {
    const out: Uint8Array[] = [];
    new RecordSealer(key, rekeyAfterBytes).seal(chunks, out);
    return Buffer.concat(out);
  }

  it('sealed bytes, split anywhere, open to the same plaintext (with key updates)', () => {
    fc.assert(
      fc.property(payloads, fc.array(fc.nat(), { maxLength: 8 }), fc.integer({ min: 1024, max: 8000 }), (chunks, cuts, rekey) => {
        const wire = sealAll(chunks, rekey);
        const at = [...new Set(cuts.map((c) => c % (wire.byteLength + 1)))].sort((a, b) => a - b);
        const opener = new RecordOpener(key);
        const plain: Uint8Array[] = [];
        let from = 0;
        for (const to of [...at, wire.byteLength]) {
          opener.open(wire.subarray(from, to), (p) => plain.push(p));
          from = to;
        }
        expect(same(Buffer.concat(plain), Buffer.concat(chunks))).toBe(true);
        expect(opener.partial).toBe(false);
      }),
      { numRuns: Math.min(RUNS, 2000) },
    );
  });

  it('one altered byte anywhere: a typed error, and nothing of that record is released', () => {
    fc.assert(
      fc.property(payloads, fc.nat(), fc.integer({ min: 1, max: 255 }), (chunks, where, xor) => {
        const wire = sealAll(chunks);
        const i = where % wire.byteLength;
        wire[i] = wire[i]! ^ xor;
        const opener = new RecordOpener(key);
        let released = 0;
        let error: unknown;
        try {
          opener.open(wire, (p) => (released += p.byteLength));
        } catch (err) {
          error = err;
        }
        // Records before the altered one may be released; the altered one never is: it fails,
        // or (a length made longer) waits for bytes that never come.
        if (error === undefined) expect(opener.partial).toBe(true);
        else expect(error).toBeInstanceOf(ClusterInfraError);
        expect(released).toBeLessThan(Buffer.concat(chunks).byteLength);
      }),
      { numRuns: Math.min(RUNS, 2000) },
    );
  });

  it('a key seals at most its record limit, then both sides move on; a peer that does not is cut off', () => {
    // The limit is 2^24 records in the protocol; 4 here, so that it is reached.
    const seal = (limit: number, count: number): { wire: Buffer; sealer: RecordSealer } => {
      const sealer = new RecordSealer(key, 2 ** 32, limit);
      const out: Uint8Array[] = [];
      for (let i = 0; i < count; i++) sealer.seal([Uint8Array.of(i)], out); // one record each
      return { wire: Buffer.concat(out), sealer };
    };
    const keyUpdateBits = (wire: Buffer): boolean[] => {
      const bits: boolean[] = [];
      for (let at = 0; at < wire.byteLength; at += 4 + (wire.readUInt32BE(at) & 0x7fffffff)) bits.push(wire.readUInt32BE(at) >= 0x8000_0000);
      return bits;
    };
    const { wire, sealer } = seal(4, 10);
    expect(keyUpdateBits(wire)).toEqual([false, false, false, true, false, false, false, true, false, false]);
    expect(sealer.updates).toBe(2);
    const opener = new RecordOpener(key, 4);
    const got: number[] = [];
    opener.open(wire, (p) => got.push(...p));
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(opener.updates).toBe(2);

    // A sender that keeps its key for 8 records, against a receiver that allows 4.
    const late = seal(8, 6).wire;
    const strict = new RecordOpener(key, 4);
    const delivered: number[] = [];
    expect(() => strict.open(late, (p) => delivered.push(...p))).toThrow(IntegrityError);
    expect(() => strict.open(late, () => {})).toThrow(/more than 4 records under one key/);
    expect(delivered).toEqual([0, 1, 2, 3]);
  });

  it('the record limit follows the negotiated version: 64 KiB under 2, 257 KiB under 3; a longer record is malformed', () => {
    expect(negotiateVersion(PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX, 2, 2)).toBe(2); // a protocol-2 peer keeps 64 KiB records
    expect(negotiateVersion(PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX, 2, 3)).toBe(3);
    const frame = encodeDataFrame(new Uint8Array(64 * 1024).fill(9)); // a 64 KiB frame with its header
    const sealWith = (version: number): Buffer => {
      const out: Uint8Array[] = [];
      new RecordSealer(key, 2 ** 32, 2 ** 24, recordMaxPlaintext(version)).seal([frame], out);
      return Buffer.concat(out);
    };
    const records = (wire: Buffer): number[] => {
      const sizes: number[] = [];
      for (let at = 0; at < wire.byteLength; at += 4 + (wire.readUInt32BE(at) & 0x7fffffff)) sizes.push(wire.readUInt32BE(at) & 0x7fffffff);
      return sizes;
    };
    expect(records(sealWith(2))).toEqual([64 * 1024 + 16, 4 + 16]);
    expect(records(sealWith(3))).toEqual([frame.byteLength + 16]);
    const opened: Uint8Array[] = [];
    new RecordOpener(key, 2 ** 24, recordMaxPlaintext(3)).open(sealWith(3), (p) => opened.push(p));
    expect(same(Buffer.concat(opened), frame)).toBe(true);
    // A protocol-2 receiver refuses the larger record before buffering its body.
    expect(() => new RecordOpener(key, 2 ** 24, recordMaxPlaintext(2)).open(sealWith(3).subarray(0, 4), () => {})).toThrow(MalformedFrameError);
    const limit = recordMaxPlaintext(3);
    const tooLong = Buffer.alloc(4);
    tooLong.writeUInt32BE(limit + 16 + 1);
    expect(() => new RecordOpener(key, 2 ** 24, limit).open(tooLong, () => {})).toThrow(/out of range/);
  });

  it('a small batch is sealed into one buffer, a large one into pieces without a copy; both open alike', () => {
    for (const size of [1, RECORD_JOIN_MAX, RECORD_JOIN_MAX + 1, 100_000]) {
      const plain = new Uint8Array(size).map((_, i) => i);
      const out: Uint8Array[] = [];
      new RecordSealer(key, 2 ** 32, 2 ** 24, recordMaxPlaintext(3)).seal([plain.subarray(0, size >> 1), plain.subarray(size >> 1)], out);
      if (size <= RECORD_JOIN_MAX) expect(out).toHaveLength(1);
      else expect(out.length).toBeGreaterThan(2);
      const opened: Uint8Array[] = [];
      new RecordOpener(key, 2 ** 24, recordMaxPlaintext(3)).open(Buffer.concat(out), (p) => opened.push(p));
      expect(same(Buffer.concat(opened), plain)).toBe(true);
    }
  });

  it('random bytes: a typed error or a partial record, never plaintext', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        try {
          new RecordOpener(key).open(bytes, () => {
            throw new Error('plaintext from random bytes');
          });
        } catch (err) {
          typed(err);
        }
      }),
      params,
    );
  });
});
