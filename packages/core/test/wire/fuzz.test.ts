/**
 * Random and mutated bytes: decodeFrame either throws IcsDecodeError or
 * returns a frame that is valid (it encodes again and decodes to the same
 * thing). Any other exception (RangeError, TypeError, msgpackr's own
 * errors, a stack overflow) fails. FUZZ_RUNS raises the run count.
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { decodeBody, decodeFrame, encodeBody, encodeFrame, IcsDecodeError } from '../../src/ics/wire/index.js';
import { anyFrame, FUZZ_RUNS, FUZZ_TIMEOUT, plain, sameData, sameFrame } from './helpers.js';

function typedErrorOrValidFrame(bytes: Uint8Array): void {
  let frame;
  try {
    frame = decodeFrame(bytes).frame;
  } catch (e) {
    if (e instanceof IcsDecodeError) return;
    throw e;
  }
  sameFrame(decodeFrame(Uint8Array.from(encodeFrame(frame))).frame, frame);
}

function typedErrorOrValidBody(bytes: Uint8Array): void {
  let body;
  try {
    body = decodeBody(bytes);
  } catch (e) {
    if (e instanceof IcsDecodeError) return;
    throw e;
  }
  sameData(decodeBody(Uint8Array.from(encodeBody(body))), body);
}

/** Bytes that look like msgpack often enough to get past the first byte. */
const msgpackish = fc.array(
  fc.oneof(
    fc.integer({ min: 0, max: 255 }),
    fc.constantFrom(0x80, 0x81, 0x90, 0x91, 0xa1, 0xc0, 0xc4, 0xc7, 0xcf, 0xd3, 0xd4, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0x42, 0x00, 0xff),
  ),
  { maxLength: 64 },
).map((a) => Uint8Array.from(a));

interface Mutation {
  kind: 'set' | 'insert' | 'delete' | 'truncate' | 'flip';
  at: number;
  byte: number;
}
const mutation = fc.record({
  kind: fc.constantFrom<Mutation['kind']>('set', 'insert', 'delete', 'truncate', 'flip'),
  at: fc.nat(),
  byte: fc.integer({ min: 0, max: 255 }),
});

function mutate(input: Uint8Array, mutations: Mutation[]): Uint8Array {
  let b = Array.from(input);
  for (const m of mutations) {
    const at = b.length === 0 ? 0 : m.at % b.length;
    switch (m.kind) {
      case 'set':
        b[at] = m.byte;
        break;
      case 'flip':
        b[at] = (b[at] ?? 0) ^ (1 << (m.byte & 7));
        break;
      case 'insert':
        b.splice(at, 0, m.byte);
        break;
      case 'delete':
        b.splice(at, 1);
        break;
      case 'truncate':
        b = b.slice(0, at);
        break;
    }
  }
  return Uint8Array.from(b);
}

describe('hostile bytes never raise anything but IcsDecodeError', () => {
  it(`random bytes (${FUZZ_RUNS} runs)`, () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 96 }), typedErrorOrValidFrame), { numRuns: FUZZ_RUNS });
  }, FUZZ_TIMEOUT);

  it(`random bytes behind a valid frame type (${FUZZ_RUNS} runs)`, () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 7 }), fc.integer({ min: 0, max: 1 }), msgpackish, (type, flags, rest) => {
        typedErrorOrValidFrame(Uint8Array.from([type, flags, ...rest]));
      }),
      { numRuns: FUZZ_RUNS },
    );
  }, FUZZ_TIMEOUT);

  it(`msgpack-like bodies (${FUZZ_RUNS} runs)`, () => {
    fc.assert(fc.property(msgpackish, typedErrorOrValidBody), { numRuns: FUZZ_RUNS });
  }, FUZZ_TIMEOUT);

  it(`mutated valid frames (${FUZZ_RUNS} runs)`, () => {
    fc.assert(
      fc.property(anyFrame, fc.array(mutation, { minLength: 1, maxLength: 4 }), (frame, mutations) => {
        typedErrorOrValidFrame(mutate(encodeFrame(frame), mutations));
      }),
      { numRuns: FUZZ_RUNS },
    );
  }, FUZZ_TIMEOUT);

  it(`mutated valid bodies (${FUZZ_RUNS} runs)`, () => {
    fc.assert(
      fc.property(plain, fc.array(mutation, { minLength: 1, maxLength: 4 }), (value, mutations) => {
        typedErrorOrValidBody(mutate(encodeBody(value), mutations));
      }),
      { numRuns: FUZZ_RUNS },
    );
  }, FUZZ_TIMEOUT);
});
