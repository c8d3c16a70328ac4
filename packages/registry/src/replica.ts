/**
 * The replica: every node's copy of the map, as a pure state machine (no IO,
 * no timers, no awaits; DESIGN §4.6). The driver feeds it snapshots and
 * changes as they arrive and delivers the events it returns.
 *
 * Invariants:
 * - The map is always the result of one history up to (epoch, seq): a
 *   snapshot, then that epoch's changes 1, 2, 3, … applied in order with no
 *   gap and none twice. So two replicas at the same (epoch, seq) hold the
 *   same map, and the one at the higher (epoch, seq) holds the newer one.
 * - (epoch, seq) only grows.
 * - Nothing from an epoch below `fence` is applied: `fence` rises when a
 *   new sequencer pulls this replica's data, so a stale sequencer that still
 *   sends is ignored from that moment.
 * - At most `maxBuffered` changes wait for a gap to fill or a snapshot to
 *   arrive; past that, a change is refused and the replica must resync.
 */
import { registryCanaries } from './canaries.js';
import { type Change, type Entry, type RegistryEvent, revision, type Snapshot } from './types.js';

export type ReceiveStatus =
  /** Applied now, or already (a duplicate). */
  | 'applied'
  /** Waits for an earlier change or for this epoch's snapshot. */
  | 'buffered'
  /** From an epoch this replica no longer follows (below its fence or its epoch). */
  | 'stale'
  /** The buffer is full: this replica needs a snapshot. */
  | 'overflow';

export interface Step {
  status: ReceiveStatus;
  /** Events to deliver, in order. */
  events: RegistryEvent[];
}

export class ReplicaState {
  /** The history this replica follows: the sequencer epoch of its last snapshot, and the last change applied. */
  epoch = 0;
  seq = 0;
  /** Highest epoch of a sequencer that pulled this replica's data or sent it a snapshot. */
  fence = 0;
  readonly entries = new Map<string, Entry>();
  /** Changes that arrived early, by `epoch:seq`. */
  private readonly buffer = new Map<string, Change>();

  constructor(private readonly maxBuffered: number) {}

  /** The revision reached: only grows. */
  get revision(): number {
    return revision(this.epoch, this.seq);
  }

  get installed(): boolean {
    return this.epoch > 0;
  }

  get buffered(): number {
    return this.buffer.size;
  }

  /** True once change (epoch, seq) is part of this replica's map. */
  hasApplied(epoch: number, seq: number): boolean {
    return this.epoch === epoch && this.seq >= seq;
  }

  /** True when change (epoch, seq) can no longer be applied here (this replica moved on, or dropped it). */
  abandoned(epoch: number, seq: number): boolean {
    if (epoch < this.fence || epoch < this.epoch) return true;
    return !this.hasApplied(epoch, seq) && !this.buffer.has(`${epoch}:${seq}`);
  }

  /**
   * Forget the position (epoch, seq, fence), keep the map: the next
   * snapshot installs whatever its numbers. For when the cluster's history
   * started again and key-service epochs with it (see Registry), the only
   * time the revision may go down.
   */
  rebase(): void {
    this.epoch = 0;
    this.seq = 0;
    this.fence = 0;
    this.buffer.clear();
  }

  /**
   * Forget the changes waiting in the buffer: they were sent to a former
   * incarnation of this node, maybe in a former cluster history, where the
   * same (epoch, seq) named another change (see Registry).
   */
  dropBuffered(): void {
    this.buffer.clear();
  }

  /** A new sequencer of `epoch` pulls our data: from now on, nothing older is applied. */
  raiseFence(epoch: number): void {
    if (epoch <= this.fence) return;
    this.fence = epoch;
    for (const [k, c] of this.buffer) if (c.epoch < epoch) this.buffer.delete(k);
  }

  /** This replica's whole state, for a new sequencer's rebuild. */
  snapshot(): Snapshot {
    return { epoch: this.epoch, seq: this.seq, entries: [...this.entries.values()] };
  }

  /**
   * Replace the map with a snapshot, unless it is older than what this
   * replica has (same epoch, lower seq) or below its fence. Returns the
   * differences as `sync` events, then whatever buffered changes now apply.
   */
  install(snap: Snapshot): RegistryEvent[] {
    if (snap.epoch < this.fence || snap.epoch < this.epoch || (snap.epoch === this.epoch && snap.seq <= this.seq && this.installed)) return [];
    const events: RegistryEvent[] = [];
    const next = new Map<string, Entry>();
    for (const e of snap.entries) next.set(e.key, e);
    const at = revision(snap.epoch, snap.seq);
    for (const [key, previous] of this.entries) {
      if (!next.has(key)) events.push({ type: 'delete', key, version: at, previous, cause: 'sync' });
    }
    for (const [key, e] of next) {
      const previous = this.entries.get(key);
      if (previous && previous.version === e.version) continue;
      events.push(putEvent(e, previous, 'sync'));
    }
    this.entries.clear();
    for (const [k, e] of next) this.entries.set(k, e);
    this.epoch = snap.epoch;
    this.seq = snap.seq;
    this.fence = Math.max(this.fence, snap.epoch);
    for (const [k, c] of this.buffer) if (c.epoch < this.epoch || (c.epoch === this.epoch && c.seq <= this.seq)) this.buffer.delete(k);
    this.drain(events);
    return events;
  }

  /** One change from a sequencer. */
  receive(c: Change): Step {
    if (c.epoch < this.fence || c.epoch < this.epoch) return { status: 'stale', events: [] };
    if (c.epoch === this.epoch && c.seq <= this.seq) return { status: 'applied', events: [] };
    if (registryCanaries.applyOutOfOrder && c.epoch === this.epoch) {
      const planted: RegistryEvent[] = [];
      this.apply(c, planted);
      return { status: 'applied', events: planted };
    }
    const k = `${c.epoch}:${c.seq}`;
    if (!this.buffer.has(k)) {
      if (this.buffer.size >= this.maxBuffered) return { status: 'overflow', events: [] };
      this.buffer.set(k, c);
    }
    const events: RegistryEvent[] = [];
    this.drain(events);
    return { status: this.hasApplied(c.epoch, c.seq) ? 'applied' : 'buffered', events };
  }

  /** Apply buffered changes that follow on, in order. */
  private drain(events: RegistryEvent[]): void {
    if (!this.installed) return;
    for (;;) {
      const k = `${this.epoch}:${this.seq + 1}`;
      const c = this.buffer.get(k);
      if (!c) return;
      this.buffer.delete(k);
      this.apply(c, events);
    }
  }

  private apply(c: Change, events: RegistryEvent[]): void {
    this.seq = c.seq;
    const version = revision(c.epoch, c.seq);
    const previous = this.entries.get(c.key);
    if (c.kind === 'put') {
      const e: Entry = { key: c.key, value: c.value ?? null, version, ...(c.owner ? { owner: c.owner } : {}) };
      this.entries.set(c.key, e);
      events.push(putEvent(e, previous, 'write'));
    } else if (previous) {
      this.entries.delete(c.key);
      events.push({ type: 'delete', key: c.key, version, previous, cause: c.cause });
    }
  }
}

export function putEvent(e: Entry, previous: Entry | undefined, cause: 'write' | 'sync' | 'initial'): RegistryEvent {
  return { type: 'put', key: e.key, value: e.value, version: e.version, ...(e.owner ? { owner: e.owner } : {}), ...(previous ? { previous } : {}), cause };
}
