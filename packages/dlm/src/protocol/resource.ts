/**
 * One resource at its master: the granted, conversion and waiting queues,
 * the value block, and the grant rules. Pure and synchronous: every
 * operation returns what happened (grants, refusals, blocking
 * notifications, releases) and the caller turns that into messages.
 *
 * The rules (VMS):
 * - A new request is granted at once only when nothing waits (no conversion,
 *   no request) and its mode is compatible with every granted lock;
 *   otherwise it joins the waiting queue (FIFO) or, with `noQueue`, is refused.
 * - A conversion is granted at once when it is a down-conversion, or when
 *   no other conversion waits and the new mode is compatible with every
 *   other granted lock; otherwise it joins the conversion queue (FIFO).
 * - After every change the conversion queue is served first, strictly in
 *   order; the waiting queue only once no conversion waits, strictly in order.
 * - Conversion deadlock: when the head of the conversion queue is blocked
 *   by the granted mode of a lock that itself waits in the conversion queue,
 *   neither can ever move; the later conversion is refused (the victim) and
 *   stays granted in its former mode.
 * - Every grant (conversions too) takes a new fencing token from `issue`,
 *   which only grows; a value block written by a PW or EX holder takes the
 *   writer's token as its version, so versions only grow too.
 */
import { canaries } from '../canaries.js';
import { compatible, isDownConversion, type LockMode, writesValue } from '../modes.js';

export interface ValueBlock {
  readonly value: Uint8Array | null;
  /** The fencing token of the grant whose holder wrote it; 0 when never written. */
  readonly version: number;
  /** False after a holder in PW or EX died (it may have been changing the value) until the next write. */
  readonly valid: boolean;
}

export const EMPTY_VALUE: ValueBlock = { value: null, version: 0, valid: true };

/** A lock as its resource master sees it. */
export interface MasterLock {
  readonly node: number;
  readonly incarnation: number;
  /** Unique per (node, incarnation). */
  readonly id: number;
  granted: LockMode | null;
  requested: LockMode | null;
  token: number;
  noQueue: boolean;
  /** The blocked mode this holder was last told about (one notification per mode). */
  notified: LockMode | null;
}

export type ResourceOutput =
  | { kind: 'grant'; lock: MasterLock; mode: LockMode; token: number; value: ValueBlock }
  | { kind: 'refuse'; lock: MasterLock; reason: 'would-block' | 'cancelled' | 'deadlock' }
  | { kind: 'blocking'; lock: MasterLock; mode: LockMode }
  | { kind: 'released'; lock: MasterLock };

export class Resource {
  /** Granted locks, converting ones included (their `requested` is set). */
  readonly granted: MasterLock[] = [];
  readonly converting: MasterLock[] = [];
  readonly waiting: MasterLock[] = [];
  value: ValueBlock = EMPTY_VALUE;

  constructor(
    readonly name: string,
    private readonly issue: () => number,
  ) {}

  get empty(): boolean {
    return this.granted.length === 0 && this.waiting.length === 0;
  }

  find(node: number, incarnation: number, id: number): MasterLock | undefined {
    const match = (l: MasterLock): boolean => l.id === id && l.node === node && l.incarnation === incarnation;
    return this.granted.find(match) ?? this.waiting.find(match);
  }

  /** A new lock (granted null, requested set). */
  request(lock: MasterLock): ResourceOutput[] {
    const out: ResourceOutput[] = [];
    const mode = lock.requested!;
    if (this.converting.length === 0 && this.waiting.length === 0 && this.fits(mode, undefined)) {
      this.grant(lock, out);
      this.granted.push(lock);
    } else if (lock.noQueue) {
      out.push({ kind: 'refuse', lock, reason: 'would-block' });
    } else {
      this.waiting.push(lock);
      this.notifyBlockers(out);
    }
    return out;
  }

  /** A conversion of a granted lock to `mode`, writing `value` first when it converts down from PW or EX. */
  convert(lock: MasterLock, mode: LockMode, noQueue: boolean, value?: Uint8Array | null): ResourceOutput[] {
    const out: ResourceOutput[] = [];
    const from = lock.granted!;
    if (value !== undefined && writesValue(from) && from !== mode && isDownConversion(from, mode)) this.write(lock, value);
    lock.requested = mode;
    if (isDownConversion(from, mode) || (this.converting.length === 0 && this.fits(mode, lock))) {
      this.grant(lock, out);
      // Weaker now: conversions and requests behind may move.
      this.pass(out);
    } else if (noQueue) {
      lock.requested = null;
      out.push({ kind: 'refuse', lock, reason: 'would-block' });
    } else {
      lock.noQueue = false;
      this.converting.push(lock);
      this.pass(out);
    }
    return out;
  }

  /** Release `lock` (granted, converting or still waiting), writing `value` when it held PW or EX. */
  release(lock: MasterLock, value?: Uint8Array | null): ResourceOutput[] {
    const out: ResourceOutput[] = [];
    if (value !== undefined && lock.granted && writesValue(lock.granted)) this.write(lock, value);
    this.remove(lock);
    out.push({ kind: 'released', lock });
    this.pass(out);
    return out;
  }

  /** Cancel a waiting request or conversion; nothing when it was granted already. */
  cancel(lock: MasterLock): ResourceOutput[] {
    const out: ResourceOutput[] = [];
    if (lock.granted === null) {
      this.remove(lock);
      out.push({ kind: 'refuse', lock, reason: 'cancelled' });
    } else if (lock.requested !== null) {
      this.converting.splice(this.converting.indexOf(lock), 1);
      lock.requested = null;
      out.push({ kind: 'refuse', lock, reason: 'cancelled' });
    } else {
      return out;
    }
    this.pass(out);
    return out;
  }

  /**
   * Drop the locks `gone` says belong to departed nodes (recovery), without
   * granting anything. A departed holder in PW or EX makes the value block
   * invalid. Returns the locks dropped.
   */
  prune(gone: (l: MasterLock) => boolean): MasterLock[] {
    const dropped = canaries.skipPrune ? [] : [...this.granted, ...this.waiting].filter(gone);
    for (const l of dropped) {
      if (l.granted && writesValue(l.granted)) this.value = { ...this.value, valid: false };
      this.remove(l);
    }
    return dropped;
  }

  /** Serve the queues: conversions first, then requests, each strictly in order; notify blockers. */
  pass(out: ResourceOutput[] = []): ResourceOutput[] {
    for (;;) {
      while (this.converting.length > 0 && this.fits(this.converting[0]!.requested!, this.converting[0])) {
        const c = this.converting.shift()!;
        this.grant(c, out);
      }
      if (this.converting.length === 0) {
        while (this.waiting.length > 0 && this.fits(this.waiting[0]!.requested!, undefined)) {
          const w = this.waiting.shift()!;
          this.grant(w, out);
          this.granted.push(w);
        }
      }
      // Requests restored by recovery with noQueue never wait.
      for (const w of this.waiting.filter((l) => l.noQueue)) {
        this.waiting.splice(this.waiting.indexOf(w), 1);
        out.push({ kind: 'refuse', lock: w, reason: 'would-block' });
      }
      const victim = this.conversionDeadlock();
      if (!victim) break;
      this.converting.splice(this.converting.indexOf(victim), 1);
      victim.requested = null;
      out.push({ kind: 'refuse', lock: victim, reason: 'deadlock' });
    }
    this.notifyBlockers(out);
    return out;
  }

  /** The later of two conversions that block each other, if the head is blocked by one. */
  private conversionDeadlock(): MasterLock | undefined {
    const head = this.converting[0];
    if (!head) return undefined;
    return this.converting.find((c) => c !== head && !compatible(c.granted!, head.requested!));
  }

  private fits(mode: LockMode, except: MasterLock | undefined): boolean {
    return canaries.grantIncompatible || this.granted.every((g) => g === except || compatible(g.granted!, mode));
  }

  private grant(lock: MasterLock, out: ResourceOutput[]): void {
    lock.granted = lock.requested;
    lock.requested = null;
    lock.noQueue = false;
    lock.notified = null;
    lock.token = this.issue();
    out.push({ kind: 'grant', lock, mode: lock.granted!, token: lock.token, value: this.value });
  }

  private write(lock: MasterLock, value: Uint8Array | null): void {
    this.value = { value, version: lock.token, valid: true };
  }

  private remove(lock: MasterLock): void {
    for (const q of [this.granted, this.converting, this.waiting]) {
      const i = q.indexOf(lock);
      if (i >= 0) q.splice(i, 1);
    }
  }

  /** Tell each holder whose granted mode blocks the first waiter (conversion first), once per mode. */
  private notifyBlockers(out: ResourceOutput[]): void {
    const head = this.converting[0] ?? this.waiting[0];
    if (!head) return;
    const mode = head.requested!;
    for (const g of this.granted) {
      if (g === head || compatible(g.granted!, mode) || g.notified === mode) continue;
      g.notified = mode;
      out.push({ kind: 'blocking', lock: g, mode });
    }
  }
}
