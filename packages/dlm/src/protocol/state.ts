/**
 * The lock manager of one node as a pure, synchronous state machine
 * (DESIGN §4.6): inputs are API calls, delivered messages and membership
 * rounds; outputs are effects (messages to send, operations to settle,
 * notifications) collected for the driver, which performs them and never
 * decides anything itself. Scripts in the tests drive several of these by
 * hand, without network or timers.
 *
 * Two roles live here:
 * - the *owner* side: this node's locks (`locks`), each with at most one
 *   operation under way (request, conversion, release, cancel);
 * - the *master* side: the resources this node masters (`resources`), with
 *   their queues, value blocks and the fencing-token counter.
 *
 * Rounds. Every change of the member set (a node coming up or going down)
 * starts a recovery round, numbered by the CLMS transition that changed it,
 * with the member set as of that transition: every node computes the same
 * (round, members) from the same history, and a node that hears of a higher
 * round from a peer adopts it from the message. At the start of a round each
 * member stops granting, drops the locks of departed nodes from what it
 * masters (exactly once: they are gone from its state afterwards), hands
 * each resource record (value block, queue order) to the resource's master
 * in the new member set, and reports each of its own locks to that master.
 * A master rebuilds its resources once it has every member's report, then
 * grants again and serves the messages it held back. Resource masters are
 * chosen by rendezvous hashing over the members, so every node agrees on
 * them without a directory lookup.
 *
 * Masters by role. A round may name a subset of its members as the only
 * ones that master resources (the driver's `masterRoles`): hashing and
 * re-mastering choose among them, every member still reports and locks. A
 * round with no such member is *masterless*: nothing can be granted, so
 * requests and conversions fail (`DLM_ERR_NO_MASTER`), a release is done at
 * once on the owner (no master keeps any state of it), granted locks stay
 * held and are reported to the first master of a later round. Records are
 * not kept through it: the value blocks are rebuilt from the holders, as
 * when a master dies.
 */
import { canaries } from '../canaries.js';
import type { DlmErrorCode } from '../errors.js';
import { isDownConversion, type LockMode, writesValue } from '../modes.js';
import { type LockReport, type Message, type ResourceRecord, WIRE_LIMITS } from './messages.js';
import { EMPTY_VALUE, type MasterLock, Resource, type ResourceOutput, type ValueBlock } from './resource.js';
import { masterOf } from './hash.js';

export interface Member {
  readonly node: number;
  readonly incarnation: number;
}

/** Fencing tokens of round r start at r · 2^32: above any token of an earlier round (see docs/dlm.md). */
export const TOKEN_ROUND_SPAN = 2 ** 32;

export interface GrantInfo {
  readonly mode: LockMode;
  readonly token: number;
  readonly vb: ValueBlock;
}

export type Effect =
  | { type: 'send'; to: number; msg: Message }
  | { type: 'settle'; op: number; id: number; ok: true; grant?: GrantInfo }
  | { type: 'settle'; op: number; id: number; ok: false; code: DlmErrorCode; message: string }
  | { type: 'blocking'; id: number; resource: string; mode: LockMode }
  | { type: 'lost'; id: number; resource: string }
  /** A conversion whose operation was cancelled was granted all the same: the lock is in `grant.mode` now. */
  | { type: 'changed'; id: number; grant: GrantInfo }
  /** This node, as owner, took a grant (the checkers' view of "who holds what") in `round`, its current round (the token's round). */
  | { type: 'granted'; id: number; resource: string; mode: LockMode; token: number; vb: ValueBlock; round: number }
  /** A departed node's lock dropped by the master that held it (exactly once). */
  | { type: 'departed'; node: number; incarnation: number; id: number; resource: string; mode: LockMode | null }
  | { type: 'recovered'; round: number; members: readonly Member[]; resources: number; departed: number }
  /** The machine reset (see `reset`): messages queued for peers before it mean nothing now. */
  | { type: 'reset' };

type Phase = 'idle' | 'requesting' | 'converting' | 'releasing' | 'cancelling';

interface LocalLock {
  readonly id: number;
  readonly resource: string;
  granted: LockMode | null;
  requested: LockMode | null;
  token: number;
  vb: ValueBlock;
  phase: Phase;
  noQueue: boolean;
  /** The operation to settle when the master answers. */
  op: number;
  /** Why a cancel was asked (the error the operation settles with when the master confirms it). */
  cancelCode?: DlmErrorCode;
  /** For a release, or a conversion down from PW/EX: the value block to write. */
  value?: Uint8Array;
}

export interface StateLimits {
  /** Locks this node may own at once. */
  maxLocks: number;
  /** Resources this node may master at once. */
  maxResources: number;
}

interface Received {
  locks: Array<LockReport & { node: number; incarnation: number }>;
  records: ResourceRecord[];
  done: boolean;
}

const key = (node: number, incarnation: number, id: number): string => `${node}:${incarnation}:${id}`;

export class DlmState {
  // ---- membership
  /** The current round (0: not a member yet). */
  round = 0;
  members: Member[] = [];
  /** The members that master resources this round: all of them unless the round names a subset. */
  masters: Member[] = [];
  /** Whether the round named its masters (then reports carry the list). */
  private mastersListed = false;
  /** Whether this node's master side finished the current round. */
  complete = false;
  /** The last round this node finished (rebuilt its resources in). */
  completedRound = 0;
  private incarnation = 0;
  private readonly masterCache = new Map<string, number>();

  // ---- owner side
  private readonly locks = new Map<number, LocalLock>();
  private nextId = 1;

  // ---- master side
  private resources = new Map<string, Resource>();
  /** The round in which this node became master of what is in `resources`. */
  private masterRound = 0;
  private nextToken = 0;
  /** Reports of the current round, by sending node. */
  private received = new Map<number, Received>();
  /** Messages for the current round that arrived before it was complete (served in order once it is). */
  private held: Array<{ from: Member; msg: Message }> = [];
  /** The cluster history this node's rounds belong to (undefined: not told). */
  private history: string | undefined;
  /** Reports of another history than ours, kept until we follow it (bounded; see `setHistory`). */
  private foreign: Array<{ from: Member; msg: Extract<Message, { t: 'report' }> }> = [];

  private effects: Effect[] = [];
  /** Messages to self, handled after the current input (never re-entrantly). */
  private inbox: Message[] = [];

  constructor(
    readonly self: number,
    private readonly limits: StateLimits,
  ) {}

  /**
   * Whether this node's membership has a quorum. Without one a master
   * grants nothing (it holds what it is sent, and rebuilds nothing): a
   * minority side must not hand out locks the majority may be handing out
   * too. Regained, it serves what it held.
   */
  setQuorum(ok: boolean): void {
    if (ok === this.quorum) return;
    this.quorum = ok;
    if (!ok) return;
    if (!this.complete && this.round > 0 && this.members.every((m) => this.received.get(m.node)?.done)) this.rebuild();
    else if (this.complete) this.serveHeld();
    this.drain();
  }

  get hasQuorum(): boolean {
    return this.quorum;
  }

  private quorum = true;

  /**
   * The cluster history (node.historyId) this node follows now, and its incarnation. Round
   * numbers start again in a new history, so a report is taken only in the history it names:
   * one of another history waits here until this node follows that history too, and is
   * dropped otherwise. Whatever this node held or mastered in rounds of another history
   * means nothing now (the cluster re-formed): it resets first. Those rounds may have come
   * from a peer's report before this node knew its history (see `onReport`).
   */
  setHistory(history: string, incarnation?: number): void {
    const another = history !== this.history;
    if (another && this.history !== undefined && this.round > 0) this.reset('DLM_ERR_LOCK_LOST', `node ${this.self} follows another cluster history (the cluster re-formed)`);
    // The incarnation before the waiting reports: one that starts a round must name this
    // incarnation (simulator seed 2209 at 5 nodes, voters 'candidates', D3).
    if (incarnation !== undefined) this.begin(incarnation);
    if (!another) return;
    this.history = history;
    const waiting = this.foreign;
    this.foreign = [];
    for (const f of waiting) if (f.msg.history === history) this.receive(f.from, f.msg);
  }

  /** This node's (new) incarnation: before its first round, and after a reset. */
  begin(incarnation: number): void {
    if (this.round === 0) this.incarnation = incarnation;
  }

  /** The effects queued since the last call, oldest first. */
  take(): Effect[] {
    const out = this.effects;
    this.effects = [];
    return out;
  }

  // ================================================================ inputs: API

  /** A new lock on `resource` in `mode`; returns its id. */
  request(op: number, resource: string, mode: LockMode, noQueue: boolean): number {
    if (this.locks.size >= this.limits.maxLocks) {
      this.fail(op, 0, 'DLM_ERR_LIMIT', `this node owns ${this.locks.size} locks (maxLocks)`);
      return 0;
    }
    if (this.masterless) {
      this.fail(op, 0, 'DLM_ERR_NO_MASTER', this.noMaster(resource));
      return 0;
    }
    const id = this.nextId++;
    const lock: LocalLock = { id, resource, granted: null, requested: mode, token: 0, vb: EMPTY_VALUE, phase: 'requesting', noQueue, op };
    this.locks.set(id, lock);
    this.toMaster(lock, { t: 'req', round: this.round, id, resource, mode, noQueue, convert: false });
    this.drain();
    return id;
  }

  /** Convert lock `id` to `mode`; `value` is written when it converts down from PW or EX. */
  convert(op: number, id: number, mode: LockMode, noQueue: boolean, value?: Uint8Array): void {
    const lock = this.idle(op, id);
    if (!lock) return;
    if (this.masterless) return this.fail(op, id, 'DLM_ERR_NO_MASTER', this.noMaster(lock.resource));
    lock.phase = 'converting';
    lock.requested = mode;
    lock.noQueue = noQueue;
    lock.op = op;
    lock.value = value;
    this.toMaster(lock, { t: 'req', round: this.round, id, resource: lock.resource, mode, noQueue, convert: true, ...(value ? { value } : {}) });
    this.drain();
  }

  /** Release lock `id`; `value` is written when it is held in PW or EX. */
  unlock(op: number, id: number, value?: Uint8Array): void {
    const lock = this.idle(op, id, true);
    if (!lock) return;
    if (this.masterless) return this.releasedHere(lock, op);
    lock.phase = 'releasing';
    lock.op = op;
    lock.value = value;
    this.toMaster(lock, { t: 'rel', round: this.round, id, resource: lock.resource, ...(value ? { value } : {}) });
    this.drain();
  }

  /**
   * Cancel the request or conversion under way on lock `id` (abort,
   * timeout, presumed deadlock): the operation fails with `code` at once,
   * even when the master cannot be reached, and the master is told. If the
   * master granted before it heard, the owner undoes it: a new lock is
   * released; a conversion is kept (the lock's mode says so, a `changed`
   * effect reports it).
   */
  cancel(id: number, code: DlmErrorCode): void {
    const lock = this.locks.get(id);
    if (!lock || (lock.phase !== 'requesting' && lock.phase !== 'converting')) return;
    this.fail(lock.op, id, code, `${lock.granted === null ? 'request' : 'conversion'} of ${JSON.stringify(lock.resource)} ${REFUSALS[code] ?? 'cancelled'}`);
    lock.op = 0;
    lock.phase = 'cancelling';
    lock.cancelCode = code;
    this.toMaster(lock, { t: 'cancel', round: this.round, id, resource: lock.resource });
    this.drain();
  }

  /**
   * This node is out (declared down, or closing): every lock it owns is lost
   * (the cluster released them, or will), every operation fails with `code`,
   * and it masters nothing. A new incarnation starts from here, empty.
   */
  reset(code: DlmErrorCode, why: string): void {
    for (const lock of this.locks.values()) {
      if (lock.phase !== 'idle') this.fail(lock.op, lock.id, code, why);
      if (lock.granted !== null) this.effects.push({ type: 'lost', id: lock.id, resource: lock.resource });
    }
    this.locks.clear();
    this.resources.clear();
    this.received.clear();
    this.held = [];
    this.inbox = [];
    this.members = [];
    this.masters = [];
    this.mastersListed = false;
    this.round = 0;
    this.complete = false;
    this.masterRound = 0;
    // The token counter starts again too. Tokens of round r lie in [r · 2^32, (r + 1) · 2^32)
    // only while every master's counter is from its current history: after a reset this node
    // may follow a re-formed cluster whose rounds start from 1, and a counter carried from a
    // higher round of the old history would issue tokens that a later round's master (floored
    // at its own, lower, round) issues again.
    this.nextToken = 0;
    this.masterCache.clear();
    this.effects.push({ type: 'reset' });
  }

  // ================================================================ inputs: membership

  /**
   * The member set changed: start `round` (a CLMS transition number) with
   * `members` (the nodes Up or ComingUp at that transition). `incarnation`
   * is this node's own. `masters` (node numbers) are the members that may
   * master resources, when restricted (undefined: every member). Older or
   * repeated rounds are ignored.
   */
  membership(round: number, members: readonly Member[], incarnation: number, masters?: readonly number[]): void {
    if (round <= this.round) return;
    if (!members.some((m) => m.node === this.self && m.incarnation === incarnation)) {
      // Out of the member set: declared down. Whatever we held is released by the others.
      if (this.round > 0) this.reset('DLM_ERR_LOCK_LOST', `node ${this.self} left the member set in round ${round}`);
      return;
    }
    this.incarnation = incarnation;
    // Records this node holds: what it mastered, and what it was handed for a round it never finished.
    const records = new Map<string, ResourceRecord>();
    const keep = (r: ResourceRecord): void => {
      const had = records.get(r.resource);
      if (!had || had.fromRound < r.fromRound) records.set(r.resource, r);
    };
    const alive = (node: number, inc: number): boolean => members.some((m) => m.node === node && m.incarnation === inc);
    let departed = 0;
    // What the unfinished round was handed carries on (its records list their holders; the
    // master that finally rebuilds drops the departed ones, once). Its lock reports are made again.
    for (const got of this.received.values()) got.records.forEach(keep);
    this.round = round;
    this.members = [...members].sort((a, b) => a.node - b.node);
    this.masters = masters === undefined ? this.members : this.members.filter((m) => masters.includes(m.node));
    this.mastersListed = masters !== undefined;
    this.complete = false;
    this.masterCache.clear();
    this.received = new Map();
    this.held = this.held.filter((h) => h.msg.round >= round);
    for (const res of this.resources.values()) {
      for (const l of res.prune((l) => !alive(l.node, l.incarnation))) {
        departed++;
        this.effects.push({ type: 'departed', node: l.node, incarnation: l.incarnation, id: l.id, resource: res.name, mode: l.granted });
      }
      if (!res.empty) keep(this.recordOf(res));
    }
    this.departedInRound = departed;
    // Handed on (to ourselves too): from now on the reports hold them.
    this.resources = new Map();
    if (this.masterless) this.settleWithoutMaster();
    this.report(records);
    this.drain();
  }

  private departedInRound = 0;

  // ================================================================ inputs: messages

  /** A message from `from` (delivered in order, once, by the driver). */
  receive(from: Member, msg: Message): void {
    this.dispatch(from, msg);
    this.drain();
  }

  private dispatch(from: Member, msg: Message): void {
    if (msg.t === 'report') return this.onReport(from, msg);
    if (msg.round < this.round && !(canaries.acceptStaleGrants && msg.t === 'grant')) return; // a former round: the current one rebuilt what it meant
    switch (msg.t) {
      case 'grant':
      case 'refuse':
      case 'blocking':
      case 'relack':
        if (msg.round !== this.round && !canaries.acceptStaleGrants) return;
        return this.onAnswer(msg);
      default:
        if (!this.complete || !this.quorum || msg.round > this.round) {
          this.held.push({ from, msg });
          return;
        }
        return this.onOwnerMessage(from, msg);
    }
  }

  // ================================================================ owner side

  /** The lock if it is held with nothing under way (`releasing`: a conversion being cancelled may be released too). */
  private idle(op: number, id: number, releasing = false): LocalLock | undefined {
    const lock = this.locks.get(id);
    const cancellingConversion = lock?.phase === 'cancelling' && lock.granted !== null;
    if (lock && lock.phase !== 'idle' && !(releasing && cancellingConversion)) {
      this.fail(op, id, 'DLM_ERR_BUSY', `lock ${id} has a ${lock.phase === 'releasing' ? 'release' : 'request or conversion'} under way`);
      return undefined;
    }
    if (!lock || lock.granted === null) {
      this.fail(op, id, 'DLM_ERR_NOT_HELD', `lock ${id} is not held`);
      return undefined;
    }
    return lock;
  }

  private toMaster(lock: LocalLock, msg: Message): void {
    // Not a member yet: the lock goes to its master in the first round's report.
    if (this.round === 0) return;
    const master = this.masterOf(lock.resource);
    if (master !== undefined) this.send(master, msg);
  }

  /** A round with members but none that may master (see the header). */
  get masterless(): boolean {
    return this.round > 0 && this.masters.length === 0;
  }

  private noMaster(resource: string): string {
    return `no member may master ${JSON.stringify(resource)} in round ${this.round} (none has one of the DLM's masterRoles)`;
  }

  /** A release with no master anywhere: nobody but this owner knows the lock, so it ends here. */
  private releasedHere(lock: LocalLock, op: number): void {
    this.locks.delete(lock.id);
    if (op !== 0) this.effects.push({ type: 'settle', op, id: lock.id, ok: true });
  }

  /** A masterless round starts: what waited for a master ends now; only granted locks remain. */
  private settleWithoutMaster(): void {
    for (const lock of [...this.locks.values()]) {
      if (lock.phase === 'releasing') this.releasedHere(lock, lock.op);
      else if (lock.phase === 'requesting' || lock.phase === 'converting') this.fail(lock.op, lock.id, 'DLM_ERR_NO_MASTER', this.noMaster(lock.resource));
      if (lock.phase === 'idle' || lock.phase === 'releasing') continue;
      if (lock.granted === null) this.locks.delete(lock.id);
      lock.phase = 'idle';
      lock.requested = null;
      lock.op = 0;
      lock.value = undefined;
      lock.cancelCode = undefined;
    }
  }

  private onAnswer(msg: Extract<Message, { t: 'grant' | 'refuse' | 'blocking' | 'relack' }>): void {
    const lock = this.locks.get(msg.id);
    if (!lock) return;
    switch (msg.t) {
      case 'grant': {
        if (lock.phase === 'idle' || lock.phase === 'releasing' || lock.requested !== msg.mode) return;
        if (lock.phase === 'cancelling') return this.grantedAfterCancel(lock, msg);
        lock.granted = msg.mode;
        lock.requested = null;
        lock.token = msg.token;
        lock.vb = msg.vb;
        lock.phase = 'idle';
        lock.value = undefined;
        lock.cancelCode = undefined;
        const grant: GrantInfo = { mode: msg.mode, token: msg.token, vb: msg.vb };
        this.effects.push({ type: 'granted', id: lock.id, resource: lock.resource, ...grant, round: this.round });
        this.effects.push({ type: 'settle', op: lock.op, id: lock.id, ok: true, grant });
        return;
      }
      case 'refuse': {
        if (lock.phase === 'cancelling') {
          // The cancel took (its operation failed already).
          if (lock.granted === null) this.locks.delete(lock.id);
          lock.phase = 'idle';
          lock.requested = null;
          lock.cancelCode = undefined;
          return;
        }
        if (lock.phase !== 'requesting' && lock.phase !== 'converting') return;
        const code: DlmErrorCode =
          msg.reason === 'would-block'
            ? 'DLM_ERR_WOULD_BLOCK'
            : msg.reason === 'deadlock'
              ? 'DLM_ERR_DEADLOCK'
              : msg.reason === 'limit'
                ? 'DLM_ERR_LIMIT'
                : (lock.cancelCode ?? 'DLM_ERR_CANCELLED');
        const what = lock.granted === null ? 'request' : 'conversion';
        if (lock.granted === null) this.locks.delete(lock.id);
        lock.phase = 'idle';
        lock.requested = null;
        lock.value = undefined;
        lock.cancelCode = undefined;
        this.fail(lock.op, lock.id, code, `${what} of ${JSON.stringify(lock.resource)} ${REFUSALS[code] ?? 'refused'}`);
        return;
      }
      case 'blocking':
        if (lock.granted !== null) this.effects.push({ type: 'blocking', id: lock.id, resource: lock.resource, mode: msg.mode });
        return;
      case 'relack':
        if (lock.phase !== 'releasing') return;
        this.locks.delete(lock.id);
        if (lock.op !== 0) this.effects.push({ type: 'settle', op: lock.op, id: lock.id, ok: true });
        return;
    }
  }

  /** The master granted what the owner had cancelled already: release a new lock; keep a conversion. */
  private grantedAfterCancel(lock: LocalLock, msg: Extract<Message, { t: 'grant' }>): void {
    const isNew = lock.granted === null;
    lock.granted = msg.mode;
    lock.requested = null;
    lock.token = msg.token;
    lock.vb = msg.vb;
    lock.cancelCode = undefined;
    const grant: GrantInfo = { mode: msg.mode, token: msg.token, vb: msg.vb };
    this.effects.push({ type: 'granted', id: lock.id, resource: lock.resource, ...grant, round: this.round });
    if (isNew) {
      lock.phase = 'releasing';
      this.toMaster(lock, { t: 'rel', round: this.round, id: lock.id, resource: lock.resource });
    } else {
      lock.phase = 'idle';
      this.effects.push({ type: 'changed', id: lock.id, grant });
    }
  }

  private fail(op: number, id: number, code: DlmErrorCode, message: string): void {
    // Op 0: nobody waits (its operation was settled when it was cancelled).
    if (op !== 0) this.effects.push({ type: 'settle', op, id, ok: false, code, message });
  }

  // ================================================================ master side

  /** The master of `resource` in the current round (rendezvous hashing over `masters`, cached per round); undefined when masterless. */
  masterOf(resource: string): number | undefined {
    if (this.masters.length === 0) return undefined;
    let m = this.masterCache.get(resource);
    if (m === undefined) {
      m = masterOf(resource, this.masters);
      // Bounded: a burst of distinct names only costs recomputation.
      if (this.masterCache.size >= 4096) this.masterCache.clear();
      this.masterCache.set(resource, m);
    }
    return m;
  }

  private onOwnerMessage(from: Member, msg: Extract<Message, { t: 'req' | 'rel' | 'cancel' }>): void {
    if (this.masterOf(msg.resource) !== this.self) return; // not ours this round: the owner reports it to the right master
    // Only a member of this round may hold locks here. A message held from before a reset (this
    // node evicted) can name a round of another history, and its sender is not a member of ours.
    if (!this.members.some((m) => m.node === from.node && m.incarnation === from.incarnation)) return;
    let res = this.resources.get(msg.resource);
    const lock = res?.find(from.node, from.incarnation, msg.id);
    let out: ResourceOutput[] = [];
    switch (msg.t) {
      case 'req':
        if (msg.convert) {
          if (!res || !lock || lock.granted === null || lock.requested !== null) return;
          out = res.convert(lock, msg.mode, msg.noQueue, msg.value);
        } else {
          if (lock) return; // a repeat
          if (!res) {
            if (this.resources.size >= this.limits.maxResources) {
              this.send(from.node, { t: 'refuse', round: this.round, id: msg.id, reason: 'limit' });
              return;
            }
            res = new Resource(msg.resource, () => ++this.nextToken);
            this.resources.set(msg.resource, res);
          }
          out = res.request({ node: from.node, incarnation: from.incarnation, id: msg.id, granted: null, requested: msg.mode, token: 0, noQueue: msg.noQueue, notified: null });
        }
        break;
      case 'rel':
        if (!res || !lock) {
          // Released already (a repeat): say so again.
          this.send(from.node, { t: 'relack', round: this.round, id: msg.id });
          return;
        }
        out = res.release(lock, msg.value);
        break;
      case 'cancel':
        if (!res || !lock) return;
        out = res.cancel(lock);
        break;
    }
    this.emit(out);
    if (res && res.empty) this.resources.delete(res.name);
  }

  /** Turn what a resource decided into messages to the lock owners. */
  private emit(out: ResourceOutput[]): void {
    const round = this.round;
    for (const o of out) {
      const to = o.lock.node;
      const id = o.lock.id;
      if (o.kind === 'grant') this.send(to, { t: 'grant', round, id, mode: o.mode, token: o.token, vb: o.value });
      else if (o.kind === 'refuse') this.send(to, { t: 'refuse', round, id, reason: o.reason });
      else if (o.kind === 'blocking') this.send(to, { t: 'blocking', round, id, mode: o.mode });
      else this.send(to, { t: 'relack', round, id });
    }
  }

  private recordOf(res: Resource): ResourceRecord {
    return {
      resource: res.name,
      fromRound: this.masterRound,
      vb: res.value,
      order: [...res.converting, ...res.waiting].map((l) => [l.node, l.incarnation, l.id] as [number, number, number]),
      holders: res.granted.map((l) => [l.node, l.incarnation, l.id, l.granted!] as [number, number, number, LockMode]),
    };
  }

  /** Send every member its part: our locks on the resources it masters now, and our records of them. */
  private report(records: Map<string, ResourceRecord>): void {
    const byMaster = new Map<number, { locks: LockReport[]; records: ResourceRecord[] }>();
    for (const m of this.members) byMaster.set(m.node, { locks: [], records: [] });
    // Masterless, nothing goes anywhere: the locks are reported in the next round that has a master.
    const part = (resource: string) => (this.masterless ? undefined : byMaster.get(this.masterOf(resource)!)!);
    for (const lock of this.locks.values()) {
      const phase = lock.phase === 'cancelling' ? 'cancel' : lock.phase === 'releasing' ? 'release' : 'held';
      part(lock.resource)?.locks.push({
        id: lock.id,
        resource: lock.resource,
        granted: lock.granted,
        requested: lock.requested,
        token: lock.token,
        noQueue: lock.noQueue,
        vb: lock.vb,
        phase,
        // A release's value, and a conversion's (down from PW or EX): the master may not have it yet.
        ...((phase === 'release' || lock.phase === 'converting') && lock.value ? { value: lock.value } : {}),
      });
    }
    for (const r of records.values()) part(r.resource)?.records.push(r);
    const members = this.members.map((m) => [m.node, m.incarnation] as [number, number]);
    const masters = this.mastersListed ? { masters: this.masters.map((m) => m.node) } : {};
    const chunk = 128;
    for (const [to, part] of byMaster) {
      const n = Math.max(1, Math.ceil(part.locks.length / chunk), Math.ceil(part.records.length / chunk));
      for (let i = 0; i < n; i++) {
        this.send(to, {
          t: 'report',
          round: this.round,
          members,
          locks: part.locks.slice(i * chunk, (i + 1) * chunk),
          records: part.records.slice(i * chunk, (i + 1) * chunk),
          last: i === n - 1,
          ...(this.history !== undefined ? { history: this.history } : {}),
          ...masters,
        });
      }
    }
  }

  private onReport(from: Member, msg: Extract<Message, { t: 'report' }>): void {
    if (msg.history !== undefined && this.history !== undefined && msg.history !== this.history) {
      if (this.foreign.length >= WIRE_LIMITS.maxMembers) this.foreign.shift();
      this.foreign.push({ from, msg });
      return;
    }
    if (msg.round < this.round) return;
    if (msg.round > this.round) {
      // A peer is ahead: adopt its round (every node computes the same members for it), if
      // it names this incarnation. One that does not is from another history (a cluster that
      // re-formed numbers its rounds from 1 again) or a round that dropped us: only our own
      // node's transitions tell us we are out.
      if (!msg.members.some(([node, incarnation]) => node === this.self && incarnation === this.incarnation)) return;
      // A joining node may hear of its first round before it knows its history: the round is
      // of the report's, so that following another history later resets it (simulator seed
      // 950004 at 5 nodes, DLM workload: a node that adopted a round of a history that then
      // ended kept mastering its locks in the re-formed cluster, whose rounds, numbered from 1
      // again, stayed below it; D2).
      this.history ??= msg.history;
      this.membership(
        msg.round,
        msg.members.map(([node, incarnation]) => ({ node, incarnation })),
        this.incarnation,
        msg.masters,
      );
      if (msg.round !== this.round) return;
    }
    if (this.complete) return;
    if (!this.members.some((m) => m.node === from.node && m.incarnation === from.incarnation)) return;
    let got = this.received.get(from.node);
    if (!got) this.received.set(from.node, (got = { locks: [], records: [], done: false }));
    if (got.done) return;
    for (const l of msg.locks) got.locks.push({ ...l, node: from.node, incarnation: from.incarnation });
    got.records.push(...msg.records);
    got.done = msg.last;
    if (this.quorum && this.members.every((m) => this.received.get(m.node)?.done)) this.rebuild();
  }

  /** Every member reported: rebuild the resources this node masters, grant again, serve what waited. */
  private rebuild(): void {
    const byName = new Map<string, { record?: ResourceRecord; locks: Received['locks'] }>();
    const entry = (name: string) => {
      let e = byName.get(name);
      if (!e) byName.set(name, (e = { locks: [] }));
      return e;
    };
    let maxToken = 0;
    for (const got of this.received.values()) {
      for (const r of got.records) {
        const e = entry(r.resource);
        if (!e.record || e.record.fromRound < r.fromRound) e.record = r;
      }
      for (const l of got.locks) {
        entry(l.resource).locks.push(l);
        maxToken = Math.max(maxToken, l.token);
      }
    }
    this.nextToken = canaries.noTokenFloor ? 0 : Math.max(this.nextToken, this.round * TOKEN_ROUND_SPAN, maxToken);
    this.received = new Map();
    this.masterRound = this.round;
    const out: ResourceOutput[] = [];
    const member = (node: number, inc: number): boolean => this.members.some((m) => m.node === node && m.incarnation === inc);
    for (const [name, e] of byName) {
      // Holders the former master listed whose node is gone since it handed the record on: dropped here, once.
      let spoiled = false;
      for (const [node, incarnation, id, mode] of e.record?.holders ?? []) {
        if (member(node, incarnation) || canaries.skipPrune) continue;
        this.departedInRound++;
        this.effects.push({ type: 'departed', node, incarnation, id, resource: name, mode });
        if (writesValue(mode)) spoiled = true;
      }
      if (e.locks.length === 0) continue; // nobody holds it any more: it ends (and its value block with it)
      const res = new Resource(name, () => ++this.nextToken);
      res.value = e.record ? e.record.vb : this.recoveredValue(e.locks);
      if (spoiled) res.value = { ...res.value, valid: false };
      // A release under way is applied here only when the record lists its lock as a PW/EX holder
      // (the former master had not applied it). Without a record the dead master may have applied
      // it, and granted and taken newer writes since: recoveredValue counted it as a copy only.
      const writers = new Set((e.record?.holders ?? []).filter((h) => writesValue(h[3])).map(([n, inc, id]) => key(n, inc, id)));
      const rank = new Map<string, number>();
      e.record?.order.forEach(([n, inc, id], i) => rank.set(key(n, inc, id), i));
      const order = (l: Received['locks'][number]): number => rank.get(key(l.node, l.incarnation, l.id)) ?? Number.MAX_SAFE_INTEGER;
      const sorted = [...e.locks].sort((a, b) => order(a) - order(b) || a.node - b.node || a.id - b.id);
      /** Conversions down, granted at once after the others are in place (as `Resource.convert` does). */
      const downs: Array<{ lock: MasterLock; mode: LockMode; value?: Uint8Array }> = [];
      for (const l of sorted) {
        const lock: MasterLock = {
          node: l.node,
          incarnation: l.incarnation,
          id: l.id,
          granted: l.granted,
          requested: l.requested,
          token: l.token,
          noQueue: l.noQueue,
          notified: null,
        };
        if (l.phase === 'release') {
          if (l.value && l.granted && writesValue(l.granted) && writers.has(key(l.node, l.incarnation, l.id))) {
            res.value = { value: l.value, version: Math.max(l.token, res.value.version), valid: true };
          }
          out.push({ kind: 'released', lock });
          continue;
        }
        if (l.phase === 'cancel') {
          out.push({ kind: 'refuse', lock, reason: 'cancelled' });
          if (l.granted === null) continue;
          lock.requested = null;
        }
        if (lock.granted !== null && lock.requested !== null && isDownConversion(lock.granted, lock.requested)) {
          // Its value is written only when the record still lists the lock as a PW/EX holder (the
          // former master had not taken the conversion): else it may be written already, and newer
          // writes taken since. A new round that overtook the conversion lost it otherwise, and the
          // block stayed valid at a version older than the holder's grant (simulator seed 2615 at
          // 5 nodes, voters 'candidates', D4).
          const value = l.value && writers.has(key(l.node, l.incarnation, l.id)) ? l.value : undefined;
          downs.push({ lock, mode: lock.requested, ...(value ? { value } : {}) });
          lock.requested = null;
        }
        if (lock.granted !== null) res.granted.push(lock);
        if (lock.granted !== null && lock.requested !== null) res.converting.push(lock);
        if (lock.granted === null) res.waiting.push(lock);
      }
      for (const d of downs) out.push(...res.convert(d.lock, d.mode, d.lock.noQueue, d.value));
      res.pass(out);
      if (!res.empty) this.resources.set(name, res);
    }
    this.complete = true;
    this.completedRound = this.round;
    this.emit(out);
    this.effects.push({ type: 'recovered', round: this.round, members: this.members, resources: this.resources.size, departed: this.departedInRound });
    this.serveHeld();
  }

  private serveHeld(): void {
    const held = this.held;
    this.held = [];
    for (const h of held) this.dispatch(h.from, h.msg);
  }

  /**
   * The value block of a resource whose master left without handing it on:
   * a surviving PW or EX holder's copy is current (nobody else could write
   * since its grant), unless it was converting down (the master may have
   * written its value, granted and taken newer writes since); otherwise the
   * newest copy a survivor has, marked invalid, since the master may have had
   * a newer one. A release or a conversion down under way counts as a copy
   * (version: the token its owner knows), never as current: the dead master
   * may have applied it.
   */
  private recoveredValue(locks: Received['locks']): ValueBlock {
    const writes = (l: Received['locks'][number]): boolean => l.granted !== null && writesValue(l.granted);
    const down = (l: Received['locks'][number]): boolean => l.requested !== null && l.requested !== l.granted && isDownConversion(l.granted!, l.requested);
    const writer = locks.find((l) => l.phase !== 'release' && writes(l) && !down(l));
    if (writer) return writer.vb;
    let newest: ValueBlock = EMPTY_VALUE;
    for (const l of locks) {
      if (l.vb.version > newest.version) newest = l.vb;
      if (writes(l) && (l.phase === 'release' || down(l)) && l.value && l.token > newest.version) newest = { value: l.value, version: l.token, valid: false };
    }
    return { ...newest, valid: false };
  }

  // ================================================================ plumbing

  private send(to: number, msg: Message): void {
    if (to === this.self) this.inbox.push(msg);
    else this.effects.push({ type: 'send', to, msg });
  }

  /** Handle messages to self, in order, after the input that queued them. */
  private drain(): void {
    while (this.inbox.length > 0) {
      const msg = this.inbox.shift()!;
      this.dispatch({ node: this.self, incarnation: this.incarnation }, msg);
    }
  }

  // ================================================================ views (tests, stats, admin)

  /** This node's locks as it sees them. */
  ownedLocks(): Array<{ id: number; resource: string; granted: LockMode | null; requested: LockMode | null; token: number; phase: Phase }> {
    return [...this.locks.values()].map((l) => ({ id: l.id, resource: l.resource, granted: l.granted, requested: l.requested, token: l.token, phase: l.phase }));
  }

  /** The resources this node masters, with their queues. */
  masteredResources(): ReadonlyMap<string, Resource> {
    return this.resources;
  }
}

const REFUSALS: Partial<Record<DlmErrorCode, string>> = {
  DLM_ERR_WOULD_BLOCK: 'would block (noQueue)',
  DLM_ERR_DEADLOCK: 'chosen as deadlock victim',
  DLM_ERR_LIMIT: 'refused: the resource master masters maxResources resources',
  DLM_ERR_CANCELLED: 'cancelled',
  DLM_ERR_TIMEOUT: 'timed out',
};
