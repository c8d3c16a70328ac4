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
import type { ClusterInfraError } from '../errors/index.js';
import { BulkRef } from './wire/types.js';

/** A value being sent out of line. */
export interface OutStream {
  readonly stream: number;
  readonly data: Uint8Array;
  offset: number;
  /** Told when the last chunk was handed to the link (no error), or when the value was lost (the error). */
  settle?: (lost?: ClusterInfraError) => void;
}

/**
 * Settle once when every stream of a message was sent (`sent`), or at the
 * first one lost (`lost`): a one-way message is delivered only with all its
 * values, so its sender learns of it only then.
 */
export function watchStreams(streams: readonly OutStream[], sent: () => void, lost: (err: ClusterInfraError) => void): void {
  let left = streams.length;
  const settle = (err?: ClusterInfraError): void => {
    if (left <= 0) return;
    if (err) {
      left = 0;
      lost(err);
    } else if (--left === 0) sent();
  };
  for (const s of streams) s.settle = settle;
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
    if (last) {
      this.active.splice(this.turn, 1);
      s.settle?.();
    } else this.turn++;
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

  /** Drop every value still being sent; `lost` tells their senders why. */
  clear(lost: ClusterInfraError): void {
    const streams = this.active.splice(0);
    for (const s of streams) s.settle?.(lost);
  }
}

/** A value being received. */
interface InStream {
  readonly length: number;
  readonly buffer: Uint8Array;
  received: number;
  readonly owner: IncomingBulk;
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
  /** Bytes charged against the budgets for this message's values. */
  charged: number;
}

/** What out-of-line values may hold on this node, all peers together. */
export class BulkBudget {
  used = 0;
  constructor(readonly total: number) {}
}

/** Bounds of one peer's out-of-line values (see IcsOptions). */
export interface BulkReceiveLimits {
  /** Bytes charged per peer. */
  readonly perPeer: number;
  /** What a value costs at least, however short: a stream costs memory beyond its bytes. */
  readonly streamCost: number;
  /** Values pending per peer. */
  readonly maxStreams: number;
}

/**
 * Receiver side, per peer. Every value is charged `max(length, streamCost)`
 * against the peer's budget and the node's, from the moment its message
 * arrives until the message is delivered (the buffers then belong to the
 * application) or abandoned. A refused message registers nothing: chunks of
 * streams nobody expects are read and dropped.
 */
export class BulkReceiver {
  private readonly streams = new Map<number, InStream>();
  private readonly completed = new Map<number, Uint8Array>();
  /** Bytes charged for values still arriving or not yet handed over. */
  allocated = 0;

  constructor(
    private readonly limits: BulkReceiveLimits,
    private readonly node: BulkBudget,
  ) {}

  /**
   * Register the BulkRefs of a message, or say why they cannot be (nothing
   * is registered then).
   */
  expect(refs: readonly BulkRef[], owner: IncomingBulk): string | undefined {
    const { perPeer, streamCost, maxStreams } = this.limits;
    if (this.streams.size + this.completed.size + refs.length > maxStreams) {
      return `more than ${maxStreams} out-of-line values pending from one peer`;
    }
    let charge = 0;
    const ids = new Set<number>();
    for (const r of refs) {
      if (ids.has(r.stream) || this.streams.has(r.stream) || this.completed.has(r.stream)) return `bulk stream ${r.stream} is already in use`;
      ids.add(r.stream);
      charge += Math.max(r.length, streamCost);
    }
    if (this.allocated + charge > perPeer) return `out-of-line values of ${charge} bytes exceed the per-peer bulk budget (${perPeer})`;
    if (this.node.used + charge > this.node.total) return `out-of-line values of ${charge} bytes exceed the node's bulk budget (${this.node.total})`;
    this.allocated += charge;
    this.node.used += charge;
    owner.charged = charge;
    for (const r of refs) {
      owner.streams.push(r.stream);
      // Not zero-filled: it is handed over only once every byte was received.
      this.streams.set(r.stream, { length: r.length, buffer: Buffer.allocUnsafeSlow(r.length), received: 0, owner });
      owner.missing++;
    }
    // Empty values are complete at once.
    for (const r of refs) {
      const s = this.streams.get(r.stream);
      if (s && s.length === 0) this.finishStream(r.stream, s);
    }
    return undefined;
  }

  /** The buffer of a completed stream. */
  bufferOf(stream: number): Uint8Array | undefined {
    return this.completed.get(stream);
  }

  /**
   * A chunk arrived. Returns the bytes consumed (for flow-control credit);
   * a chunk that does not fit its stream breaks the stream's message.
   */
  chunk(stream: number, offset: number, data: Uint8Array, last: boolean): number {
    const s = this.streams.get(stream);
    if (!s) return data.byteLength;
    if (offset !== s.received || offset + data.byteLength > s.length || (last && offset + data.byteLength !== s.length)) {
      this.breakOwner(s.owner, 'a bulk chunk out of place');
      return data.byteLength;
    }
    s.buffer.set(data, offset);
    s.received += data.byteLength;
    if (s.received === s.length) this.finishStream(stream, s);
    return data.byteLength;
  }

  /** The sender abandoned a stream. */
  abort(stream: number): void {
    const s = this.streams.get(stream);
    if (s) this.breakOwner(s.owner, 'the sender abandoned the bulk value');
  }

  /** Free the buffers of a delivered message (their ownership moved to the application). */
  release(owner: IncomingBulk): void {
    for (const id of owner.streams) {
      this.completed.delete(id);
      this.streams.delete(id);
    }
    this.uncharge(owner);
  }

  /** Drop everything (nodedown, link loss). */
  clear(): void {
    const owners = new Set<IncomingBulk>();
    for (const s of this.streams.values()) owners.add(s.owner);
    this.streams.clear();
    this.completed.clear();
    this.node.used -= this.allocated;
    this.allocated = 0;
    for (const o of owners) {
      o.charged = 0;
      if (!o.done) {
        o.done = true;
        o.fail('the link carrying its bulk values was lost');
      }
    }
  }

  /** Values still arriving or complete but not yet delivered. */
  get pendingStreams(): number {
    return this.streams.size + this.completed.size;
  }

  private uncharge(owner: IncomingBulk): void {
    this.allocated -= owner.charged;
    this.node.used -= owner.charged;
    owner.charged = 0;
  }

  private finishStream(stream: number, s: InStream): void {
    this.streams.delete(stream);
    this.completed.set(stream, s.buffer);
    const o = s.owner;
    o.missing--;
    if (o.missing === 0 && !o.done) {
      o.done = true;
      o.complete();
    }
  }

  /** A stream of `o` broke: forget all its streams (later chunks are ignored) and fail it. */
  private breakOwner(o: IncomingBulk, why: string): void {
    for (const id of o.streams) {
      this.streams.delete(id);
      this.completed.delete(id);
    }
    this.uncharge(o);
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
