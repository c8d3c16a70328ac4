/**
 * The network's trace: a compact record of what the network did, kept
 * bounded (the last `limit` entries in a ring) and summarised by a running
 * SHA-256 over every entry ever recorded, so two runs can be compared by one
 * string however long they ran.
 */
import { createHash, type Hash } from 'node:crypto';
import { InvalidOptionError } from '@clusterinfra/core';

/**
 * What happened. Frame events: `deliver` (handed to the receiving link),
 * `drop` (lost to `dropRate`), `duplicate`, `reorder`, `blackhole` (lost to a
 * partition), `hold` (held by `pause`), `discard` (arrived at a link that is
 * gone). Link and handshake events: `connect`, `accept`, `refuse`, `reject`,
 * `fin`, `rst`, `close`. Fault changes: `partition`, `heal`, `isolate`,
 * `faults`, `kill`, `crash`, `pause`, `resume`.
 */
export type TraceEvent =
  | 'deliver'
  | 'drop'
  | 'duplicate'
  | 'reorder'
  | 'blackhole'
  | 'hold'
  | 'discard'
  | 'connect'
  | 'accept'
  | 'refuse'
  | 'reject'
  | 'fin'
  | 'rst'
  | 'close'
  | 'partition'
  | 'heal'
  | 'isolate'
  | 'faults'
  | 'kill'
  | 'crash'
  | 'pause'
  | 'resume';

export interface TraceEntry {
  /** Position in the whole trace, from 0. */
  readonly index: number;
  /** Clock time (`clock.now()`) of the event. */
  readonly at: number;
  readonly event: TraceEvent;
  /** Sending address (or the address a fault applies to). */
  readonly from?: string;
  /** Receiving address. */
  readonly to?: string;
  /** Number of the link pair, unique in the network. */
  readonly link?: number;
  /** Number of the frame within its link direction, from 1. */
  readonly frame?: number;
  /** Frame size in bytes. */
  readonly size?: number;
  /** Anything else: a close reason, a reject reason, fault settings. */
  readonly detail?: string;
}

/** Frame contents up to this size are copied into the batched hash input; larger ones go to the hash directly. */
const INLINE_CONTENT = 256;
/** Hand the batched hash input over once it is this long. */
const FLUSH_AT = 64 * 1024;
/** Room for one entry's fixed part: an event byte, a flags byte, four float64s, three string references, the content's length. */
const ENTRY_ROOM = 2 + 4 * 8 + 3 * 5 + 4;
/** Strings (addresses, mostly) given a number on first sight; past this many, the rest are written out in full each time. */
const MAX_INTERNED = 4096;

const EVENT_CODES: Record<TraceEvent, number> = {
  deliver: 1, drop: 2, duplicate: 3, reorder: 4, blackhole: 5, hold: 6, discard: 7, connect: 8, accept: 9, refuse: 10, reject: 11,
  fin: 12, rst: 13, close: 14, partition: 15, heal: 16, isolate: 17, faults: 18, kill: 19, crash: 20, pause: 21, resume: 22,
};

export type TraceInput = Omit<TraceEntry, 'index' | 'at'>;

export class Trace {
  private readonly ring: (TraceEntry | undefined)[];
  private count = 0;
  private readonly hash: Hash = createHash('sha256');
  /** Hash input not yet handed to `hash`: entries in a binary form (see hashInput). */
  private readonly batch = Buffer.allocUnsafe(FLUSH_AT + ENTRY_ROOM + INLINE_CONTENT);
  private used = 0;
  /** Strings already written out in full, by the number that stands for them since. */
  private readonly interned = new Map<string, number>();

  /** `hashed: false`: no running hash (digest() throws), only entries and the count. */
  constructor(
    private readonly limit: number,
    private readonly hashed = true,
  ) {
    this.ring = new Array<TraceEntry | undefined>(limit);
  }

  /** Entries recorded since the network was created. */
  get total(): number {
    return this.count;
  }

  /**
   * Record one entry. `content`, when given, is hashed too (not stored):
   * delivered bytes are part of what must replay identically.
   */
  record(at: number, input: TraceInput, content?: Uint8Array): TraceEntry;
  /** `wanted: false`: nobody reads the entry (no ring, no listener): only hash and count it. */
  record(at: number, input: TraceInput, content: Uint8Array | undefined, wanted: boolean): TraceEntry | undefined;
  record(at: number, input: TraceInput, content?: Uint8Array, wanted = true): TraceEntry | undefined {
    const entry: TraceEntry | undefined = wanted || this.limit > 0 ? { index: this.count, at, ...input } : undefined;
    if (this.hashed) this.hashInput(at, input, content);
    if (this.limit > 0) this.ring[this.count % this.limit] = entry!;
    this.count++;
    return entry;
  }

  private hashInput(at: number, input: TraceInput, content: Uint8Array | undefined): void {
    // One entry, in binary into a batch handed to the hash every 64 KiB (a
    // string per entry cost the simulator a sixth of its time): the event,
    // which fields are present, the numbers as float64, each string as a
    // reference to its first sight (written out in full then), and the
    // content's bytes when small (large contents go to the hash directly).
    const b = this.batch;
    let o = this.used;
    const { link, frame, size, from, to, detail } = input;
    b[o] = EVENT_CODES[input.event];
    b[o + 1] = (link !== undefined ? 1 : 0) | (frame !== undefined ? 2 : 0) | (size !== undefined ? 4 : 0) | (from !== undefined ? 8 : 0) | (to !== undefined ? 16 : 0) | (detail !== undefined ? 32 : 0);
    o = b.writeDoubleLE(at, o + 2);
    if (link !== undefined) o = b.writeDoubleLE(link, o);
    if (frame !== undefined) o = b.writeDoubleLE(frame, o);
    if (size !== undefined) o = b.writeDoubleLE(size, o);
    this.used = o;
    if (from !== undefined) this.putString(from);
    if (to !== undefined) this.putString(to);
    if (detail !== undefined) this.putString(detail);
    const length = content?.byteLength ?? 0;
    this.used = b.writeUInt32LE(length, this.used);
    if (length > 0) {
      if (length <= INLINE_CONTENT) {
        b.set(content!, this.used);
        this.used += length;
      } else {
        this.flush();
        this.hash.update(content!);
      }
    }
    if (this.used >= FLUSH_AT) this.flush();
  }

  /** A string of an entry: its number if seen before, else its UTF-8 bytes (handed over with the batch). */
  private putString(text: string): void {
    const known = this.interned.get(text);
    if (known !== undefined) {
      this.batch[this.used] = 0;
      this.used = this.batch.writeUInt32LE(known, this.used + 1);
      return;
    }
    if (this.interned.size < MAX_INTERNED) this.interned.set(text, this.interned.size);
    const bytes = Buffer.from(text, 'utf8');
    this.batch[this.used] = 1;
    this.used = this.batch.writeUInt32LE(bytes.byteLength, this.used + 1);
    this.flush();
    this.hash.update(bytes);
  }

  /** The kept entries, oldest first. */
  entries(): TraceEntry[] {
    const kept = Math.min(this.count, this.limit);
    const out: TraceEntry[] = [];
    for (let i = this.count - kept; i < this.count; i++) out.push(this.ring[i % this.limit]!);
    return out;
  }

  /** Hex SHA-256 over every entry recorded so far. */
  digest(): string {
    if (!this.hashed) throw new InvalidOptionError('traceHash', 'memory network: traceHash() needs the option traceHash: true (this network was made with traceHash: false)');
    this.flush();
    return this.hash.copy().digest('hex');
  }

  private flush(): void {
    if (this.used === 0) return;
    this.hash.update(this.batch.subarray(0, this.used));
    this.used = 0;
  }
}
