/**
 * The msgpack body codec of ICS frames.
 *
 * Encoding accepts plain data only: null, booleans, numbers, strings,
 * arrays, plain objects (prototype Object.prototype or null), Uint8Array
 * (Buffer included) as bin, and BulkRef as extension BULK_EXT_TYPE.
 * Anything else throws IcsEncodeError naming the path of the bad value.
 * Object properties whose value is `undefined` are left out (as JSON does);
 * `undefined` anywhere else is an error.
 *
 * Decoding treats the bytes as hostile. A structural pre-scan walks the
 * whole value first, iteratively and without allocating anything that
 * depends on the input, and refuses (IcsDecodeError) anything outside the
 * limits or outside the plain-data subset. Only bytes that passed are
 * handed to msgpackr to build the value, so msgpackr never sees a header
 * that lies about its length, a nesting deeper than the limit, a non-string
 * or prototype-polluting key, or an extension it would turn into a Date,
 * Error, RegExp, Set, typed array, BigInt or record.
 *
 * Why the encoder is not msgpackr's Packr: Packr can only learn a custom
 * extension through msgpackr's process-wide `addExtension`, which would
 * also replace msgpackr's own decoder for type 0x42 (its BigInt extension,
 * which BULK_EXT_TYPE collides with) for every msgpackr user in the
 * process; and Packr silently encodes Dates, Sets, Errors, class instances,
 * functions and BigInts, so a full validating walk would be needed anyway.
 * The writer below validates and encodes in one pass.
 */
import { isUtf8 } from 'node:buffer';
import { Unpackr } from 'msgpackr';
import { InvalidOptionError } from '../../errors/index.js';
import { BULK_REF_PAYLOAD_BYTES, DEFAULT_DECODE_LIMITS, FORBIDDEN_EXTENSIONS, MAX_DEPTH_LIMIT } from './constants.js';
import { IcsDecodeError, IcsEncodeError } from './errors.js';
import { BULK_EXT_TYPE, BulkRef, type DecodeLimits } from './types.js';

export interface EncodeOptions {
  /**
   * Deepest nesting of arrays/objects the encoder accepts; also what stops
   * a cyclic value. Keep it no larger than the receiver's `maxDepth`.
   * @default DEFAULT_DECODE_LIMITS.maxDepth (32)
   */
  maxDepth?: number;
  /**
   * Take large binary values out of line: every Uint8Array of at least
   * `threshold` bytes in the body is handed to `take`, and the BulkRef it
   * returns is written in its place. ICS then sends the bytes as chunks.
   */
  outOfLine?: { threshold: number; take: (bytes: Uint8Array) => BulkRef };
}

/** The out-of-line hook of the body being written (set by writeBody). */
let outOfLine: EncodeOptions['outOfLine'];

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const TWO_32 = 0x1_0000_0000;

// ---------------------------------------------------------------------------
// Limits

const resolvedLimits = new WeakSet<object>();
resolvedLimits.add(DEFAULT_DECODE_LIMITS);

function checkCount(path: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new InvalidOptionError(path, `invalid option ${path}: expected an integer in ${min}..${max}`);
  }
  return v;
}

/**
 * Merges `limits` over DEFAULT_DECODE_LIMITS and validates the result.
 * The returned object is frozen and recognised by later calls, so a caller
 * on a hot path resolves once and passes the result every time.
 */
export function resolveDecodeLimits(limits?: Partial<DecodeLimits>): Readonly<DecodeLimits> {
  if (limits === undefined) return DEFAULT_DECODE_LIMITS;
  if (resolvedLimits.has(limits)) return limits as DecodeLimits;
  const d = DEFAULT_DECODE_LIMITS;
  const allowed = limits.allowedExtensions ?? d.allowedExtensions;
  if (!Array.isArray(allowed)) {
    throw new InvalidOptionError('limits.allowedExtensions', 'invalid option limits.allowedExtensions: expected an array');
  }
  for (const t of allowed as unknown[]) {
    if (typeof t !== 'number' || !Number.isInteger(t) || t < -128 || t > 127) {
      throw new InvalidOptionError(
        'limits.allowedExtensions',
        'invalid option limits.allowedExtensions: extension types are integers in -128..127',
      );
    }
    if (FORBIDDEN_EXTENSIONS.includes(t)) {
      throw new InvalidOptionError(
        'limits.allowedExtensions',
        `invalid option limits.allowedExtensions: extension ${t} changes how msgpackr reads the bytes that follow it and cannot be allowed`,
      );
    }
  }
  const out: DecodeLimits = Object.freeze({
    maxDepth: checkCount('limits.maxDepth', limits.maxDepth ?? d.maxDepth, 0, MAX_DEPTH_LIMIT),
    maxElements: checkCount('limits.maxElements', limits.maxElements ?? d.maxElements, 0),
    maxStringBytes: checkCount('limits.maxStringBytes', limits.maxStringBytes ?? d.maxStringBytes, 0),
    maxBulkRefs: checkCount('limits.maxBulkRefs', limits.maxBulkRefs ?? d.maxBulkRefs, 0),
    allowedExtensions: Object.freeze([...(allowed as number[])]),
  });
  resolvedLimits.add(out);
  return out;
}

// ---------------------------------------------------------------------------
// Encoding
//
// Frames are written into a shared slab and returned as subarrays of it,
// msgpackr- and Buffer-pool style: no allocation and no copy per frame. A
// region once returned is never written again; a new slab is taken when
// the current one runs low. The price: a small returned frame keeps its
// (64 KiB) slab alive until it is collected. Slabs are zero-filled, so the
// memory around a frame holds only earlier frames, never stale heap.

const SLAB_BYTES = 64 * 1024;
/** Start a new slab rather than begin a frame with less room than this. */
const SLAB_MIN_FREE = 4 * 1024;

let buf: Uint8Array = new Uint8Array(SLAB_BYTES);
let view: DataView = new DataView(buf.buffer);
let nodeBuf: Buffer = Buffer.from(buf.buffer, 0, buf.length);
let pos = 0;
/** Where the frame being written starts in `buf`. */
let start = 0;
let encoding = false;

function useBuffer(next: Uint8Array): void {
  buf = next;
  view = new DataView(next.buffer, next.byteOffset, next.byteLength);
  nodeBuf = Buffer.from(next.buffer, next.byteOffset, next.byteLength);
}

/** The slab set aside while one oversize frame is written, and where its free room starts. */
let spare: Uint8Array | undefined;
let spareAt = 0;

function grow(need: number): void {
  const used = pos - start;
  // Oversize buffers hold one frame each and are never handed out beyond
  // it, so they need not be zero-filled (every byte of the frame is written).
  const next = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, 2 * (used + need)));
  next.set(buf.subarray(start, pos), 0);
  if (buf.length === SLAB_BYTES && spare === undefined) {
    // The frame moved out of the slab: its room there is free again.
    spare = buf;
    spareAt = start;
  }
  useBuffer(next);
  start = 0;
  pos = used;
}

function ensure(n: number): void {
  if (pos + n > buf.length) grow(n);
}

/** @internal Starts a frame in the slab. Not re-entrant (nothing it calls is user code that could re-enter, except getters). */
export function beginWrite(): void {
  if (encoding) throw new IcsEncodeError('body', 'encode re-entered from a getter of the value being encoded');
  encoding = true;
  if (buf.length - pos < SLAB_MIN_FREE) {
    useBuffer(new Uint8Array(SLAB_BYTES));
    pos = 0;
  }
  start = pos;
}

/** @internal Ends the frame and returns its bytes. */
export function endWrite(): Uint8Array {
  const out = buf.subarray(start, pos);
  if (buf.length > SLAB_BYTES) {
    // An oversize buffer served one big frame; go back to the slab.
    if (spare !== undefined) {
      useBuffer(spare);
      pos = spareAt;
      spare = undefined;
    } else {
      useBuffer(new Uint8Array(SLAB_BYTES));
      pos = 0;
    }
  } else {
    pos = (pos + 7) & ~7; // keep frames 8-aligned, as msgpackr does
  }
  start = pos;
  encoding = false;
  return out;
}

/** @internal Drops a frame that failed half-way. */
export function abortWrite(): void {
  pos = start;
  encoding = false;
}

/** @internal */
export function writeU8(v: number): void {
  ensure(1);
  buf[pos++] = v;
}

/** @internal */
export function writeU16(v: number): void {
  ensure(2);
  buf[pos++] = v >>> 8;
  buf[pos++] = v & 0xff;
}

/** @internal */
export function writeU32(v: number): void {
  ensure(4);
  view.setUint32(pos, v);
  pos += 4;
}

/** @internal A non-negative safe integer as u64. */
export function writeU64(v: number): void {
  ensure(8);
  const hi = Math.floor(v / TWO_32);
  view.setUint32(pos, hi);
  view.setUint32(pos + 4, v - hi * TWO_32);
  pos += 8;
}

/** @internal Copies raw bytes. */
export function writeBytes(bytes: Uint8Array): void {
  ensure(bytes.length);
  buf.set(bytes, pos);
  pos += bytes.length;
}

/**
 * UTF-8 byte length of `s`, or -1 when it holds a lone surrogate (which
 * has no UTF-8 form; encoders would silently write U+FFFD instead).
 */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c < 0xd800 || c > 0xdfff) n += 3;
    else if (c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return -1;
      n += 4;
      i++;
    } else return -1;
  }
  return n;
}

/** Short strings: a JS loop beats a native call. */
const SHORT_STRING = 48;

/** @internal Writes the UTF-8 bytes of `s`, whose UTF-8 length is `n` (already checked well-formed). */
export function writeUtf8(s: string, n: number): void {
  ensure(n);
  if (s.length >= SHORT_STRING) {
    pos += nodeBuf.write(s, pos, n, 'utf8');
    return;
  }
  const b = buf;
  let p = pos;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) b[p++] = c;
    else if (c < 0x800) {
      b[p++] = 0xc0 | (c >> 6);
      b[p++] = 0x80 | (c & 0x3f);
    } else if (c < 0xd800 || c > 0xdfff) {
      b[p++] = 0xe0 | (c >> 12);
      b[p++] = 0x80 | ((c >> 6) & 0x3f);
      b[p++] = 0x80 | (c & 0x3f);
    } else {
      c = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(++i) - 0xdc00);
      b[p++] = 0xf0 | (c >> 18);
      b[p++] = 0x80 | ((c >> 12) & 0x3f);
      b[p++] = 0x80 | ((c >> 6) & 0x3f);
      b[p++] = 0x80 | (c & 0x3f);
    }
  }
  pos = p;
}

/** Thrown inside the writer; collects the path on the way out. */
class EncodeFailure {
  readonly segments: string[] = [];
  constructor(readonly message: string) {}
}

function stringByteLength(s: string): number {
  if (s.length < SHORT_STRING) {
    const n = utf8Length(s);
    if (n < 0) throw new EncodeFailure('string holds a lone surrogate (not valid UTF-8)');
    return n;
  }
  if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) {
    throw new EncodeFailure('string holds a lone surrogate (not valid UTF-8)');
  }
  return Buffer.byteLength(s, 'utf8');
}

function writeString(s: string): void {
  const n = stringByteLength(s);
  if (n < 32) writeU8(0xa0 | n);
  else if (n < 0x100) {
    writeU8(0xd9);
    writeU8(n);
  } else if (n < 0x10000) {
    writeU8(0xda);
    writeU16(n);
  } else if (n < TWO_32) {
    writeU8(0xdb);
    writeU32(n);
  } else throw new EncodeFailure('string longer than 4 GiB');
  writeUtf8(s, n);
}

function writeNumber(v: number): void {
  ensure(9);
  const b = buf;
  if (Number.isInteger(v) && (v !== 0 || 1 / v > 0)) {
    if (v >= 0) {
      if (v < 0x80) {
        b[pos++] = v;
        return;
      }
      if (v < 0x100) {
        b[pos++] = 0xcc;
        b[pos++] = v;
        return;
      }
      if (v < 0x10000) {
        b[pos++] = 0xcd;
        b[pos++] = v >>> 8;
        b[pos++] = v & 0xff;
        return;
      }
      if (v < TWO_32) {
        b[pos++] = 0xce;
        view.setUint32(pos, v);
        pos += 4;
        return;
      }
      if (v <= MAX_SAFE) {
        b[pos++] = 0xcf;
        const hi = Math.floor(v / TWO_32);
        view.setUint32(pos, hi);
        view.setUint32(pos + 4, v - hi * TWO_32);
        pos += 8;
        return;
      }
    } else {
      if (v >= -0x20) {
        b[pos++] = v & 0xff;
        return;
      }
      if (v >= -0x80) {
        b[pos++] = 0xd0;
        b[pos++] = v & 0xff;
        return;
      }
      if (v >= -0x8000) {
        b[pos++] = 0xd1;
        view.setInt16(pos, v);
        pos += 2;
        return;
      }
      if (v >= -0x8000_0000) {
        b[pos++] = 0xd2;
        view.setInt32(pos, v);
        pos += 4;
        return;
      }
      if (v >= -MAX_SAFE) {
        b[pos++] = 0xd3;
        const hi = Math.floor(v / TWO_32);
        view.setInt32(pos, hi);
        view.setUint32(pos + 4, v - hi * TWO_32);
        pos += 8;
        return;
      }
    }
  }
  // -0, fractions, NaN, ±Infinity, and integers beyond 2^53 (which are
  // floats already) travel as float64, bit for bit.
  b[pos++] = 0xcb;
  view.setFloat64(pos, v);
  pos += 8;
}

function isForbiddenKeyString(k: string): boolean {
  return k === '__proto__' || k === 'constructor' || k === 'prototype';
}

function describe(v: unknown): string {
  if (typeof v !== 'object' || v === null) return typeof v;
  const name = (v as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name !== '' ? `a ${name}` : 'an object with a custom prototype';
}

function writeValue(v: unknown, depth: number, maxDepth: number): void {
  switch (typeof v) {
    case 'string':
      writeString(v);
      return;
    case 'number':
      writeNumber(v);
      return;
    case 'boolean':
      writeU8(v ? 0xc3 : 0xc2);
      return;
    case 'object':
      break;
    case 'undefined':
      throw new EncodeFailure('undefined is not plain data (only an object property may be undefined, and is then left out)');
    default:
      throw new EncodeFailure(`${typeof v} is not plain data`);
  }
  if (v === null) {
    writeU8(0xc0);
    return;
  }
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto === Object.prototype || proto === null) {
    if (depth >= maxDepth) throw new EncodeFailure(`nesting deeper than ${maxDepth} levels (or a cycle)`);
    writeObject(v as Record<string, unknown>, depth + 1, maxDepth);
  } else if (proto === Array.prototype) {
    if (depth >= maxDepth) throw new EncodeFailure(`nesting deeper than ${maxDepth} levels (or a cycle)`);
    writeArray(v as unknown[], depth + 1, maxDepth);
  } else if (v instanceof Uint8Array) {
    const n = v.length;
    if (outOfLine !== undefined && n >= outOfLine.threshold) {
      writeValue(outOfLine.take(v), depth, maxDepth);
      return;
    }
    if (n < 0x100) {
      writeU8(0xc4);
      writeU8(n);
    } else if (n < 0x10000) {
      writeU8(0xc5);
      writeU16(n);
    } else {
      writeU8(0xc6);
      writeU32(n);
    }
    writeBytes(v);
  } else if (v instanceof BulkRef) {
    const { stream, length } = v;
    if (!Number.isInteger(stream) || stream < 0 || stream >= TWO_32) {
      throw new EncodeFailure('BulkRef.stream must be an integer in 0..2^32-1');
    }
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new EncodeFailure('BulkRef.length must be a safe non-negative integer');
    }
    writeU8(0xc7);
    writeU8(BULK_REF_PAYLOAD_BYTES);
    writeU8(BULK_EXT_TYPE);
    writeU32(stream);
    writeU64(length);
  } else {
    throw new EncodeFailure(`${describe(v)} is not plain data`);
  }
}

function writeArray(a: unknown[], depth: number, maxDepth: number): void {
  const n = a.length;
  if (n < 16) writeU8(0x90 | n);
  else if (n < 0x10000) {
    writeU8(0xdc);
    writeU16(n);
  } else {
    writeU8(0xdd);
    writeU32(n);
  }
  let i = 0;
  try {
    for (; i < n; i++) writeValue(a[i], depth, maxDepth);
  } catch (e) {
    if (e instanceof EncodeFailure) e.segments.push(`[${i}]`);
    throw e;
  }
}

/**
 * Encoded map keys (header + UTF-8), checked once: the same few keys are
 * written over and over. Bounded: when full, new keys are just not cached.
 */
const keyCache = new Map<string, Uint8Array>();
const KEY_CACHE_MAX = 4096;
const KEY_CACHE_MAX_LENGTH = 32;

function writeKey(key: string): void {
  const cached = keyCache.get(key);
  if (cached !== undefined) {
    ensure(cached.length);
    buf.set(cached, pos);
    pos += cached.length;
    return;
  }
  if (isForbiddenKeyString(key)) throw new EncodeFailure(`the key ${JSON.stringify(key)} is refused by every decoder`);
  const at = pos;
  const into = buf;
  writeString(key);
  // (If the write moved the frame to a bigger buffer, just skip caching.)
  if (into === buf && key.length <= KEY_CACHE_MAX_LENGTH && keyCache.size < KEY_CACHE_MAX) keyCache.set(key, buf.slice(at, pos));
}

function writeObject(o: Record<string, unknown>, depth: number, maxDepth: number): void {
  const keys = Object.keys(o);
  let n = 0;
  for (let i = 0; i < keys.length; i++) if (o[keys[i]!] !== undefined) n++;
  if (n < 16) writeU8(0x80 | n);
  else if (n < 0x10000) {
    writeU8(0xde);
    writeU16(n);
  } else {
    writeU8(0xdf);
    writeU32(n);
  }
  let key = '';
  try {
    let written = 0;
    for (let i = 0; i < keys.length; i++) {
      key = keys[i]!;
      const value = o[key];
      if (value === undefined) continue;
      writeKey(key);
      writeValue(value, depth, maxDepth);
      written++;
    }
    // A getter that answered undefined on the first read but not the second
    // (or the reverse) would make the header lie.
    if (written !== n) throw new EncodeFailure('the object changed while it was being encoded');
  } catch (e) {
    if (e instanceof EncodeFailure) e.segments.push(/^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`);
    throw e;
  }
}

function toEncodeError(e: unknown, root: string): unknown {
  if (!(e instanceof EncodeFailure)) return e;
  let path = root;
  for (let i = e.segments.length - 1; i >= 0; i--) path += e.segments[i];
  return new IcsEncodeError(path, e.message);
}

/** @internal Writes a body into the frame being written; `root` names it in errors. */
export function writeBody(value: unknown, maxDepth: number, root: string, options?: EncodeOptions): void {
  outOfLine = options?.outOfLine;
  try {
    writeValue(value, 0, maxDepth);
  } catch (e) {
    throw toEncodeError(e, root);
  } finally {
    outOfLine = undefined;
  }
}

/** @internal */
export function encodeMaxDepth(options: EncodeOptions | undefined): number {
  const d = options?.maxDepth;
  if (d === undefined) return DEFAULT_DECODE_LIMITS.maxDepth;
  return checkCount('options.maxDepth', d, 0, MAX_DEPTH_LIMIT);
}

/**
 * Encodes one body on its own (without a frame envelope). The result is a
 * view into a shared slab: keep it or copy it, but do not write into it.
 */
export function encodeBody(value: unknown, options?: EncodeOptions): Uint8Array {
  const maxDepth = encodeMaxDepth(options);
  beginWrite();
  try {
    writeBody(value, maxDepth, 'body');
  } catch (e) {
    abortWrite();
    throw e;
  }
  return endWrite();
}

// ---------------------------------------------------------------------------
// Decoding: the pre-scan

/** Per-level state of the scan: items still expected, and whether it is a map. */
let scanRemaining = new Float64Array(64);
let scanIsMap = new Uint8Array(64);

const KEY_PROTO = Uint8Array.from(Buffer.from('__proto__'));
const KEY_PROTOTYPE = Uint8Array.from(Buffer.from('prototype'));
const KEY_CONSTRUCTOR = Uint8Array.from(Buffer.from('constructor'));

function bytesEqual(b: Uint8Array, p: number, word: Uint8Array): boolean {
  for (let i = 0; i < word.length; i++) if (b[p + i] !== word[i]) return false;
  return true;
}

function isForbiddenKey(b: Uint8Array, p: number, n: number): boolean {
  if (n === 9) return bytesEqual(b, p, KEY_PROTO) || bytesEqual(b, p, KEY_PROTOTYPE);
  if (n === 11) return bytesEqual(b, p, KEY_CONSTRUCTOR);
  return false;
}

/** Longer strings go to Node's native (simdutf) validator. */
const NATIVE_UTF8_FROM = 64;

/**
 * True when b[p, p+n) is well-formed UTF-8 (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF).
 */
export function isWellFormedUtf8(b: Uint8Array, p: number, n: number): boolean {
  if (n >= NATIVE_UTF8_FROM) return isUtf8(b.subarray(p, p + n));
  const end = p + n;
  while (p < end) {
    const c = b[p]!;
    if (c < 0x80) {
      p++;
      continue;
    }
    if (c < 0xc2) return false; // continuation byte, or overlong C0/C1
    if (c < 0xe0) {
      if (p + 1 >= end || (b[p + 1]! & 0xc0) !== 0x80) return false;
      p += 2;
    } else if (c < 0xf0) {
      if (p + 2 >= end) return false;
      const c1 = b[p + 1]!;
      if ((c1 & 0xc0) !== 0x80 || (b[p + 2]! & 0xc0) !== 0x80) return false;
      if (c === 0xe0 && c1 < 0xa0) return false; // overlong
      if (c === 0xed && c1 > 0x9f) return false; // surrogate
      p += 3;
    } else if (c < 0xf5) {
      if (p + 3 >= end) return false;
      const c1 = b[p + 1]!;
      if ((c1 & 0xc0) !== 0x80 || (b[p + 2]! & 0xc0) !== 0x80 || (b[p + 3]! & 0xc0) !== 0x80) return false;
      if (c === 0xf0 && c1 < 0x90) return false; // overlong
      if (c === 0xf4 && c1 > 0x8f) return false; // above U+10FFFF
      p += 4;
    } else return false;
  }
  return true;
}

const K_SCALAR = 0;
const K_ARRAY = 1;
const K_MAP = 2;
const K_STR = 3;
const K_BIN = 4;
const K_EXT = 5;

/**
 * Walks the msgpack value in b[p, end) and throws IcsDecodeError unless it
 * is exactly one value within `limits` and inside the plain-data subset.
 * Iterative, O(end - p) time: every step consumes at least one byte, and
 * no header is believed before its length is checked against the bytes
 * that remain. Allocates nothing that depends on the input (the level stack
 * is reused and sized by min(maxDepth, input length)).
 *
 * @returns the number of BulkRef extensions seen.
 */
export function scanBody(b: Uint8Array, p: number, end: number, limits: Readonly<DecodeLimits>): number {
  const { maxDepth, maxElements, maxStringBytes, allowedExtensions, maxBulkRefs } = limits;
  const stackSize = Math.min(maxDepth, end - p) + 1;
  if (scanRemaining.length < stackSize) {
    scanRemaining = new Float64Array(stackSize);
    scanIsMap = new Uint8Array(stackSize);
  }
  const remaining = scanRemaining;
  const isMap = scanIsMap;
  let depth = 0;
  let elements = 0;
  let bulk = 0;

  for (;;) {
    if (p >= end) throw new IcsDecodeError('truncated', p, 'body ends before its value is complete');
    let isKey = false;
    if (depth > 0) {
      const r = remaining[depth]!;
      isKey = isMap[depth] === 1 && r % 2 === 0;
      remaining[depth] = r - 1;
    }
    const at = p;
    const t = b[p++]!;
    let kind = K_SCALAR;
    let n = 0;

    if (t < 0x80 || t >= 0xe0) {
      // positive or negative fixint
    } else if (t < 0x90) {
      kind = K_MAP;
      n = t & 0x0f;
    } else if (t < 0xa0) {
      kind = K_ARRAY;
      n = t & 0x0f;
    } else if (t < 0xc0) {
      kind = K_STR;
      n = t & 0x1f;
    } else {
      // Fixed-size payloads and length fields: make sure they are there.
      let need = 0;
      switch (t) {
        case 0xc0: // nil
        case 0xc2: // false
        case 0xc3: // true
          break;
        case 0xc1:
          throw new IcsDecodeError('token', at, 'byte 0xc1 is not a msgpack type');
        case 0xc4: // bin 8
        case 0xd9: // str 8
        case 0xcc: // uint 8
        case 0xd0: // int 8
        case 0xd4: // fixext 1 (type byte)
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
          need = 1;
          break;
        case 0xc7: // ext 8: length + type
          need = 2;
          break;
        case 0xc5:
        case 0xda:
        case 0xdc:
        case 0xde:
        case 0xcd:
        case 0xd1:
          need = 2;
          break;
        case 0xc8: // ext 16: length + type
          need = 3;
          break;
        case 0xc6:
        case 0xdb:
        case 0xdd:
        case 0xdf:
        case 0xce:
        case 0xd2:
        case 0xca:
          need = 4;
          break;
        case 0xc9: // ext 32: length + type
          need = 5;
          break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
          need = 8;
          break;
      }
      if (need > end - p) throw new IcsDecodeError('truncated', at, 'body ends inside a header');
      switch (t) {
        case 0xc4:
          kind = K_BIN;
          n = b[p++]!;
          break;
        case 0xc5:
          kind = K_BIN;
          n = (b[p]! << 8) | b[p + 1]!;
          p += 2;
          break;
        case 0xc6:
          kind = K_BIN;
          n = readU32(b, p);
          p += 4;
          break;
        case 0xd9:
          kind = K_STR;
          n = b[p++]!;
          break;
        case 0xda:
          kind = K_STR;
          n = (b[p]! << 8) | b[p + 1]!;
          p += 2;
          break;
        case 0xdb:
          kind = K_STR;
          n = readU32(b, p);
          p += 4;
          break;
        case 0xdc:
          kind = K_ARRAY;
          n = (b[p]! << 8) | b[p + 1]!;
          p += 2;
          break;
        case 0xdd:
          kind = K_ARRAY;
          n = readU32(b, p);
          p += 4;
          break;
        case 0xde:
          kind = K_MAP;
          n = (b[p]! << 8) | b[p + 1]!;
          p += 2;
          break;
        case 0xdf:
          kind = K_MAP;
          n = readU32(b, p);
          p += 4;
          break;
        case 0xd4:
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
          kind = K_EXT;
          n = 1 << (t - 0xd4);
          break;
        case 0xc7:
          kind = K_EXT;
          n = b[p++]!;
          break;
        case 0xc8:
          kind = K_EXT;
          n = (b[p]! << 8) | b[p + 1]!;
          p += 2;
          break;
        case 0xc9:
          kind = K_EXT;
          n = readU32(b, p);
          p += 4;
          break;
        case 0xcf: {
          // uint 64: safe only when the high word is below 2^21.
          if (readU32(b, p) > 0x1f_ffff) throw new IcsDecodeError('integer', at, 'uint64 beyond 2^53 - 1');
          p += 8;
          break;
        }
        case 0xd3: {
          const hi = (b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!;
          const v = hi >= -0x20_0000 && hi <= 0x1f_ffff ? hi * 0x1_0000_0000 + readU32(b, p + 4) : Infinity;
          if (!Number.isSafeInteger(v)) throw new IcsDecodeError('integer', at, 'int64 beyond ±(2^53 - 1)');
          p += 8;
          break;
        }
        default:
          p += need; // fixed-size numbers
      }
    }

    if (isKey && kind !== K_STR) throw new IcsDecodeError('key', at, 'map key is not a string');

    switch (kind) {
      case K_STR:
        if (n > end - p) throw new IcsDecodeError('length', at, `string of ${n} bytes does not fit in the body`);
        if (n > maxStringBytes) {
          throw new IcsDecodeError('string-length', at, `string of ${n} bytes exceeds maxStringBytes ${maxStringBytes}`);
        }
        if (!isWellFormedUtf8(b, p, n)) throw new IcsDecodeError('utf8', at, 'string is not well-formed UTF-8');
        if (isKey && isForbiddenKey(b, p, n)) {
          throw new IcsDecodeError('key', at, 'map key __proto__, constructor or prototype is refused');
        }
        p += n;
        break;
      case K_BIN:
        if (n > end - p) throw new IcsDecodeError('length', at, `bin of ${n} bytes does not fit in the body`);
        p += n;
        break;
      case K_ARRAY:
      case K_MAP: {
        if (depth + 1 > maxDepth) throw new IcsDecodeError('depth', at, `nesting deeper than maxDepth ${maxDepth}`);
        // Every element takes at least one byte, a map entry at least two.
        const slots = kind === K_MAP ? 2 * n : n;
        if (slots > end - p) {
          throw new IcsDecodeError('length', at, `container declares ${n} elements that cannot fit in the body`);
        }
        elements += n;
        if (elements > maxElements) {
          throw new IcsDecodeError('elements', at, `more than maxElements ${maxElements} elements`);
        }
        if (n > 0) {
          depth++;
          remaining[depth] = slots;
          isMap[depth] = kind === K_MAP ? 1 : 0;
        }
        break;
      }
      case K_EXT: {
        // p is at the type byte (it was counted in `need`).
        const type = (b[p]! << 24) >> 24;
        p++;
        if (n > end - p) throw new IcsDecodeError('length', at, `extension of ${n} bytes does not fit in the body`);
        if (type === BULK_EXT_TYPE) {
          if (n !== BULK_REF_PAYLOAD_BYTES) {
            throw new IcsDecodeError('extension', at, `BulkRef payload must be ${BULK_REF_PAYLOAD_BYTES} bytes`);
          }
          if (readU32(b, p + 4) > 0x1f_ffff) throw new IcsDecodeError('extension', at, 'BulkRef length beyond 2^53 - 1');
          if (++bulk > maxBulkRefs) throw new IcsDecodeError('bulk-refs', at, `more than maxBulkRefs ${maxBulkRefs} out-of-line references`);
        } else if (!allowedExtensions.includes(type)) {
          throw new IcsDecodeError('extension', at, `extension type ${type} is not allowed`);
        }
        p += n;
        break;
      }
    }

    while (depth > 0 && remaining[depth] === 0) depth--;
    if (depth === 0) break;
  }
  if (p !== end) throw new IcsDecodeError('trailing-bytes', p, `${end - p} bytes after the body's value`);
  return bulk;
}

function readU32(b: Uint8Array, p: number): number {
  return b[p]! * 0x100_0000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
}

// ---------------------------------------------------------------------------
// Decoding: building the value

/**
 * msgpackr, told exactly what we want. Most of msgpackr's extensions live
 * in one process-wide table that no option turns off (Date -1, undefined 0,
 * BigInt 0x42, Error 0x65, Set 0x73, typed arrays 0x74, RegExp 0x78, record
 * 0x72, bundled strings 0x62); only the pre-scan keeps them out. The
 * options still matter: 64-bit ints as numbers (the scan guarantees they
 * are safe), maps as plain objects, no records, no structured clone.
 */
const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  structuredClone: false,
  moreTypes: false,
  int64AsType: 'number',
  copyBuffers: false,
  bundleStrings: false,
  sequential: false,
});

const U64_MASK = (1n << 64n) - 1n;

/**
 * msgpackr decodes ext 0x42 as its own BigInt extension, so every BulkRef
 * arrives as the bigint (signed stream << 64) | length. Nothing else can
 * produce a bigint here: int64s decode as numbers. Turn them back.
 */
function bulkFromBigInt(v: bigint, found: BulkRef[] | undefined): BulkRef {
  const ref = new BulkRef(Number(BigInt.asUintN(32, v >> 64n)), Number(v & U64_MASK));
  found?.push(ref);
  return ref;
}

/** Turn the bigints back into BulkRefs, in place, and list them in `found` (when given) in the same pass. */
function restoreBulkRefs(root: unknown, found: BulkRef[] | undefined): unknown {
  if (typeof root === 'bigint') return bulkFromBigInt(root, found);
  const stack: object[] = [];
  if (typeof root === 'object' && root !== null && !(root instanceof Uint8Array)) stack.push(root);
  while (stack.length > 0) {
    const node = stack.pop() as Record<string, unknown> | unknown[];
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const v = node[i];
        if (typeof v === 'bigint') node[i] = bulkFromBigInt(v, found);
        else if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array)) stack.push(v);
      }
    } else {
      for (const k of Object.keys(node)) {
        const v = node[k];
        if (typeof v === 'bigint') node[k] = bulkFromBigInt(v, found);
        else if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array)) stack.push(v);
      }
    }
  }
  return root;
}

/**
 * @internal Scans b[p, end) and builds its value; throws only IcsDecodeError.
 * The BulkRefs it holds are appended to `bulkRefs` when given.
 */
export function readBody(b: Uint8Array, p: number, end: number, limits: Readonly<DecodeLimits>, bulkRefs?: BulkRef[]): unknown {
  const bulk = scanBody(b, p, end, limits);
  let value: unknown;
  try {
    // A fresh view: msgpackr caches a DataView as a property of its input.
    value = unpackr.unpack(b.subarray(p, end));
  } catch (e) {
    // Unreachable for bytes the scan passed, unless an allowed extension's
    // msgpackr handler refused its payload.
    throw new IcsDecodeError('unreadable', p, 'msgpackr could not build the scanned body', { cause: e });
  }
  return bulk > 0 ? restoreBulkRefs(value, bulkRefs) : value;
}

/**
 * Decodes one body (no envelope) from untrusted bytes. Returns plain data
 * (with BulkRef instances where the sender put them); bin values are views
 * into `bytes`, not copies. Throws only IcsDecodeError (and
 * InvalidOptionError for bad `limits`).
 */
export function decodeBody(bytes: Uint8Array, limits?: Partial<DecodeLimits>): unknown {
  return readBody(bytes, 0, bytes.length, resolveDecodeLimits(limits));
}
