/**
 * The validating msgpack decoder of ICS bodies: one pass that checks each
 * header against the limits and the bytes that remain *before* it builds
 * anything for it, and builds the value as it goes (it used to be a
 * structural pre-scan followed by msgpackr, which read every byte twice).
 *
 * What it guarantees, for any input:
 * - it returns exactly one value that used every byte, or throws
 *   IcsDecodeError (never RangeError, TypeError or a stack overflow);
 * - nothing it allocates is larger than the bytes it has checked: a
 *   container is allocated only after its declared size was found to fit
 *   in the bytes that remain (every element takes at least one byte, a map
 *   entry at least two), and the elements of all containers together stay
 *   within `maxElements`;
 * - nesting deeper than `maxDepth` (at most MAX_DEPTH_LIMIT, so recursion is
 *   bounded), strings longer than `maxStringBytes` or not well-formed UTF-8,
 *   non-string map keys, the keys `__proto__`, `constructor` and
 *   `prototype`, integers beyond ±(2^53 − 1), more than `maxBulkRefs`
 *   BulkRefs, and extensions other than BulkRef are refused, unless listed
 *   in `allowedExtensions`: those (none by default) are handed, one value
 *   at a time, to msgpackr, which builds what it makes of them;
 * - the values are those msgpackr would build with the options this codec
 *   used before (plain objects, numbers, bin as views into the input),
 *   which the codec tests and a differential property test check.
 *
 * It keeps its cursor in module variables (one decode at a time: decoding
 * never calls out to user code).
 */
import { Unpackr } from 'msgpackr';
import { IcsDecodeError } from './errors.js';
import { BULK_EXT_TYPE, BulkRef, type DecodeLimits } from './types.js';
import { BULK_REF_PAYLOAD_BYTES } from './constants.js';
import { isForbiddenKey, isWellFormedUtf8 } from './utf8.js';

/**
 * @internal msgpackr, for the extension types a caller allowed (and only
 * those, one value at a time): told exactly what we want, as the codec
 * always told it. The differential test reads bodies with the same options.
 */
export const UNPACKR_OPTIONS = Object.freeze({
  useRecords: false,
  mapsAsObjects: true,
  structuredClone: false,
  moreTypes: false,
  int64AsType: 'number',
  copyBuffers: false,
  bundleStrings: false,
  sequential: false,
} as const);
const unpackr = new Unpackr(UNPACKR_OPTIONS);

let src: Uint8Array = new Uint8Array(0);
/**
 * The memory of `src` as a Buffer, for Node's native string decoding:
 * `srcBuf[srcBase + i]` is `src[i]`. The frames of one socket read (or one
 * opened record) share an ArrayBuffer, so the Buffer over it is kept for
 * the next body when it is small (a larger one is not kept alive).
 */
let srcBuf: Buffer = Buffer.alloc(0);
let srcBase = 0;
let bufOf: ArrayBufferLike | undefined;
const KEEP_BUFFER_MAX = 256 * 1024;
let pos = 0;
let end = 0;
let elements = 0;
let bulk = 0;
let lim: Readonly<DecodeLimits>;
let found: BulkRef[] | undefined;

/**
 * Decodes the msgpack value in b[p, e), which must be exactly one value;
 * its BulkRefs are appended to `bulkRefs` when given. Throws only
 * IcsDecodeError.
 */
export function decodeValue(b: Uint8Array, p: number, e: number, limits: Readonly<DecodeLimits>, bulkRefs?: BulkRef[]): unknown {
  src = b;
  if (b.buffer !== bufOf) {
    srcBuf = Buffer.from(b.buffer);
    bufOf = b.buffer;
  }
  srcBase = b.byteOffset;
  pos = p;
  end = e;
  elements = 0;
  bulk = 0;
  lim = limits;
  found = bulkRefs;
  const mark = bulkRefs?.length ?? 0;
  try {
    const v = read(0, false);
    if (pos !== end) throw new IcsDecodeError('trailing-bytes', pos, `${end - pos} bytes after the body's value`);
    return v;
  } catch (e) {
    // A refused body lists no references.
    if (bulkRefs) bulkRefs.length = mark;
    throw e;
  } finally {
    // Do not keep the caller's buffer alive.
    src = EMPTY;
    if (srcBuf.byteLength > KEEP_BUFFER_MAX) {
      srcBuf = EMPTY_BUF;
      bufOf = undefined;
    }
    found = undefined;
  }
}

const EMPTY = new Uint8Array(0);
const EMPTY_BUF = Buffer.alloc(0);

function truncatedHeader(at: number): never {
  throw new IcsDecodeError('truncated', at, 'body ends inside a header');
}

/** Bytes a fixed-size header needs after its type byte (0 for none). */
function need(at: number, n: number): void {
  if (n > end - pos) truncatedHeader(at);
}

function u16(): number {
  const v = (src[pos]! << 8) | src[pos + 1]!;
  pos += 2;
  return v;
}

function u32(): number {
  const v = u32At(pos);
  pos += 4;
  return v;
}

function u32At(p: number): number {
  return src[p]! * 0x100_0000 + ((src[p + 1]! << 16) | (src[p + 2]! << 8) | src[p + 3]!);
}

function i32At(p: number): number {
  return (src[p]! << 24) | (src[p + 1]! << 16) | (src[p + 2]! << 8) | src[p + 3]!;
}

// Floats through a scratch buffer (no DataView per decoded body).
const f64 = new Float64Array(1);
const f32 = new Float32Array(f64.buffer, 0, 1);
const scratch = new Uint8Array(f64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function float(n: 4 | 8): number {
  for (let i = 0; i < n; i++) scratch[LITTLE_ENDIAN ? n - 1 - i : i] = src[pos + i]!;
  pos += n;
  return n === 4 ? f32[0]! : f64[0]!;
}

/** The int64 at p when its high word leaves it within ±2^53 (Infinity otherwise: the caller refuses it). */
function int64At(p: number): number {
  const hi = i32At(p);
  return hi >= -0x20_0000 && hi <= 0x1f_ffff ? hi * 0x1_0000_0000 + u32At(p + 4) : Infinity;
}

/** One value at nesting `depth`; `isKey`: a map key, which must be a string. */
function read(depth: number, isKey: boolean): unknown {
  if (pos >= end) throw new IcsDecodeError('truncated', pos, 'body ends before its value is complete');
  const at = pos;
  const t = src[pos++]!;
  if (t >= 0xa0 && t < 0xc0) return str(at, t & 0x1f, isKey);
  if (isKey && (t < 0xd9 || t > 0xdb)) return nonStringKey(at, t);
  if (t < 0x80) return t;
  if (t >= 0xe0) return t - 0x100;
  if (t < 0x90) return map(at, t & 0x0f, depth);
  if (t < 0xa0) return array(at, t & 0x0f, depth);
  switch (t) {
    case 0xc0:
      return null;
    case 0xc2:
      return false;
    case 0xc3:
      return true;
    case 0xcc:
      need(at, 1);
      return src[pos++]!;
    case 0xcd:
      need(at, 2);
      return u16();
    case 0xce:
      need(at, 4);
      return u32();
    case 0xcf: {
      need(at, 8);
      const hi = u32();
      // uint 64: safe only when the high word is below 2^21.
      if (hi > 0x1f_ffff) throw new IcsDecodeError('integer', at, 'uint64 beyond 2^53 - 1');
      return hi * 0x1_0000_0000 + u32();
    }
    case 0xd0:
      need(at, 1);
      return (src[pos++]! << 24) >> 24;
    case 0xd1:
      need(at, 2);
      return (u16() << 16) >> 16;
    case 0xd2: {
      need(at, 4);
      const v = i32At(pos);
      pos += 4;
      return v;
    }
    case 0xd3: {
      need(at, 8);
      const v = int64At(pos);
      if (!Number.isSafeInteger(v)) throw new IcsDecodeError('integer', at, 'int64 beyond ±(2^53 - 1)');
      pos += 8;
      return v;
    }
    case 0xca:
      need(at, 4);
      return float(4);
    case 0xcb:
      need(at, 8);
      return float(8);
    case 0xd9:
      need(at, 1);
      return str(at, src[pos++]!, isKey);
    case 0xda:
      need(at, 2);
      return str(at, u16(), isKey);
    case 0xdb:
      need(at, 4);
      return str(at, u32(), isKey);
    case 0xc4:
      need(at, 1);
      return bin(at, src[pos++]!);
    case 0xc5:
      need(at, 2);
      return bin(at, u16());
    case 0xc6:
      need(at, 4);
      return bin(at, u32());
    case 0xdc:
      need(at, 2);
      return array(at, u16(), depth);
    case 0xdd:
      need(at, 4);
      return array(at, u32(), depth);
    case 0xde:
      need(at, 2);
      return map(at, u16(), depth);
    case 0xdf:
      need(at, 4);
      return map(at, u32(), depth);
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
      need(at, 1);
      return ext(at, 1 << (t - 0xd4));
    case 0xc7:
      need(at, 2);
      return ext(at, src[pos++]!);
    case 0xc8:
      need(at, 3);
      return ext(at, u16());
    case 0xc9:
      need(at, 5);
      return ext(at, u32());
    default: // 0xc1
      throw new IcsDecodeError('token', at, 'byte 0xc1 is not a msgpack type');
  }
}

/**
 * A map key that is not a string: refused, after its header was read as
 * any value's would be (so a truncated or impossible header reports that,
 * as before, not the key).
 */
function nonStringKey(at: number, t: number): never {
  if (t === 0xc1) throw new IcsDecodeError('token', at, 'byte 0xc1 is not a msgpack type');
  const fixed = HEADER_BYTES[t]!;
  if (fixed > end - pos) truncatedHeader(at);
  if (t === 0xcf && u32At(pos) > 0x1f_ffff) throw new IcsDecodeError('integer', at, 'uint64 beyond 2^53 - 1');
  if (t === 0xd3 && !Number.isSafeInteger(int64At(pos))) throw new IcsDecodeError('integer', at, 'int64 beyond ±(2^53 - 1)');
  throw new IcsDecodeError('key', at, 'map key is not a string');
}

/** Bytes after the type byte that a header needs before anything else is read (ext: length and type). */
const HEADER_BYTES = new Uint8Array(256);
for (const [t, n] of [
  [0xc4, 1], [0xd9, 1], [0xcc, 1], [0xd0, 1], [0xd4, 1], [0xd5, 1], [0xd6, 1], [0xd7, 1], [0xd8, 1],
  [0xc7, 2], [0xc5, 2], [0xda, 2], [0xdc, 2], [0xde, 2], [0xcd, 2], [0xd1, 2],
  [0xc8, 3],
  [0xc6, 4], [0xdb, 4], [0xdd, 4], [0xdf, 4], [0xce, 4], [0xd2, 4], [0xca, 4],
  [0xc9, 5],
  [0xcb, 8], [0xcf, 8], [0xd3, 8],
] as const) HEADER_BYTES[t] = n;

function str(at: number, n: number, isKey: boolean): string {
  if (n > end - pos) throw new IcsDecodeError('length', at, `string of ${n} bytes does not fit in the body`);
  if (n > lim.maxStringBytes) {
    throw new IcsDecodeError('string-length', at, `string of ${n} bytes exceeds maxStringBytes ${lim.maxStringBytes}`);
  }
  const p = pos;
  const short = n > 0 && n <= SHORT_ASCII;
  const table = isKey ? keyCache : valueCache;
  const slot = short ? slotOf(p, n) : 0;
  if (short) {
    const hit = cached(table, slot, p, n);
    if (hit !== undefined) {
      pos += n;
      return hit;
    }
  }
  let s = short ? shortAscii(p, n) : undefined;
  if (s === undefined) {
    if (!isWellFormedUtf8(src, p, n)) throw new IcsDecodeError('utf8', at, 'string is not well-formed UTF-8');
    s = srcBuf.toString('utf8', srcBase + p, srcBase + p + n);
  }
  if (isKey && isForbiddenKey(src, p, n)) throw new IcsDecodeError('key', at, 'map key __proto__, constructor or prototype is refused');
  if (short && s.length === n) table[slot] = s; // ASCII only: one byte per char
  pos += n;
  return s;
}

/** Short strings are built in JS when they are ASCII (cheaper than a call into C++). */
const SHORT_ASCII = 24;
/** One reused array of char codes per length, for String.fromCharCode.apply (no allocation per string). */
const CODES: number[][] = Array.from({ length: SHORT_ASCII + 1 }, (_, n) => new Array<number>(n).fill(0));

function shortAscii(p: number, n: number): string | undefined {
  const codes = CODES[n]!;
  for (let i = 0; i < n; i++) {
    const c = src[p + i]!;
    if (c >= 0x80) return undefined;
    codes[i] = c;
  }
  return String.fromCharCode.apply(null, codes);
}

// Map keys repeat from message to message, and so do short values (states,
// reasons, addresses, names: the 1,000-node simulator held a million copies
// of the same few). Two small caches of ASCII strings up to SHORT_ASCII
// bytes, each entry checked byte by byte against the input before it is
// used; keys and values have a table each, so a value never skips the key
// checks.
const SLOTS = 4096;
const keyCache: (string | undefined)[] = new Array<string | undefined>(SLOTS).fill(undefined);
const valueCache: (string | undefined)[] = new Array<string | undefined>(SLOTS).fill(undefined);

function slotOf(p: number, n: number): number {
  let h = n;
  for (let i = p, e = p + n; i < e; i++) h = (Math.imul(h, 31) + src[i]!) | 0;
  return (h ^ (h >>> 15)) & (SLOTS - 1);
}

/** The string in `table[slot]` when it is the `n` input bytes at `p`. */
function cached(table: (string | undefined)[], slot: number, p: number, n: number): string | undefined {
  const k = table[slot];
  if (k === undefined || k.length !== n) return undefined;
  for (let i = 0; i < n; i++) if (k.charCodeAt(i) !== src[p + i]) return undefined;
  return k;
}

function bin(at: number, n: number): Uint8Array {
  if (n > end - pos) throw new IcsDecodeError('length', at, `bin of ${n} bytes does not fit in the body`);
  const v = src.subarray(pos, pos + n);
  pos += n;
  return v;
}

/** Checks a container header of `slots` one-byte-minimum items before anything is allocated for it. */
function container(at: number, n: number, slots: number, depth: number): void {
  if (depth + 1 > lim.maxDepth) throw new IcsDecodeError('depth', at, `nesting deeper than maxDepth ${lim.maxDepth}`);
  if (slots > end - pos) throw new IcsDecodeError('length', at, `container declares ${n} elements that cannot fit in the body`);
  elements += n;
  if (elements > lim.maxElements) throw new IcsDecodeError('elements', at, `more than maxElements ${lim.maxElements} elements`);
}

function array(at: number, n: number, depth: number): unknown[] {
  container(at, n, n, depth);
  const a = new Array<unknown>(n);
  for (let i = 0; i < n; i++) a[i] = read(depth + 1, false);
  return a;
}

function map(at: number, n: number, depth: number): Record<string, unknown> {
  container(at, n, 2 * n, depth);
  const o: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    const k = read(depth + 1, true) as string;
    o[k] = read(depth + 1, false);
  }
  return o;
}

/** An extension of `n` payload bytes; pos is at its type byte (already known to be there). */
function ext(at: number, n: number): unknown {
  const type = (src[pos]! << 24) >> 24;
  pos++;
  if (n > end - pos) throw new IcsDecodeError('length', at, `extension of ${n} bytes does not fit in the body`);
  if (type === BULK_EXT_TYPE) {
    if (n !== BULK_REF_PAYLOAD_BYTES) throw new IcsDecodeError('extension', at, `BulkRef payload must be ${BULK_REF_PAYLOAD_BYTES} bytes`);
    const stream = u32At(pos);
    const hi = u32At(pos + 4);
    if (hi > 0x1f_ffff) throw new IcsDecodeError('extension', at, 'BulkRef length beyond 2^53 - 1');
    if (++bulk > lim.maxBulkRefs) throw new IcsDecodeError('bulk-refs', at, `more than maxBulkRefs ${lim.maxBulkRefs} out-of-line references`);
    const ref = new BulkRef(stream, hi * 0x1_0000_0000 + u32At(pos + 8));
    pos += n;
    found?.push(ref);
    return ref;
  }
  if (!lim.allowedExtensions.includes(type)) throw new IcsDecodeError('extension', at, `extension type ${type} is not allowed`);
  pos += n;
  try {
    // A fresh view: msgpackr caches a DataView as a property of its input.
    return unpackr.unpack(src.subarray(at, pos));
  } catch (e) {
    // An allowed extension whose msgpackr handler refused its payload.
    throw new IcsDecodeError('unreadable', at, `msgpackr could not build extension ${type}`, { cause: e });
  }
}
