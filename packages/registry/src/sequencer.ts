/**
 * The sequencer: the key-service host's authoritative map, as a pure state
 * machine (DESIGN §4.6). It decides every write at once, in arrival order
 * (compare-and-set, limits, ownership), numbers it, and hands the change
 * back for the driver to apply and push; it never awaits.
 *
 * Invariants:
 * - One sequencer per key-service epoch (the key service's K1); its changes
 *   are numbered 1, 2, 3, … in that epoch, and each change's revision
 *   (epoch · 2^32 + seq) is above every revision of an older epoch.
 * - It starts from `freshest()` of what the survivors hold, so it contains
 *   every change that any node it pulled from had applied.
 * - The map stays within `maxEntries` and `maxBytes`; an entry within
 *   `maxEntryBytes`.
 * - An owned entry is only written for an owner the membership has Up, and
 *   is removed (a sequenced `owner-down` delete) when that owner goes down.
 */
import { registryCanaries } from './canaries.js';
import { RegistryError, type RegistryErrorCode } from './errors.js';
import { type Change, type Entry, type Owner, revision, SEQ_SPACE, type Snapshot, type WriteOp } from './types.js';
import { checkEntry, checkKey, entryBytes, type EntryLimits } from './values.js';

export interface MapLimits extends EntryLimits {
  maxEntries: number;
  maxBytes: number;
}

export type WriteResult =
  | { ok: true; change: Change; entry: Entry | undefined; existed: boolean }
  | { ok: false; code: RegistryErrorCode; message: string; current?: Entry | null };

/** Picks the state with the highest (epoch, seq): the newest prefix of the one history (see ReplicaState). */
export function freshest(states: Iterable<Snapshot>): Snapshot {
  let best: Snapshot = { epoch: 0, seq: 0, entries: [] };
  if (registryCanaries.stalestRebuild) return [...states].sort((a, b) => revision(a.epoch, a.seq) - revision(b.epoch, b.seq))[0] ?? best;
  for (const s of states) if (revision(s.epoch, s.seq) > revision(best.epoch, best.seq)) best = s;
  return best;
}

export class SequencerState {
  seq = 0;
  readonly entries = new Map<string, Entry>();
  private bytes = 0;
  /** Nodes that installed this epoch's snapshot and get its changes, with the incarnation that did. */
  private readonly subs = new Map<number, number>();
  /** The last incarnation of each node whose nodedown this sequencer ran: it is no member, its writes are refused. */
  private readonly downed = new Map<number, number>();

  constructor(
    readonly epoch: number,
    base: Snapshot,
    private readonly limits: MapLimits,
  ) {
    if (!Number.isInteger(epoch) || epoch < 1 || epoch >= 2 ** 21) throw new RangeError(`epoch ${epoch} out of range`);
    for (const e of base.entries) {
      this.entries.set(e.key, e);
      this.bytes += entryBytes(e.key, e.value);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  get totalBytes(): number {
    return this.bytes;
  }

  snapshot(): Snapshot {
    return { epoch: this.epoch, seq: this.seq, entries: [...this.entries.values()] };
  }

  subscribe(node: number, incarnation: number): Snapshot {
    this.subs.set(node, incarnation);
    return this.snapshot();
  }

  /** Drop a subscriber (only the incarnation given, when one is). */
  unsubscribe(node: number, incarnation?: number): void {
    if (incarnation === undefined || this.subs.get(node) === incarnation) this.subs.delete(node);
  }

  isSubscribed(node: number, incarnation: number): boolean {
    return this.subs.get(node) === incarnation;
  }

  /** Subscribers and the incarnation of each. */
  subscribers(): [node: number, incarnation: number][] {
    return [...this.subs.entries()];
  }

  /** This incarnation went down (its nodedown ran here): it gets no changes and may not write. */
  wentDown(c: Owner): boolean {
    return this.downed.get(c.node) === c.incarnation;
  }

  /**
   * Decide one write. `ownerLive` says whether the caller's incarnation is
   * Up in the membership (only asked of owned puts); `callerDown` whether
   * the membership has it declared down.
   *
   * A caller declared down is refused whatever it writes: its nodedown
   * unsubscribed it, so the write would be acknowledged without the
   * writer having it (sim seed 3079 at 5 nodes, registry, voters
   * 'candidates': a node that declared itself down still wrote while it
   * rejoined).
   */
  write(op: WriteOp, caller: Owner, ownerLive: boolean, callerDown = false): WriteResult {
    if (callerDown || this.wentDown(caller)) {
      return { ok: false, code: 'REGISTRY_ERR_OWNER_DOWN', message: `node ${caller.node} incarnation ${caller.incarnation} was declared down: it cannot write` };
    }
    try {
      if (op.kind === 'put') checkEntry(op.key, op.value, this.limits);
      else checkKey(op.key, this.limits);
    } catch (err) {
      const e = err as RegistryError;
      return { ok: false, code: e.registryCode, message: e.message };
    }
    const current = this.entries.get(op.key);
    if (op.expectVersion !== undefined && (current?.version ?? 0) !== op.expectVersion) {
      return {
        ok: false,
        code: 'REGISTRY_ERR_CONFLICT',
        message: `${JSON.stringify(op.key)} is at version ${current?.version ?? 0}, not ${op.expectVersion}`,
        current: current ?? null,
      };
    }
    if (op.kind === 'delete') {
      if (!current) return { ok: true, change: this.next({ kind: 'delete', key: op.key, cause: 'write' }), entry: undefined, existed: false };
      this.remove(current);
      return { ok: true, change: this.next({ kind: 'delete', key: op.key, cause: 'write' }), entry: undefined, existed: true };
    }
    if (op.owned && !ownerLive) {
      return { ok: false, code: 'REGISTRY_ERR_OWNER_DOWN', message: `node ${caller.node} incarnation ${caller.incarnation} is not Up: it cannot own entries` };
    }
    const size = entryBytes(op.key, op.value);
    const growth = size - (current ? entryBytes(current.key, current.value) : 0);
    if (!current && this.entries.size >= this.limits.maxEntries) {
      return { ok: false, code: 'REGISTRY_ERR_FULL', message: `the map holds maxEntries (${this.limits.maxEntries}) entries` };
    }
    if (this.bytes + growth > this.limits.maxBytes) {
      return { ok: false, code: 'REGISTRY_ERR_FULL', message: `the map would hold ${this.bytes + growth} bytes, more than maxBytes (${this.limits.maxBytes})` };
    }
    if (this.seq + 1 >= SEQ_SPACE) return { ok: false, code: 'REGISTRY_ERR_FULL', message: 'this epoch has used every sequence number' };
    const owner = op.owned ? { node: caller.node, incarnation: caller.incarnation } : undefined;
    const change = this.next({ kind: 'put', key: op.key, value: op.value, ...(owner ? { owner } : {}), cause: 'write' });
    const entry: Entry = { key: op.key, value: op.value, version: revision(this.epoch, change.seq), ...(owner ? { owner } : {}) };
    this.bytes += growth;
    this.entries.set(op.key, entry);
    return { ok: true, change, entry, existed: current !== undefined };
  }

  /**
   * Remove every owned entry whose owner is not live: sequenced deletes
   * with cause `owner-down`. Also used when a node goes down (with its
   * incarnation named dead) and when a new sequencer starts.
   */
  sweep(isLive: (owner: Owner) => boolean): Change[] {
    const out: Change[] = [];
    for (const e of [...this.entries.values()]) {
      if (!e.owner || isLive(e.owner)) continue;
      this.remove(e);
      out.push(this.next({ kind: 'delete', key: e.key, cause: 'owner-down' }));
    }
    return out;
  }

  /** Incarnation `incarnation` of `node` went down: it gets no more changes, and what it owned goes. */
  nodeDown(node: number, incarnation: number): Change[] {
    this.unsubscribe(node, incarnation);
    this.downed.set(node, incarnation);
    return this.sweep((o) => o.node !== node || o.incarnation !== incarnation);
  }

  private remove(e: Entry): void {
    this.entries.delete(e.key);
    this.bytes -= entryBytes(e.key, e.value);
  }

  private next(c: Omit<Change, 'epoch' | 'seq'>): Change {
    this.seq += 1;
    return { ...c, epoch: this.epoch, seq: this.seq };
  }
}
