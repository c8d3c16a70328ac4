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

/** Frame contents up to this size are appended to the batched hash input. */
const INLINE_CONTENT = 256;
/** Hand the batched hash input over once it is this long. */
const FLUSH_AT = 64 * 1024;

export type TraceInput = Omit<TraceEntry, 'index' | 'at'>;

export class Trace {
  private readonly ring: (TraceEntry | undefined)[];
  private count = 0;
  private readonly hash: Hash = createHash('sha256');
  /** Hash input not yet handed to `hash`. */
  private pending = '';

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
    // Hash input is batched in a string (one native call per 64 KiB, not per
    // entry); small contents ride along as latin1, large ones go in directly.
    this.pending += `${at}|${input.event}|${input.from ?? ''}|${input.to ?? ''}|${input.link ?? ''}|${input.frame ?? ''}|${input.size ?? ''}|${input.detail ?? ''}\n`;
    if (content !== undefined && content.byteLength > 0) {
      if (content.byteLength <= INLINE_CONTENT) {
        this.pending += Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString('latin1');
      } else {
        this.flush();
        this.hash.update(content);
      }
    }
    if (this.pending.length >= FLUSH_AT) this.flush();
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
    if (this.pending.length === 0) return;
    this.hash.update(this.pending);
    this.pending = '';
  }
}
