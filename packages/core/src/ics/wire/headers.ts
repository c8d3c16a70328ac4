/**
 * Request headers: the optional block a Request carries after its method
 * name when flag bit 1 is set (trace context, see docs/protocol.md).
 *
 *   u16 block length B (1..HEADER_LIMITS.maxBlockBytes)
 *   B bytes: u8 count N (1..maxEntries), then N times
 *            u8 key length, key, u16 value length, value
 *
 * The block must be consumed exactly. Keys and values are ASCII only, so
 * every check is a byte-range test: nothing is decoded that was not
 * bounded first, and the decoded map has no prototype.
 */
import { writeU16, writeU8, writeUtf8 } from './codec.js';
import { HEADER_LIMITS } from './constants.js';
import { IcsDecodeError, IcsEncodeError } from './errors.js';

/** Keys a decoded map could be hurt by (same rule as body keys). */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function isKeyByte(c: number): boolean {
  // a-z 0-9 - . _
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f;
}

function isValueByte(c: number): boolean {
  return c >= 0x20 && c <= 0x7e;
}

/** A checked header map ready to write: its entries and the block length B. */
export interface CheckedHeaders {
  readonly entries: readonly (readonly [string, string])[];
  readonly blockBytes: number;
}

/**
 * Checks `headers` before anything is written; undefined when there is
 * nothing to send (absent or empty: the frame carries no block at all).
 */
export function checkHeaders(headers: unknown): CheckedHeaders | undefined {
  if (headers === undefined) return undefined;
  const fail = (message: string): never => {
    throw new IcsEncodeError('headers', message);
  };
  if (typeof headers !== 'object' || headers === null) return fail('must be an object of strings');
  const entries = Object.entries(headers);
  if (entries.length === 0) return undefined;
  if (entries.length > HEADER_LIMITS.maxEntries) fail(`more than ${HEADER_LIMITS.maxEntries} entries`);
  let blockBytes = 1;
  for (const [key, value] of entries) {
    if (key.length === 0 || key.length > HEADER_LIMITS.maxKeyBytes || FORBIDDEN_KEYS.has(key)) fail(`key ${JSON.stringify(key)} is empty, too long or reserved`);
    for (let i = 0; i < key.length; i++) if (!isKeyByte(key.charCodeAt(i))) fail(`key ${JSON.stringify(key)} holds a character outside a-z 0-9 - _ .`);
    if (typeof value !== 'string') fail(`value of ${key} is not a string`);
    if (value.length > HEADER_LIMITS.maxValueBytes) fail(`value of ${key} is longer than ${HEADER_LIMITS.maxValueBytes} bytes`);
    for (let i = 0; i < value.length; i++) if (!isValueByte(value.charCodeAt(i))) fail(`value of ${key} holds a character outside printable ASCII`);
    blockBytes += 3 + key.length + value.length;
  }
  if (blockBytes > HEADER_LIMITS.maxBlockBytes) fail(`the header block takes ${blockBytes} bytes, more than ${HEADER_LIMITS.maxBlockBytes}`);
  return { entries, blockBytes };
}

/** Writes a block `checkHeaders` accepted (inside an encodeFrame write). */
export function writeHeaders(h: CheckedHeaders): void {
  writeU16(h.blockBytes);
  writeU8(h.entries.length);
  for (const [key, value] of h.entries) {
    writeU8(key.length);
    writeUtf8(key, key.length);
    writeU16(value.length);
    writeUtf8(value, value.length);
  }
}

function ascii(b: Uint8Array, s: number, n: number): string {
  return String.fromCharCode.apply(null, b.subarray(s, s + n) as unknown as number[]);
}

/** Reads the header block at `p` of untrusted bytes; throws only IcsDecodeError. */
export function readHeaders(b: Uint8Array, p: number): { headers: Record<string, string>; end: number } {
  if (b.length - p < 2) throw new IcsDecodeError('truncated', p, 'frame ends before the header block length');
  const blockBytes = (b[p]! << 8) | b[p + 1]!;
  if (blockBytes === 0 || blockBytes > HEADER_LIMITS.maxBlockBytes) {
    throw new IcsDecodeError('length', p, `header block of ${blockBytes} bytes (1..${HEADER_LIMITS.maxBlockBytes})`);
  }
  const start = p + 2;
  const end = start + blockBytes;
  if (end > b.length) throw new IcsDecodeError('truncated', p, 'frame ends inside the header block');
  const count = b[start]!;
  if (count === 0 || count > HEADER_LIMITS.maxEntries) throw new IcsDecodeError('field', start, `${count} headers (1..${HEADER_LIMITS.maxEntries})`);
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  let q = start + 1;
  for (let i = 0; i < count; i++) {
    if (q >= end) throw new IcsDecodeError('truncated', q, 'header block ends before its entries');
    const kn = b[q]!;
    if (kn === 0 || kn > HEADER_LIMITS.maxKeyBytes || kn > end - q - 1) throw new IcsDecodeError('length', q, `header key of ${kn} bytes`);
    for (let j = q + 1; j <= q + kn; j++) if (!isKeyByte(b[j]!)) throw new IcsDecodeError('key', j, 'header key holds a byte outside a-z 0-9 - _ .');
    const key = ascii(b, q + 1, kn);
    if (FORBIDDEN_KEYS.has(key) || key in headers) throw new IcsDecodeError('key', q, `header key ${key} is reserved or repeated`);
    q += 1 + kn;
    if (end - q < 2) throw new IcsDecodeError('truncated', q, 'header block ends before a value length');
    const vn = (b[q]! << 8) | b[q + 1]!;
    q += 2;
    if (vn > HEADER_LIMITS.maxValueBytes || vn > end - q) throw new IcsDecodeError('length', q - 2, `header value of ${vn} bytes`);
    for (let j = q; j < q + vn; j++) if (!isValueByte(b[j]!)) throw new IcsDecodeError('field', j, 'header value holds a byte outside printable ASCII');
    headers[key] = ascii(b, q, vn);
    q += vn;
  }
  if (q !== end) throw new IcsDecodeError('trailing-bytes', q, `${end - q} bytes after the last header`);
  return { headers, end };
}
