/**
 * Arbitraries and checks shared by the wire tests.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { MalformedMessageError } from '../../src/errors/index.js';
import {
  BulkRef,
  FrameType,
  RefusedReason,
  IcsDecodeError,
  type IcsDecodeReason,
  type IcsFrame,
  WireStatus,
  type WireStatusCode,
} from '../../src/ics/wire/index.js';

/** Runs for the fuzz properties; FUZZ_RUNS raises it (`npm run fuzz`-style). */
export const FUZZ_RUNS = Math.max(10_000, Number(process.env.FUZZ_RUNS ?? 0) || 0);
/** Per-test timeout (ms) for tests that run FUZZ_RUNS times: about 0.1 ms a run, never under 30 s. */
export const FUZZ_TIMEOUT = Math.max(30_000, FUZZ_RUNS / 10);

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

export const key = fc
  .oneof(fc.string({ maxLength: 12 }), fc.string({ unit: 'grapheme', maxLength: 8 }))
  .filter((k) => !FORBIDDEN_KEYS.has(k));

export const number = fc.oneof(
  fc.integer(),
  fc.integer({ min: -200, max: 200 }),
  fc.maxSafeInteger(),
  fc.double(), // includes -0, NaN, ±Infinity
  fc.constantFrom(
    0,
    -0,
    NaN,
    Infinity,
    -Infinity,
    127,
    128,
    -32,
    -33,
    255,
    256,
    65535,
    65536,
    2 ** 31 - 1,
    -(2 ** 31),
    -(2 ** 31) - 1,
    2 ** 32 - 1,
    2 ** 32,
    2 ** 53 - 1,
    -(2 ** 53 - 1),
    2 ** 53,
    -(2 ** 53),
    2 ** 64,
    Number.MIN_VALUE,
    Number.MAX_VALUE,
  ),
);

export const string = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: 'grapheme-ascii', minLength: 200, maxLength: 400 }),
);

export const bulkRef = fc
  .record({ stream: fc.nat({ max: 0xffff_ffff }), length: fc.oneof(fc.nat(), fc.maxSafeNat()) })
  .map(({ stream, length }) => new BulkRef(stream, length));

export const bytes = fc.oneof(
  { arbitrary: fc.uint8Array({ maxLength: 40 }), weight: 30 },
  { arbitrary: fc.uint8Array({ minLength: 250, maxLength: 70_000 }), weight: 1 },
);

/** Plain data as the codec defines it, nested at most a few levels. */
export const plain: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 5 },
    fc.constant(null),
    fc.boolean(),
    number,
    string,
    bytes,
    bulkRef,
    fc.array(tie('value'), { maxLength: 6 }),
    fc.dictionary(key, tie('value'), { maxKeys: 6, noNullPrototype: true }),
  ),
})).value;

const channel = fc.nat({ max: 0xffff });
const method = fc
  .oneof(fc.string({ minLength: 1, maxLength: 30 }), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }))
  .filter((m) => Buffer.byteLength(m) <= 255 && (m as unknown as { isWellFormed(): boolean }).isWellFormed());
const addressed = channel.chain((ch) =>
  fc.record({
    channel: fc.constant(ch),
    service: fc.nat({ max: 0xffff }).map((sub) => (ch * 0x10000 + sub) as number),
    method,
    priority: fc.boolean(),
    body: plain,
  }),
);
const id = fc.integer({ min: 1, max: 0xffff_ffff });
const u32 = fc.nat({ max: 0xffff_ffff });
const statusCodes = Object.values(WireStatus) as WireStatusCode[];

/** Request headers within HEADER_LIMITS (keys of a-z 0-9 - _ ., values of printable ASCII). */
export const headers = fc.dictionary(
  fc.stringMatching(/^[a-z0-9._-]{1,64}$/).filter((k) => !FORBIDDEN_KEYS.has(k)),
  fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 200 }),
  { minKeys: 1, maxKeys: 16 },
);

export const requestFrame = fc
  .record({ a: addressed, id, timeoutMs: u32, headers: fc.option(headers, { nil: undefined }) })
  .map(({ a, id, timeoutMs, headers }): IcsFrame => ({ type: FrameType.Request, ...a, id, timeoutMs, ...(headers ? { headers } : {}) }));
export const oneWayFrame = fc.record({ a: addressed, id }).map(({ a, id }): IcsFrame => ({ type: FrameType.OneWay, ...a, id }));
export const responseFrame = fc.oneof(
  fc.record({ id, body: plain }).map(({ id, body }): IcsFrame => ({ type: FrameType.Response, id, status: WireStatus.OK, body })),
  fc
    .record({
      id,
      status: fc.constantFrom(...statusCodes.filter((s) => s !== WireStatus.OK)),
      message: string,
      details: fc.option(plain, { nil: undefined }),
    })
    .map(
      ({ id, status, message, details }): IcsFrame => ({
        type: FrameType.Response,
        id,
        status,
        body: details === undefined ? { message } : { message, details },
      }),
    ),
);
export const cancelFrame = fc
  .record({ id, status: fc.constantFrom(WireStatus.CANCELLED, WireStatus.DEADLINE_EXCEEDED) })
  .map(({ id, status }): IcsFrame => ({ type: FrameType.Cancel, id, status }));
export const creditFrame = fc
  .record({ channel, messages: u32, bytes: u32 })
  .map((f): IcsFrame => ({ type: FrameType.Credit, ...f }));
export const bulkChunkFrame = fc
  .record({ stream: u32, offset: fc.oneof(fc.nat(), fc.maxSafeNat()), last: fc.boolean(), data: bytes })
  .map((f): IcsFrame => ({ type: FrameType.BulkChunk, ...f }));
export const bulkAbortFrame = fc.record({ stream: u32 }).map((f): IcsFrame => ({ type: FrameType.BulkAbort, ...f }));
export const refusedFrame = fc.constantFrom(RefusedReason.IncarnationDown, RefusedReason.NewerIncarnation).map((reason): IcsFrame => ({ type: FrameType.Refused, reason }));

export const anyFrame = fc.oneof(
  requestFrame,
  oneWayFrame,
  responseFrame,
  cancelFrame,
  creditFrame,
  bulkChunkFrame,
  bulkAbortFrame,
  refusedFrame,
);

/**
 * Deep equality that sees what the codec must preserve: -0 vs 0, NaN,
 * bytes of Uint8Arrays (whatever their subclass), BulkRef as a class,
 * key sets of objects, and that decoded objects are plain.
 */
export function sameData(actual: unknown, expected: unknown, path = '$'): void {
  if (expected instanceof BulkRef) {
    expect(actual, path).toBeInstanceOf(BulkRef);
    expect((actual as BulkRef).stream, `${path}.stream`).toBe(expected.stream);
    expect((actual as BulkRef).length, `${path}.length`).toBe(expected.length);
    return;
  }
  if (expected instanceof Uint8Array) {
    expect(actual, path).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(actual as Uint8Array).equals(Buffer.from(expected)), path).toBe(true);
    return;
  }
  if (Array.isArray(expected)) {
    expect(Array.isArray(actual), path).toBe(true);
    const a = actual as unknown[];
    expect(a.length, `${path}.length`).toBe(expected.length);
    expected.forEach((v, i) => sameData(a[i], v, `${path}[${i}]`));
    return;
  }
  if (typeof expected === 'object' && expected !== null) {
    expect(typeof actual === 'object' && actual !== null, path).toBe(true);
    expect(Object.getPrototypeOf(actual), `${path} prototype`).toBe(Object.prototype);
    const e = expected as Record<string, unknown>;
    const a = actual as Record<string, unknown>;
    const keys = Object.keys(e).filter((k) => e[k] !== undefined);
    expect(Object.keys(a).sort(), `${path} keys`).toEqual(keys.sort());
    for (const k of keys) sameData(a[k], e[k], `${path}.${k}`);
    return;
  }
  expect(Object.is(actual, expected), `${path}: ${String(actual)} vs ${String(expected)}`).toBe(true);
}

export function sameFrame(actual: IcsFrame, expected: IcsFrame): void {
  const { body: eb, data: ed, ...eRest } = expected as IcsFrame & { body?: unknown; data?: Uint8Array };
  const { body: ab, data: ad, ...aRest } = actual as IcsFrame & { body?: unknown; data?: Uint8Array };
  expect(aRest).toEqual(eRest);
  if ('body' in expected) sameData(ab, eb, 'body');
  if ('data' in expected) sameData(ad, ed, 'data');
}

/** Calls fn and returns the IcsDecodeError it must throw. */
export function decodeErrorOf(fn: () => unknown): IcsDecodeError {
  try {
    fn();
  } catch (e) {
    if (e instanceof IcsDecodeError) return e;
    throw new Error(`expected IcsDecodeError, got ${String(e)}`, { cause: e });
  }
  throw new Error('expected IcsDecodeError, but decoding succeeded');
}

export function expectDecodeError(fn: () => unknown, reason?: IcsDecodeReason): IcsDecodeError {
  const err = decodeErrorOf(fn);
  expect(err.code).toBe('ICS_ERR_MALFORMED_MESSAGE');
  expect(err).toBeInstanceOf(MalformedMessageError);
  if (reason !== undefined) expect(err.reason, err.message).toBe(reason);
  return err;
}

/** Bytes from hex, spaces ignored. */
export function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
}

export function concat(...parts: (Uint8Array | number[])[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts.map((p) => Buffer.from(p instanceof Uint8Array ? p : Uint8Array.from(p)))));
}
