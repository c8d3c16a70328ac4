/**
 * The single-pass decoder (src/ics/wire/decode.ts) builds what msgpackr
 * builds from the same bytes, with the options the codec used to hand
 * msgpackr after its pre-scan: whenever the decoder accepts a body, msgpackr
 * reads the same value from it (BulkRefs, which msgpackr reads as its BigInt
 * extension, turned back as the codec did). Refusals are the business of
 * hostile.test.ts and fuzz.test.ts.
 */
import fc from 'fast-check';
import { Packr, Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { BulkRef, decodeBody, decodeFrame, encodeBody, encodeFrame, FrameType, IcsDecodeError } from '../../src/ics/wire/index.js';
import { UNPACKR_OPTIONS } from '../../src/ics/wire/decode.js';
import { FUZZ_RUNS, FUZZ_TIMEOUT, plain } from './helpers.js';

const reference = new Unpackr(UNPACKR_OPTIONS);

/** msgpackr's reading of `bytes`, with its BigInts (ext 0x42) turned back into BulkRefs. */
function msgpackrValue(bytes: Uint8Array): unknown {
  const back = (v: unknown): unknown => {
    if (typeof v === 'bigint') return new BulkRef(Number(BigInt.asUintN(32, v >> 64n)), Number(v & ((1n << 64n) - 1n)));
    if (Array.isArray(v)) return v.map(back);
    if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) {
      const o = v as Record<string, unknown>;
      for (const k of Object.keys(o)) o[k] = back(o[k]);
    }
    return v;
  };
  return back(reference.unpack(bytes.subarray(0)));
}

function sameAsMsgpackr(bytes: Uint8Array): boolean {
  let ours: unknown;
  try {
    ours = decodeBody(bytes);
  } catch (e) {
    if (e instanceof IcsDecodeError) return false;
    throw e;
  }
  expect(ours).toEqual(msgpackrValue(bytes));
  return true;
}

/** BulkRefs of a value in document order (what the decoder must list). */
function refsInOrder(v: unknown, out: BulkRef[] = []): BulkRef[] {
  if (v instanceof BulkRef) out.push(v);
  else if (Array.isArray(v)) for (const x of v) refsInOrder(x, out);
  else if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) for (const x of Object.values(v)) refsInOrder(x, out);
  return out;
}

describe('decoder against msgpackr', () => {
  it('bodies our encoder wrote decode as msgpackr reads them, alone or inside a larger buffer', () => {
    fc.assert(
      fc.property(plain, fc.nat(40), (v, offset) => {
        const bytes = Uint8Array.from(encodeBody(v));
        expect(sameAsMsgpackr(bytes)).toBe(true);
        // As a frame inside a socket read: a view at an offset of a shared buffer, other bytes around it.
        const shared = Buffer.alloc(offset + bytes.length + 5, 0xa5);
        shared.set(bytes, offset);
        expect(sameAsMsgpackr(shared.subarray(offset, offset + bytes.length))).toBe(true);
      }),
      { numRuns: FUZZ_RUNS / 5 },
    );
  });

  it("bodies msgpackr's own encoder wrote (every int and string width) decode as msgpackr reads them", () => {
    const packr = new Packr({ useRecords: false });
    const value = fc.letrec((tie) => ({
      v: fc.oneof(
        { depthSize: 'small' },
        fc.integer({ min: -(2 ** 31), max: 2 ** 32 }),
        fc.maxSafeInteger(),
        fc.double(),
        fc.string({ maxLength: 300 }),
        fc.string({ unit: 'grapheme', maxLength: 40 }),
        fc.boolean(),
        fc.constant(null),
        fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
        fc.array(tie('v'), { maxLength: 20 }),
        fc.dictionary(fc.string({ maxLength: 30 }).filter((k) => !['__proto__', 'constructor', 'prototype'].includes(k)), tie('v'), { maxKeys: 20 }),
      ),
    })).v;
    fc.assert(
      fc.property(value, (v) => {
        expect(sameAsMsgpackr(Uint8Array.from(packr.pack(v)))).toBe(true);
      }),
      { numRuns: FUZZ_RUNS / 5 },
    );
  });

  it('random msgpack-like bytes: whatever the decoder accepts, msgpackr reads the same', () => {
    const bytes = fc
      .array(fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x80, 0x81, 0x91, 0x92, 0xa1, 0xa3, 0xc0, 0xcb, 0xcf, 0xd3, 0xd9, 0xdc, 0xde, 0x61)), {
        maxLength: 48,
      })
      .map((a) => Uint8Array.from(a));
    fc.assert(
      fc.property(bytes, (b) => {
        sameAsMsgpackr(b);
      }),
      { numRuns: FUZZ_RUNS },
    );
  }, FUZZ_TIMEOUT);

  it('map keys repeated across bodies come back right (the key cache checks every byte)', () => {
    // Keys of one length whose cache slots may collide, decoded in turn.
    const keys = Array.from({ length: 5000 }, (_, i) => `k${i.toString(36).padStart(5, '0')}`);
    for (let round = 0; round < 2; round++) {
      for (const k of keys) expect(Object.keys(decodeBody(Uint8Array.from(encodeBody({ [k]: 1 }))) as object)).toEqual([k]);
    }
    expect(decodeBody(Uint8Array.from(encodeBody({ héllo: 1, hello: 2 })))).toEqual({ héllo: 1, hello: 2 });
  });

  it('short string values repeated across bodies come back right (the value cache checks every byte)', () => {
    // Values of one length whose cache slots collide, in turn and mixed with non-ASCII ones of the same byte length.
    const values = Array.from({ length: 5000 }, (_, i) => `v${i.toString(36).padStart(5, '0')}`);
    for (let round = 0; round < 2; round++) {
      for (const v of values) expect(decodeBody(Uint8Array.from(encodeBody({ a: v, b: [v, 'é'.padEnd(5, 'x')] })))).toEqual({ a: v, b: [v, 'éxxxx'] });
    }
    expect(decodeBody(Uint8Array.from(encodeBody(['', 'x', '', 'y'])))).toEqual(['', 'x', '', 'y']);
  });

  it('lists the BulkRefs of a frame in document order, and none of a refused one', () => {
    fc.assert(
      fc.property(plain, (body) => {
        const bytes = encodeFrame({ type: FrameType.OneWay, channel: 1, service: 0x1_0001, id: 7, method: 'm', priority: false, body });
        expect(decodeFrame(Uint8Array.from(bytes)).bulkRefs).toEqual(refsInOrder(body));
        // A refused frame throws: it hands out no list at all.
        const cut = Uint8Array.from(bytes).subarray(0, bytes.length - 1);
        let refs: readonly BulkRef[] | undefined;
        try {
          refs = decodeFrame(cut).bulkRefs;
        } catch (e) {
          if (!(e instanceof IcsDecodeError)) throw e;
        }
        if (refs !== undefined) expect(refs.length).toBeLessThanOrEqual(refsInOrder(body).length);
      }),
      { numRuns: FUZZ_RUNS / 5 },
    );
  });
});
