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
 * Decoding treats the bytes as hostile: decode.ts reads the value in one
 * validating pass that checks every header against the limits and the
 * bytes that remain before it builds anything for it, and refuses
 * (IcsDecodeError) anything outside the limits or outside the plain-data
 * subset: a header that lies about its length, a nesting deeper than the
 * limit, a non-string or prototype-polluting key, or an extension other
 * than BulkRef (unless allowed).
 *
 * Why the encoder is not msgpackr's Packr: Packr can only learn a custom
 * extension through msgpackr's process-wide `addExtension`, which would
 * also replace msgpackr's own decoder for type 0x42 (its BigInt extension,
 * which BULK_EXT_TYPE collides with) for every msgpackr user in the
 * process; and Packr silently encodes Dates, Sets, Errors, class instances,
 * functions and BigInts, so a full validating walk would be needed anyway.
 * The writer below validates and encodes in one pass.
 */
import { InvalidOptionError } from '../../errors/index.js';
import { BULK_REF_PAYLOAD_BYTES, DEFAULT_DECODE_LIMITS, FORBIDDEN_EXTENSIONS, MAX_DEPTH_LIMIT } from './constants.js';
import { IcsDecodeError, IcsEncodeError } from './errors.js';
import { BULK_EXT_TYPE, BulkRef, type DecodeLimits } from './types.js';
import { decodeValue } from './decode.js';

export { isWellFormedUtf8 } from './utf8.js';

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
/** Whether `buf` is an oversize buffer that holds just the frame being written. */
let oversize = false;
/** Room left behind what a frame asked for when it outgrows its buffer (the rest of a frame after a large value is usually small). */
const GROW_SLACK = 4 * 1024;

function grow(need: number): void {
  const used = pos - start;
  const size = used + need + GROW_SLACK;
  if (!oversize && size <= SLAB_BYTES) {
    // It fits a fresh slab: continue there (the rest of the old one is given up, as beginWrite does).
    const slab = new Uint8Array(SLAB_BYTES);
    slab.set(buf.subarray(start, pos), 0);
    useBuffer(slab);
    start = 0;
    pos = used;
    return;
  }
  // Oversize buffers hold one frame each and are never handed out beyond
  // it, so they need not be zero-filled (every byte of the frame is
  // written). Sized for what is asked, or doubled for a frame that keeps
  // growing, so a large value costs one buffer of about its size.
  const next = Buffer.allocUnsafeSlow(Math.max(size, 2 * used));
  next.set(buf.subarray(start, pos), 0);
  if (!oversize) {
    // The frame moved out of the slab: its room there is free again.
    spare = buf;
    spareAt = start;
    oversize = true;
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
  if (oversize) {
    // An oversize buffer served one big frame; go back to the slab.
    useBuffer(spare!);
    pos = spareAt;
    spare = undefined;
    oversize = false;
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
  if (oversize) {
    useBuffer(spare!);
    pos = start = spareAt;
    spare = undefined;
    oversize = false;
  }
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
  if (s.length >= SHORT_STRING) pos += nodeBuf.write(s, pos, n, 'utf8');
  else pos = utf8Into(s, buf, pos);
}

/**
 * Writes the UTF-8 bytes of the short string `s` into `b` from `p` (room
 * for 3 bytes per UTF-16 unit is the caller's part); returns where they
 * end. A lone surrogate (which has no UTF-8 form) throws EncodeFailure.
 */
function utf8Into(s: string, b: Uint8Array, p: number): number {
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
      const d = c <= 0xdbff ? s.charCodeAt(i + 1) : 0;
      if (!(d >= 0xdc00 && d <= 0xdfff)) throw new EncodeFailure('string holds a lone surrogate (not valid UTF-8)');
      c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
      i++;
      b[p++] = 0xf0 | (c >> 18);
      b[p++] = 0x80 | ((c >> 12) & 0x3f);
      b[p++] = 0x80 | ((c >> 6) & 0x3f);
      b[p++] = 0x80 | (c & 0x3f);
    }
  }
  return p;
}

/** Thrown inside the writer; collects the path on the way out. */
class EncodeFailure {
  readonly segments: string[] = [];
  constructor(readonly message: string) {}
}

/** UTF-8 length of a long string (short ones are measured as they are written). */
function stringByteLength(s: string): number {
  if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) {
    throw new EncodeFailure('string holds a lone surrogate (not valid UTF-8)');
  }
  return Buffer.byteLength(s, 'utf8');
}

function writeString(s: string): void {
  const len = s.length;
  if (len < SHORT_STRING) {
    writeShortString(s, len);
    return;
  }
  const n = stringByteLength(s);
  if (n < 0x100) {
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

/**
 * A string of fewer than SHORT_STRING UTF-16 units (at most 141 UTF-8
 * bytes) in one pass: encoded behind the header its length most likely
 * needs, checked for lone surrogates on the way, and moved by a byte in the
 * rare case the header guessed wrong.
 */
function writeShortString(s: string, len: number): void {
  ensure(2 + 3 * len);
  const b = buf;
  const at = pos;
  const guess = len < 32 ? 1 : 2;
  let p = utf8Into(s, b, at + guess);
  const n = p - at - guess;
  // (A guess of 2 means 32 units or more, so 32 bytes or more: never too long.)
  if (n < 32) b[at] = 0xa0 | n;
  else {
    if (guess === 1) {
      b.copyWithin(at + 2, at + 1, p);
      p++;
    }
    b[at] = 0xd9;
    b[at + 1] = n;
  }
  pos = p;
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
  } else if (v instanceof Encoded) {
    if (depth + v.depth > maxDepth) throw new EncodeFailure(`nesting deeper than ${maxDepth} levels`);
    writeBytes(v.bytes);
  } else {
    throw new EncodeFailure(`${describe(v)} is not plain data`);
  }
}

/** An array or map header: fix form `fix | n` below 16, else `tag16` + u16 or `tag16 + 1` + u32. */
function writeCount(n: number, fix: number, tag16: number): void {
  if (n < 16) writeU8(fix | n);
  else if (n < 0x10000) {
    writeU8(tag16);
    writeU16(n);
  } else {
    writeU8(tag16 + 1);
    writeU32(n);
  }
}

function writeArray(a: unknown[], depth: number, maxDepth: number): void {
  const n = a.length;
  writeCount(n, 0x90, 0xdc);
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
    const n = cached.length;
    ensure(n);
    // A few bytes: a loop beats a call into TypedArray#set.
    const b = buf;
    for (let i = 0; i < n; i++) b[pos + i] = cached[i]!;
    pos += n;
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
  const count = keys.length;
  // Fewer than 16 properties (the usual case): one pass, the fixmap header
  // patched with the entries actually written (those not undefined). Each
  // property is read once, so a getter cannot make the header lie.
  const small = count < 16;
  let n = 0;
  if (small) {
    ensure(1);
    pos++;
  } else {
    for (let i = 0; i < count; i++) if (o[keys[i]!] !== undefined) n++;
    writeCount(n, 0x80, 0xde);
  }
  // Relative to the frame's start: a write may move the frame to a bigger buffer.
  const header = pos - 1 - start;
  let key = '';
  let written = 0;
  try {
    for (let i = 0; i < count; i++) {
      key = keys[i]!;
      const value = o[key];
      if (value === undefined) continue;
      writeKey(key);
      writeValue(value, depth, maxDepth);
      written++;
    }
    // A getter that answered undefined on the first read but not the second
    // (or the reverse) would make the header lie.
    if (!small && written !== n) throw new EncodeFailure('the object changed while it was being encoded');
  } catch (e) {
    if (e instanceof EncodeFailure) e.segments.push(/^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`);
    throw e;
  }
  if (small) buf[start + header] = 0x80 | written;
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
// Values encoded once

/**
 * A value encoded once, written as those bytes wherever it appears in a
 * body: the same bytes the writer would have made of the value there, so
 * a frame holding it is byte for byte the frame holding the value. For
 * immutable data that goes out many times: a CLMS master sends each
 * transition to every member, and the whole history to every joiner.
 * The receiver decodes plain data, as ever.
 */
export class Encoded {
  /** @internal Use `encodeOnce`. */
  constructor(
    readonly bytes: Uint8Array,
    /** Levels of nesting the value takes (a plain object of scalars: 1). */
    readonly depth: number,
  ) {}
}

const encodedOnce = new WeakMap<object, Encoded | null>();

/**
 * `value` as an `Encoded`, made the first time and kept as long as `value`
 * lives: the caller promises never to change `value` afterwards. A value
 * that holds bytes (a Uint8Array, which a body may take out of line) or
 * that the writer refuses is handed back as it is, so the call that sends
 * it behaves (and fails) as it would have.
 */
export function encodeOnce<T extends object>(value: T): T | Encoded {
  // Asked from inside a write (a getter of the value being encoded): plain, and nothing kept.
  if (encoding) return value;
  let e = encodedOnce.get(value);
  if (e === undefined) {
    const depth = plainDepth(value, 0);
    e = null;
    if (depth !== undefined && depth <= DEFAULT_DECODE_LIMITS.maxDepth) {
      try {
        e = new Encoded(encodeBody(value).slice(), depth);
      } catch {
        e = null;
      }
    }
    encodedOnce.set(value, e);
  }
  return e ?? value;
}

/** The nesting of plain data `v` (0 for a scalar), or undefined when it holds bytes or anything else the writer treats specially. */
function plainDepth(v: unknown, level: number): number | undefined {
  if (typeof v !== 'object' || v === null) return level;
  if (level > DEFAULT_DECODE_LIMITS.maxDepth) return undefined;
  const proto: unknown = Object.getPrototypeOf(v);
  let deepest = level + 1;
  if (proto === Array.prototype) {
    for (const x of v as unknown[]) {
      const d = plainDepth(x, level + 1);
      if (d === undefined) return undefined;
      if (d > deepest) deepest = d;
    }
    return deepest;
  }
  if (proto !== Object.prototype && proto !== null) return undefined;
  for (const k of Object.keys(v)) {
    const d = plainDepth((v as Record<string, unknown>)[k], level + 1);
    if (d === undefined) return undefined;
    if (d > deepest) deepest = d;
  }
  return deepest;
}

// ---------------------------------------------------------------------------
// Decoding (decode.ts)

/**
 * @internal Decodes the value in b[p, end) (decode.ts: one validating
 * pass); throws only IcsDecodeError. The BulkRefs it holds are appended to
 * `bulkRefs` when given, in the order they appear.
 */
export function readBody(b: Uint8Array, p: number, end: number, limits: Readonly<DecodeLimits>, bulkRefs?: BulkRef[]): unknown {
  return decodeValue(b, p, end, limits, bulkRefs);
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
