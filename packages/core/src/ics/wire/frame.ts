/**
 * The ICS frame envelope: a fixed big-endian binary layout read by hand,
 * followed (for Request, OneWay and Response) by a msgpack body that runs to
 * the end of the frame. The transport delimits frames; this layer never
 * sees a length prefix. `docs/protocol.md` ("ICS frames") has the tables.
 *
 * Byte 0 is always the frame type and byte 1 the flags. Flag bits and
 * reserved fields that a version does not define must be zero: a receiver
 * refuses them, so a later version can give them meaning behind the
 * handshake's version negotiation without an old peer misreading them.
 *
 * Guarantees of decodeFrame: it throws nothing but IcsDecodeError (or
 * InvalidOptionError for bad limits); every field of the returned frame is
 * in range; bodies obey the DecodeLimits; BulkChunk `data` and bin values in
 * bodies are views into the input (no copy), so the caller must not reuse
 * the input buffer while the frame is alive.
 */
import {
  abortWrite,
  beginWrite,
  type EncodeOptions,
  encodeMaxDepth,
  endWrite,
  isWellFormedUtf8,
  readBody,
  resolveDecodeLimits,
  utf8Length,
  writeBody,
  writeBytes,
  writeU16,
  writeU32,
  writeU64,
  writeU8,
  writeUtf8,
} from './codec.js';
import { MAX_METHOD_BYTES } from './constants.js';
import { IcsDecodeError, IcsEncodeError } from './errors.js';
import { checkHeaders, readHeaders, writeHeaders } from './headers.js';
import {
  type BulkAbortFrame,
  RefusedReason,
  type RefusedFrame,
  type BulkChunkFrame,
  type CancelFrame,
  type CreditFrame,
  type DecodeLimits,
  FrameType,
  type BulkRef,
  type IcsFrame,
  type OneWayFrame,
  type RequestFrame,
  type ResponseFrame,
  WireStatus,
  type WireStatusCode,
} from './types.js';

/** Flags byte. Append only; undefined bits must be zero. */
const FLAG_PRIORITY = 0x01; // Request, OneWay
const FLAG_HEADERS = 0x02; // Request: a header block follows the method name
const FLAG_LAST = 0x01; // BulkChunk

/** Fixed header sizes, in bytes, before the method name / body / data. */
export const FRAME_HEADER_BYTES = Object.freeze({
  [FrameType.Request]: 17,
  [FrameType.Response]: 8,
  [FrameType.OneWay]: 13,
  [FrameType.Cancel]: 8,
  [FrameType.Credit]: 12,
  [FrameType.BulkChunk]: 16,
  [FrameType.BulkAbort]: 8,
  [FrameType.Refused]: 4,
});

const VALID_REFUSED = new Set<number>(Object.values(RefusedReason));

const TWO_32 = 0x1_0000_0000;

const VALID_STATUS = new Uint8Array(256);
for (const code of Object.values(WireStatus)) VALID_STATUS[code] = 1;

// ---------------------------------------------------------------------------
// Encoding

function fail(path: string, message: string): never {
  throw new IcsEncodeError(path, message);
}

function checkU32(path: string, v: unknown, min = 0): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v >= TWO_32) {
    fail(path, `must be an integer in ${min}..2^32-1`);
  }
  return v;
}

function checkChannel(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff) fail('channel', 'must be an integer in 0..65535');
  return v;
}

function checkStatus(path: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xff || VALID_STATUS[v] !== 1) {
    fail(path, 'is not a WireStatus code');
  }
  return v;
}

function checkErrorBody(body: unknown, fault: (message: string) => never): void {
  if (typeof body !== 'object' || body === null || Object.getPrototypeOf(body) !== Object.prototype) {
    fault('a non-OK Response body must be { message: string, details?: plain data }');
  }
  let message = false;
  for (const k of Object.keys(body)) {
    if (k === 'message') message = typeof (body as { message: unknown }).message === 'string';
    else if (k !== 'details') fault(`a non-OK Response body has no field ${JSON.stringify(k)}`);
  }
  if (!message) fault('a non-OK Response body needs a string `message`');
}

/** Validates and writes channel, service and method of Request/OneWay. */
function addressedFields(f: RequestFrame | OneWayFrame): { channel: number; service: number; methodBytes: number } {
  const channel = checkChannel(f.channel);
  const service = checkU32('service', f.service);
  if (service >>> 16 !== channel) fail('service', 'upper 16 bits must equal the channel');
  if (typeof f.method !== 'string' || f.method.length === 0) fail('method', 'must be a non-empty string');
  if (f.method.length > MAX_METHOD_BYTES) fail('method', `longer than ${MAX_METHOD_BYTES} UTF-8 bytes`);
  const methodBytes = utf8Length(f.method);
  if (methodBytes < 0) fail('method', 'holds a lone surrogate (not valid UTF-8)');
  if (methodBytes > MAX_METHOD_BYTES) fail('method', `longer than ${MAX_METHOD_BYTES} UTF-8 bytes`);
  return { channel, service, methodBytes };
}

/**
 * Encodes a frame. Throws IcsEncodeError (naming the field or body path)
 * when a field is out of range or the body is not plain data. The result is
 * a view into a shared slab: hand it to the transport or copy it, but do
 * not write into it. BulkChunk data is copied into the frame.
 */
/**
 * The 16-byte header of a BulkChunk frame; the chunk's data follows it on
 * the wire. With `Link.sendv([header, data])` the data is never copied.
 * `encodeFrame` of the same chunk gives the same bytes, joined.
 */
export function encodeBulkChunkHeader(stream: number, offset: number, last: boolean): Uint8Array {
  const id = checkU32('stream', stream);
  if (!Number.isSafeInteger(offset) || offset < 0) fail('offset', 'must be a safe non-negative integer');
  beginWrite();
  writeU8(FrameType.BulkChunk);
  writeU8(last ? FLAG_LAST : 0);
  writeU16(0);
  writeU32(id);
  writeU64(offset);
  return endWrite();
}

export function encodeFrame(frame: IcsFrame, options?: EncodeOptions): Uint8Array {
  const maxDepth = encodeMaxDepth(options);
  // Validate every field before writing, so that the slab is only touched
  // for frames that will be completed (bodies are checked while written).
  switch (frame.type) {
    case FrameType.Request:
    case FrameType.OneWay: {
      // The two differ only in the type byte and the Request's timeoutMs.
      const { channel, service, methodBytes } = addressedFields(frame);
      const id = checkU32('id', frame.id, 1);
      const timeoutMs = frame.type === FrameType.Request ? checkU32('timeoutMs', frame.timeoutMs) : undefined;
      const headers = frame.type === FrameType.Request ? checkHeaders(frame.headers) : undefined;
      beginWrite();
      try {
        writeU8(frame.type);
        writeU8((frame.priority ? FLAG_PRIORITY : 0) | (headers ? FLAG_HEADERS : 0));
        writeU16(channel);
        writeU32(service);
        writeU32(id);
        if (timeoutMs !== undefined) writeU32(timeoutMs);
        writeU8(methodBytes);
        writeUtf8(frame.method, methodBytes);
        if (headers) writeHeaders(headers);
        writeBody(frame.body, maxDepth, 'body', options);
      } catch (e) {
        abortWrite();
        throw e;
      }
      return endWrite();
    }
    case FrameType.Response: {
      const id = checkU32('id', frame.id, 1);
      const status = checkStatus('status', frame.status);
      if (status !== WireStatus.OK) checkErrorBody(frame.body, (m) => fail('body', m));
      beginWrite();
      try {
        writeU8(FrameType.Response);
        writeU8(0);
        writeU16(status);
        writeU32(id);
        writeBody(frame.body, maxDepth, 'body', options);
      } catch (e) {
        abortWrite();
        throw e;
      }
      return endWrite();
    }
    case FrameType.Cancel: {
      const id = checkU32('id', frame.id, 1);
      const status = checkStatus('status', frame.status);
      if (status !== WireStatus.CANCELLED && status !== WireStatus.DEADLINE_EXCEEDED) {
        fail('status', 'a Cancel carries CANCELLED or DEADLINE_EXCEEDED');
      }
      beginWrite();
      writeU8(FrameType.Cancel);
      writeU8(0);
      writeU16(status);
      writeU32(id);
      return endWrite();
    }
    case FrameType.Credit: {
      const channel = checkChannel(frame.channel);
      const messages = checkU32('messages', frame.messages);
      const bytes = checkU32('bytes', frame.bytes);
      beginWrite();
      writeU8(FrameType.Credit);
      writeU8(0);
      writeU16(channel);
      writeU32(messages);
      writeU32(bytes);
      return endWrite();
    }
    case FrameType.BulkChunk: {
      const stream = checkU32('stream', frame.stream);
      const offset = frame.offset;
      if (!Number.isSafeInteger(offset) || offset < 0) fail('offset', 'must be a safe non-negative integer');
      if (!(frame.data instanceof Uint8Array)) fail('data', 'must be a Uint8Array');
      beginWrite();
      writeU8(FrameType.BulkChunk);
      writeU8(frame.last ? FLAG_LAST : 0);
      writeU16(0);
      writeU32(stream);
      writeU64(offset);
      writeBytes(frame.data);
      return endWrite();
    }
    case FrameType.BulkAbort: {
      const stream = checkU32('stream', frame.stream);
      beginWrite();
      writeU8(FrameType.BulkAbort);
      writeU8(0);
      writeU16(0);
      writeU32(stream);
      return endWrite();
    }
    case FrameType.Refused: {
      if (!VALID_REFUSED.has(frame.reason)) fail('reason', `unknown refusal reason ${String(frame.reason)}`);
      beginWrite();
      writeU8(FrameType.Refused);
      writeU8(0);
      writeU16(frame.reason);
      return endWrite();
    }
    default:
      return fail('type', `unknown frame type ${String((frame as { type: unknown }).type)}`);
  }
}

// ---------------------------------------------------------------------------
// Decoding

function u16(b: Uint8Array, p: number): number {
  return (b[p]! << 8) | b[p + 1]!;
}

function u32(b: Uint8Array, p: number): number {
  return b[p]! * 0x100_0000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
}

function bad(offset: number, message: string): never {
  throw new IcsDecodeError('field', offset, message);
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Method names seen recently, by their bytes: a service has a handful of
 * methods, so most frames name one already decoded and checked. One entry
 * per (length, first byte, last byte) slot; a hit is confirmed byte by byte.
 */
const methodCache: ({ bytes: Uint8Array; name: string } | undefined)[] = new Array(1024);

function methodSlot(b: Uint8Array, s: number, n: number): number {
  return (n * 31 + b[s]! * 7 + b[s + n - 1]!) & 1023;
}

function readMethod(b: Uint8Array, p: number): { method: string; end: number } {
  if (p >= b.length) throw new IcsDecodeError('truncated', p, 'frame ends before the method name');
  const n = b[p]!;
  if (n === 0) bad(p, 'empty method name');
  const s = p + 1;
  if (n > b.length - s) throw new IcsDecodeError('truncated', p, 'frame ends inside the method name');
  const slot = methodSlot(b, s, n);
  const hit = methodCache[slot];
  if (hit !== undefined && hit.bytes.length === n) {
    let same = true;
    for (let i = 0; i < n; i++) {
      if (hit.bytes[i] !== b[s + i]) {
        same = false;
        break;
      }
    }
    if (same) return { method: hit.name, end: s + n };
  }
  if (!isWellFormedUtf8(b, s, n)) throw new IcsDecodeError('utf8', s, 'method name is not well-formed UTF-8');
  let ascii = true;
  for (let i = s; i < s + n; i++) {
    if (b[i]! >= 0x80) {
      ascii = false;
      break;
    }
  }
  const method = ascii
    ? String.fromCharCode.apply(null, b.subarray(s, s + n) as unknown as number[])
    : utf8Decoder.decode(b.subarray(s, s + n));
  methodCache[slot] = { bytes: b.slice(s, s + n), name: method };
  return { method, end: s + n };
}

function need(b: Uint8Array, n: number, what: string): void {
  if (b.length < n) throw new IcsDecodeError('truncated', b.length, `${what} frame shorter than its ${n}-byte header`);
}

function exact(b: Uint8Array, n: number, what: string): void {
  need(b, n, what);
  if (b.length > n) throw new IcsDecodeError('trailing-bytes', n, `${b.length - n} bytes after a ${what} frame`);
}

function flags(b: Uint8Array, allowed: number): number {
  const f = b[1]!;
  if ((f & ~allowed) !== 0) bad(1, `undefined flag bits 0x${(f & ~allowed).toString(16)}`);
  return f;
}

function channelAndService(b: Uint8Array): { channel: number; service: number } {
  const channel = u16(b, 2);
  const service = u32(b, 4);
  if (service >>> 16 !== channel) bad(4, 'service does not belong to the channel (upper 16 bits differ)');
  return { channel, service };
}

function readId(b: Uint8Array, p: number): number {
  const id = u32(b, p);
  if (id === 0) bad(p, 'id 0 is not a valid id');
  return id;
}

/** A decoded frame and the out-of-line references its body holds. */
export interface DecodedFrame {
  readonly frame: IcsFrame;
  /** The body's BulkRefs in the order they were built (found while decoding: nobody walks the body again for them); empty for most frames. */
  readonly bulkRefs: readonly BulkRef[];
}

const NO_REFS: readonly BulkRef[] = Object.freeze([]);

/**
 * Decodes one frame from untrusted bytes (exactly one frame: the transport
 * already cut it out). Throws only IcsDecodeError; `limits` apply to the
 * body and default to DEFAULT_DECODE_LIMITS.
 */
export function decodeFrame(bytes: Uint8Array, limits?: Partial<DecodeLimits>): DecodedFrame {
  const found: BulkRef[] = [];
  const frame = readFrame(bytes, limits, found);
  return { frame, bulkRefs: found.length === 0 ? NO_REFS : found };
}

function readFrame(bytes: Uint8Array, limits: Partial<DecodeLimits> | undefined, bulkRefs: BulkRef[]): IcsFrame {
  const b = bytes;
  if (b.length < 2) throw new IcsDecodeError('truncated', b.length, 'frame shorter than its type and flags');
  switch (b[0]) {
    case FrameType.Request: {
      need(b, 17, 'Request');
      const f = flags(b, FLAG_PRIORITY | FLAG_HEADERS);
      const { channel, service } = channelAndService(b);
      const id = readId(b, 8);
      const timeoutMs = u32(b, 12);
      const { method, end: methodEnd } = readMethod(b, 16);
      let end = methodEnd;
      let headers: Record<string, string> | undefined;
      if ((f & FLAG_HEADERS) !== 0) ({ headers, end } = readHeaders(b, methodEnd));
      const body = readBody(b, end, b.length, resolveDecodeLimits(limits), bulkRefs);
      const frame: RequestFrame = {
        type: FrameType.Request,
        id,
        channel,
        service,
        method,
        priority: (f & FLAG_PRIORITY) !== 0,
        timeoutMs,
        body,
      };
      if (headers) frame.headers = headers;
      return frame;
    }
    case FrameType.OneWay: {
      need(b, 13, 'OneWay');
      const f = flags(b, FLAG_PRIORITY);
      const { channel, service } = channelAndService(b);
      const id = readId(b, 8);
      const { method, end } = readMethod(b, 12);
      const body = readBody(b, end, b.length, resolveDecodeLimits(limits), bulkRefs);
      const frame: OneWayFrame = {
        type: FrameType.OneWay,
        channel,
        service,
        id,
        method,
        priority: (f & FLAG_PRIORITY) !== 0,
        body,
      };
      return frame;
    }
    case FrameType.Response: {
      need(b, 8, 'Response');
      flags(b, 0);
      const status = u16(b, 2);
      if (status > 0xff || VALID_STATUS[status] !== 1) bad(2, `unknown status ${status}`);
      const id = readId(b, 4);
      const body = readBody(b, 8, b.length, resolveDecodeLimits(limits), bulkRefs);
      if (status !== WireStatus.OK) checkErrorBody(body, (m) => bad(8, m));
      const frame: ResponseFrame = { type: FrameType.Response, id, status: status as WireStatusCode, body };
      return frame;
    }
    case FrameType.Cancel: {
      exact(b, 8, 'Cancel');
      flags(b, 0);
      const status = u16(b, 2);
      if (status !== WireStatus.CANCELLED && status !== WireStatus.DEADLINE_EXCEEDED) {
        bad(2, `a Cancel carries CANCELLED or DEADLINE_EXCEEDED, not ${status}`);
      }
      const frame: CancelFrame = { type: FrameType.Cancel, id: readId(b, 4), status: status as CancelFrame['status'] };
      return frame;
    }
    case FrameType.Credit: {
      exact(b, 12, 'Credit');
      flags(b, 0);
      const frame: CreditFrame = { type: FrameType.Credit, channel: u16(b, 2), messages: u32(b, 4), bytes: u32(b, 8) };
      return frame;
    }
    case FrameType.BulkChunk: {
      need(b, 16, 'BulkChunk');
      const f = flags(b, FLAG_LAST);
      if (u16(b, 2) !== 0) bad(2, 'reserved field is not zero');
      const hi = u32(b, 8);
      if (hi > 0x1f_ffff) bad(8, 'offset beyond 2^53 - 1');
      const frame: BulkChunkFrame = {
        type: FrameType.BulkChunk,
        stream: u32(b, 4),
        offset: hi * TWO_32 + u32(b, 12),
        last: (f & FLAG_LAST) !== 0,
        data: b.subarray(16),
      };
      return frame;
    }
    case FrameType.BulkAbort: {
      exact(b, 8, 'BulkAbort');
      flags(b, 0);
      if (u16(b, 2) !== 0) bad(2, 'reserved field is not zero');
      const frame: BulkAbortFrame = { type: FrameType.BulkAbort, stream: u32(b, 4) };
      return frame;
    }
    case FrameType.Refused: {
      exact(b, 4, 'Refused');
      flags(b, 0);
      const reason = u16(b, 2);
      if (!VALID_REFUSED.has(reason)) bad(2, `unknown refusal reason ${reason}`);
      const frame: RefusedFrame = { type: FrameType.Refused, reason: reason as RefusedFrame['reason'] };
      return frame;
    }
    default:
      throw new IcsDecodeError('frame-type', 0, `unknown frame type ${b[0]}`);
  }
}
