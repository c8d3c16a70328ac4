/**
 * Framing: every frame on the wire is a 4-byte big-endian header followed
 * by its body. Bit 31 of the header marks a control frame (a type byte and
 * a small body, at most MAX_CONTROL_SIZE bytes); bits 0..30 are the body
 * length. Data frames carry the upper layer's bytes unchanged.
 *
 * The decoder is pure (no I/O, no timers) so it can be fuzzed on its own.
 * Guarantees:
 * - a length is checked against its limit as soon as the 4 header bytes are
 *   in, before any body byte is buffered or allocated;
 * - a frame that lies inside one pushed chunk is returned as a view of that
 *   chunk (no copy); only a frame spanning chunks is copied, once, into a
 *   buffer of exactly its length;
 * - after it throws, the decoder stays failed and throws the same error.
 */
import { ClusterInfraError, FrameTooLargeError, MalformedFrameError } from '@clusterinfra/core';
import { CONTROL_BIT, HEADER_SIZE, LENGTH_MASK, MAX_CONTROL_SIZE } from './constants.js';

export type DecodedFrame =
  | { readonly kind: 'data'; readonly data: Uint8Array }
  | { readonly kind: 'control'; readonly type: number; readonly body: Uint8Array };

export interface FrameDecoderOptions {
  /** Largest data frame accepted. */
  maxFrameSize: number;
  /** Whether data frames are allowed at all (false during the handshake). @default true */
  allowData?: boolean;
  /** Largest control frame (type byte + body). @default MAX_CONTROL_SIZE */
  maxControlSize?: number;
}

const EMPTY = new Uint8Array(0);

export class FrameDecoder {
  /** Largest data frame accepted; may be changed between frames (e.g. after the handshake). */
  maxFrameSize: number;
  /** Whether data frames are accepted; may be changed between frames. */
  allowData: boolean;
  readonly maxControlSize: number;

  private readonly queue: Uint8Array[] = [];
  private pos = 0; // read position in queue[0]
  private readonly header = new Uint8Array(HEADER_SIZE);
  private headerFill = 0;
  private inBody = false;
  private control = false;
  private need = 0; // body bytes of the current frame
  private body: Uint8Array | undefined; // only for a body that spans chunks
  private bodyFill = 0;
  private failure: ClusterInfraError | undefined;
  private completedCount = 0;
  private buffered = 0;

  constructor(options: FrameDecoderOptions) {
    this.maxFrameSize = options.maxFrameSize;
    this.allowData = options.allowData ?? true;
    this.maxControlSize = options.maxControlSize ?? MAX_CONTROL_SIZE;
  }

  /** True when part of a frame (header or body) has arrived and the rest has not. */
  get partial(): boolean {
    return this.headerFill > 0 || this.inBody || this.buffered > 0;
  }

  /** Frames returned so far; identifies which frame is the partial one. */
  get completed(): number {
    return this.completedCount;
  }

  /** Bytes pushed and not yet consumed into a frame or a partial header/body. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Whether the decoder threw; it stays failed. */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  /**
   * Take out the bytes not yet read into a frame, at a frame boundary (the
   * handshake hands what follows its last message to the record layer).
   */
  drain(): Uint8Array[] {
    if (this.headerFill > 0 || this.inBody) throw new MalformedFrameError('handshake ended inside a frame');
    const out = this.queue.splice(0);
    if (out.length > 0 && this.pos > 0) out[0] = out[0]!.subarray(this.pos);
    this.pos = 0;
    this.buffered = 0;
    return out;
  }

  /** Append bytes; call `next()` until it returns undefined to take the frames out. */
  feed(chunk: Uint8Array): void {
    if (this.failure) throw this.failure;
    if (chunk.byteLength === 0) return;
    // A plain view: frames handed out are Uint8Arrays, not Buffers.
    this.queue.push(
      chunk.constructor === Uint8Array ? chunk : new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength),
    );
    this.buffered += chunk.byteLength;
  }

  /** Append bytes and return every frame they complete. */
  push(chunk: Uint8Array): DecodedFrame[] {
    this.feed(chunk);
    const out: DecodedFrame[] = [];
    for (let f = this.next(); f !== undefined; f = this.next()) out.push(f);
    return out;
  }

  /** The next whole frame, or undefined when more bytes are needed. Throws a typed error on bad input. */
  next(): DecodedFrame | undefined {
    const payload = this.take();
    if (payload === undefined) return undefined;
    if (!this.takenControl) return { kind: 'data', data: payload };
    return { kind: 'control', type: payload[0]!, body: payload.subarray(1) };
  }

  /** Whether the frame `take()` returned last is a control frame (its payload: type byte, then body). */
  takenControl = false;

  /**
   * `next()` without an object per frame (the link's read loop): the next
   * whole frame's payload, a data frame's body or a control frame's type
   * byte and body (`takenControl` says which), or undefined when more bytes
   * are needed. Throws a typed error on bad input.
   */
  take(): Uint8Array | undefined {
    if (this.failure) throw this.failure;
    if (!this.inBody) {
      if (!this.readHeader()) return undefined;
      if (this.need === 0) {
        // Only data frames may be empty: readHeader refuses an empty control frame.
        this.inBody = false;
        this.completedCount++;
        this.takenControl = false;
        return EMPTY;
      }
    }
    const payload = this.readBody();
    if (payload === undefined) return undefined;
    this.inBody = false;
    this.completedCount++;
    this.takenControl = this.control;
    return payload;
  }

  private fail(err: ClusterInfraError): never {
    this.failure = err;
    this.queue.length = 0;
    this.body = undefined;
    this.buffered = 0;
    throw err;
  }

  /** Fill the header; when complete, validate it and set up the body. */
  private readHeader(): boolean {
    let value: number;
    const head = this.queue[0];
    if (this.headerFill === 0 && head !== undefined && head.byteLength - this.pos >= HEADER_SIZE) {
      const p = this.pos;
      value = ((head[p]! << 24) | (head[p + 1]! << 16) | (head[p + 2]! << 8) | head[p + 3]!) >>> 0;
      this.consume(HEADER_SIZE);
    } else {
      while (this.headerFill < HEADER_SIZE) {
        const chunk = this.queue[0];
        if (chunk === undefined) return false;
        const n = Math.min(HEADER_SIZE - this.headerFill, chunk.byteLength - this.pos);
        this.header.set(chunk.subarray(this.pos, this.pos + n), this.headerFill);
        this.headerFill += n;
        this.consume(n);
      }
      const h = this.header;
      value = ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
      this.headerFill = 0;
    }
    const control = value >= CONTROL_BIT;
    const length = value & LENGTH_MASK;
    if (control) {
      if (length === 0) this.fail(new MalformedFrameError('control frame without a type byte'));
      if (length > this.maxControlSize)
        this.fail(new MalformedFrameError(`control frame of ${length} bytes exceeds ${this.maxControlSize}`));
    } else {
      if (!this.allowData) this.fail(new MalformedFrameError('data frame before the handshake completed'));
      if (length > this.maxFrameSize) this.fail(new FrameTooLargeError(length, this.maxFrameSize));
    }
    this.control = control;
    this.need = length;
    this.inBody = true;
    this.body = undefined;
    this.bodyFill = 0;
    return true;
  }

  /** The whole body, as a view when it lies in one chunk, else copied once. */
  private readBody(): Uint8Array | undefined {
    const head = this.queue[0];
    if (this.body === undefined) {
      if (head === undefined) return undefined;
      if (head.byteLength - this.pos >= this.need) {
        const view = head.subarray(this.pos, this.pos + this.need);
        this.consume(this.need);
        return view;
      }
      // Not zero-filled: it is handed out only once every byte was copied in.
      this.body = new Uint8Array(Buffer.allocUnsafeSlow(this.need).buffer, 0, this.need);
    }
    const body = this.body;
    while (this.bodyFill < this.need) {
      const chunk = this.queue[0];
      if (chunk === undefined) return undefined;
      const n = Math.min(this.need - this.bodyFill, chunk.byteLength - this.pos);
      body.set(chunk.subarray(this.pos, this.pos + n), this.bodyFill);
      this.bodyFill += n;
      this.consume(n);
    }
    this.body = undefined;
    return body;
  }

  private consume(n: number): void {
    this.pos += n;
    this.buffered -= n;
    if (this.pos >= this.queue[0]!.byteLength) {
      this.queue.shift();
      this.pos = 0;
    }
  }
}

/** Write a data-frame header for `length` at `offset`. */
export function writeDataHeader(target: Uint8Array, offset: number, length: number): void {
  target[offset] = (length >>> 24) & 0x7f;
  target[offset + 1] = (length >>> 16) & 0xff;
  target[offset + 2] = (length >>> 8) & 0xff;
  target[offset + 3] = length & 0xff;
}

/** A whole control frame: header, type byte, body. */
export function encodeControl(type: number, body: Uint8Array = EMPTY): Buffer {
  const length = 1 + body.byteLength;
  if (length > MAX_CONTROL_SIZE) throw new MalformedFrameError(`control frame of ${length} bytes is too long`);
  const out = Buffer.allocUnsafe(HEADER_SIZE + length);
  out.writeUInt32BE((CONTROL_BIT | length) >>> 0, 0);
  out[HEADER_SIZE] = type;
  out.set(body, HEADER_SIZE + 1);
  return out;
}

/** A whole data frame (header + copy of `data`); for tests and raw clients. */
export function encodeDataFrame(data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + data.byteLength);
  writeDataHeader(out, 0, data.byteLength);
  out.set(data, HEADER_SIZE);
  return out;
}
