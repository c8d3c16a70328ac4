/**
 * Out-of-line bulk data. A Uint8Array of at least `bulkThreshold` bytes in
 * a message body is replaced by a BulkRef (stream number, length); the
 * message goes on its own lane as usual, and once it has been handed to the
 * link its bytes follow as BulkChunk frames on the bulk lane, which takes
 * its turn with the channels round-robin. So a 100 MiB value never holds up
 * a small RPC by more than one chunk, and the receiver's memory is bounded by
 * its bulk budget and the bulk window.
 *
 * Sending copies each chunk once into its frame; receiving copies each chunk
 * once into the value's buffer, which is handed to the handler (or caller)
 * as is.
 */
import { BulkRef } from './wire/types.js';

/** A value being sent out of line. */
export interface OutStream {
  readonly stream: number;
  readonly data: Uint8Array;
  offset: number;
}

/** Sender side, per peer. */
export class BulkSender {
  private nextStream = 1;
  /** Streams whose message went out: their chunks are due, round-robin. */
  readonly active: OutStream[] = [];
  private turn = 0;

  /** Allocate a stream for `data` (its message has not been sent yet). */
  take(data: Uint8Array, into: OutStream[]): BulkRef {
    const stream = this.nextStream;
    this.nextStream = this.nextStream >= 0xffffffff ? 1 : this.nextStream + 1;
    into.push({ stream, data, offset: 0 });
    return new BulkRef(stream, data.byteLength);
  }

  activate(streams: readonly OutStream[]): void {
    for (const s of streams) this.active.push(s);
  }

  /** The next chunk of at most `max` bytes, round-robin over active streams. */
  nextChunk(max: number): { stream: number; offset: number; data: Uint8Array; last: boolean } | undefined {
    if (this.active.length === 0) return undefined;
    if (this.turn >= this.active.length) this.turn = 0;
    const s = this.active[this.turn]!;
    const offset = s.offset;
    const end = Math.min(s.data.byteLength, offset + max);
    s.offset = end;
    const last = end === s.data.byteLength;
    if (last) this.active.splice(this.turn, 1);
    else this.turn++;
    return { stream: s.stream, offset, data: s.data.subarray(offset, end), last };
  }

  /** Stop sending `streams`; returns the ones that had started (the receiver must hear of those). */
  abort(streams: readonly OutStream[]): number[] {
    const started: number[] = [];
    for (const s of streams) {
      const i = this.active.indexOf(s);
      if (i >= 0) {
        this.active.splice(i, 1);
        started.push(s.stream);
      }
    }
    return started;
  }

  clear(): void {
    this.active.length = 0;
  }
}

/** A value being received. */
interface InStream {
  readonly length: number;
  /** Undefined when the message was refused: its chunks are read and dropped. */
  buffer: Uint8Array | undefined;
  received: number;
  owner: IncomingBulk;
}

/** A message waiting for its out-of-line values. */
export interface IncomingBulk {
  missing: number;
  /** Runs once every stream is complete. */
  complete: () => void;
  /** Runs once if a stream is aborted or broken. */
  fail: (why: string) => void;
  done: boolean;
  streams: number[];
}

/** Receiver side, per peer. */
export class BulkReceiver {
  private readonly streams = new Map<number, InStream>();
  /** Bytes allocated for values still arriving or not yet handed over. */
  allocated = 0;

  constructor(private readonly budget: number) {}

  /**
   * Register the BulkRefs of a message. Returns false (and registers the
   * streams to be discarded) when they would exceed the budget.
   */
  expect(refs: BulkRef[], owner: IncomingBulk): boolean {
    const total = refs.reduce((n, r) => n + r.length, 0);
    const fits = this.allocated + total <= this.budget && refs.every((r) => !this.streams.has(r.stream));
    if (fits) this.allocated += total;
    for (const r of refs) {
      if (this.streams.has(r.stream)) continue;
      owner.streams.push(r.stream);
      // Not zero-filled: it is handed over only once every byte was received.
      const buffer = fits ? Buffer.allocUnsafeSlow(r.length) : undefined;
      this.streams.set(r.stream, { length: r.length, buffer, received: 0, owner });
      if (fits) owner.missing++;
    }
    // Empty values are complete at once.
    for (const r of refs) {
      const s = this.streams.get(r.stream);
      if (s && fits && s.length === 0) this.finishStream(r.stream, s);
    }
    return fits;
  }

  /** The buffer of a completed stream. */
  bufferOf(stream: number): Uint8Array | undefined {
    return this.completed.get(stream);
  }

  private readonly completed = new Map<number, Uint8Array>();

  /**
   * A chunk arrived. Returns the bytes consumed (for flow-control credit);
   * a chunk that does not fit its stream breaks the stream's message.
   */
  chunk(stream: number, offset: number, data: Uint8Array, last: boolean): number {
    const s = this.streams.get(stream);
    if (!s) return data.byteLength;
    if (offset !== s.received || offset + data.byteLength > s.length || (last && offset + data.byteLength !== s.length)) {
      this.breakStream(stream, s, 'a bulk chunk out of place');
      return data.byteLength;
    }
    if (s.buffer) s.buffer.set(data, offset);
    s.received += data.byteLength;
    if (s.received === s.length) {
      if (s.buffer) this.finishStream(stream, s);
      else this.streams.delete(stream);
    }
    return data.byteLength;
  }

  /** The sender abandoned a stream. */
  abort(stream: number): void {
    const s = this.streams.get(stream);
    if (s) this.breakStream(stream, s, 'the sender abandoned the bulk value');
  }

  /** Free the buffers of a delivered message (their ownership moved to the application). */
  release(owner: IncomingBulk): void {
    for (const id of owner.streams) {
      const s = this.streams.get(id);
      const b = this.completed.get(id);
      if (b) {
        this.completed.delete(id);
        this.allocated -= b.byteLength;
      } else if (s?.buffer) {
        this.allocated -= s.length;
      }
      this.streams.delete(id);
    }
  }

  /** Drop everything (nodedown, link loss). */
  clear(): void {
    const owners = new Set<IncomingBulk>();
    for (const s of this.streams.values()) owners.add(s.owner);
    this.streams.clear();
    this.completed.clear();
    this.allocated = 0;
    for (const o of owners) {
      if (!o.done) {
        o.done = true;
        o.fail('the link carrying its bulk values was lost');
      }
    }
  }

  get activeStreams(): number {
    return this.streams.size;
  }

  private finishStream(stream: number, s: InStream): void {
    this.streams.delete(stream);
    this.completed.set(stream, s.buffer!);
    const o = s.owner;
    o.missing--;
    if (o.missing === 0 && !o.done) {
      o.done = true;
      o.complete();
    }
  }

  private breakStream(stream: number, s: InStream, why: string): void {
    const o = s.owner;
    for (const id of o.streams) {
      const other = this.streams.get(id);
      if (other?.buffer) this.allocated -= other.length;
      const b = this.completed.get(id);
      if (b) this.allocated -= b.byteLength;
      this.completed.delete(id);
      // Keep unknown-size bookkeeping away: later chunks are simply ignored.
      this.streams.delete(id);
    }
    void stream;
    if (!o.done) {
      o.done = true;
      o.fail(why);
    }
  }
}

/**
 * Visit the BulkRefs in `body`, replacing each with what `visit` returns
 * (in place: decoded bodies are fresh objects).
 */
function walkBulk(body: unknown, visit: (ref: BulkRef) => unknown): unknown {
  if (body instanceof BulkRef) return visit(body);
  const stack: unknown[] = [body];
  while (stack.length > 0) {
    const node = stack.pop();
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const v: unknown = node[i];
        if (v instanceof BulkRef) node[i] = visit(v);
        else if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array)) stack.push(v);
      }
    } else if (typeof node === 'object' && node !== null && !(node instanceof Uint8Array)) {
      const rec = node as Record<string, unknown>;
      for (const k of Object.keys(rec)) {
        const v = rec[k];
        if (v instanceof BulkRef) rec[k] = visit(v);
        else if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array)) stack.push(v);
      }
    }
  }
  return body;
}

/** Replace the BulkRefs in `body` with their received buffers. */
export function substituteBulk(body: unknown, lookup: (ref: BulkRef) => Uint8Array | undefined): unknown {
  return walkBulk(body, (ref) => lookup(ref) ?? null);
}

/** The BulkRefs in `body`, left in place. */
export function collectBulkRefs(body: unknown): BulkRef[] {
  const out: BulkRef[] = [];
  walkBulk(body, (ref) => (out.push(ref), ref));
  return out;
}
