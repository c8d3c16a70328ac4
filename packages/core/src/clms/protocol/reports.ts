/**
 * Reports, both ways, as part of the synchronous core (docs/membership.md,
 * C1; docs/protocol.md, `clms.report`).
 *
 * A member owes its master a report for each barrier it is part of
 * (`nodeup-done`, `cleanup-done`) and each key service it made ready, until
 * the history shows the effect; it sends its suspicions and its requests
 * (leave, down, meta). The master answers each report: it counts it in a
 * barrier (and proposes the node's Up or Down when the barrier opens),
 * takes a suspicion as evidence and verifies it (detection.ts), or proposes
 * what was asked and answers once that is settled.
 *
 * The bookkeeping is barriers.ts; this holds the rules. Every answer comes
 * back as an input naming its call; what a master answers is queued as a
 * `respond` effect for the request's id. Pure: no IO, no timers, nothing
 * asynchronous (test/architecture.test.ts).
 */
import type { CoreView, Detection } from './detection.js';
import type { History } from './history.js';
import { appendAnswerReportsSchema, MAX_REPORTS_PER_CALL, type MemberInfo, type Report, type Transition } from './messages.js';
import { lostMasterReport } from './failover.js';
import { type Barrier, type BarrierKind, Barriers, OwedReports, reportKey } from './barriers.js';
import { safeParse } from '../../schema/check.js';

/** The effects reports queue (part of the core's `Effect`). */
export type ReportEffect =
  /** The answer to request `id` (a received report, or this node's own request): a value, or an error message. */
  | { type: 'respond'; id: number; value?: unknown; error?: { kind: 'no-quorum' | 'not-master'; message: string } }
  /** A key service's host reported it ready at `epoch`: the key-service master commits it. */
  | { type: 'ready-report'; keyService: string; epoch: number; from: number };

export interface ReportsPort extends CoreView {
  /** Test-only canary (canaries.ts): the cleanup barrier waits for nobody. */
  skipCleanupBarrier(): boolean;
  call(to: number, method: 'report' | 'reports', args: unknown, timeoutMs: number): number;
  effect(e: ReportEffect): void;
  /** `node`: the change is about that node only, so it may share an append round with changes of other nodes. */
  propose(build: () => Omit<Transition, 'number' | 'term' | 'time'> | undefined, done: (t: Transition | undefined, failed?: string) => void, node?: number): void;
  readonly detection: Detection;
}

/** A request of this node's own (leave, down, meta) on its way to a master. */
interface Ask {
  id: number;
  report: Report;
  deadline: number;
  wakeAt?: number;
}

/**
 * An answer to a master's append of committed entries (`reports: true`)
 * that this member holds back for the barrier reports those entries make
 * it owe (docs/protocol.md, "Reports in the append's answer"): given
 * when none is still `expected`, at `deadline`, or when anything else
 * comes first (another append, a new master, a restart).
 */
interface HeldAnswer {
  readonly id: number;
  readonly value: object;
  /** The `master:term` it answers. */
  readonly to: string;
  readonly expected: Set<string>;
  readonly carried: Report[];
  readonly deadline: number;
  /** The answer's number, sent with the reports it carries: the master's next append says it got them (`heard`). */
  readonly seq: number;
}

/** Barrier reports on their way to one master (`to`: `master:term`). */
interface BarrierBatch {
  readonly to: string;
  readonly master: number;
  /** The `reports` call under way. */
  call: number | undefined;
  /** Owed since it was made: they go together once it is answered. */
  queued: Report[];
}

export class Reports {
  /** The master's barriers. */
  readonly barriers = new Barriers();
  /** What this member owes its master. */
  readonly owed = new OwedReports();
  /** Report calls under way: call id → the report, its entry and the `master:term` it went to. */
  private readonly sends = new Map<number, { r: Report; to: string; owed: ReturnType<OwedReports['sending']> }>();
  /**
   * Barrier reports (`reports`): the `master:term` they go to, the one call
   * under way there, and those owed since, which go together once it is
   * answered (docs/protocol.md, `clms.reports`).
   */
  private barrierBatch: BarrierBatch | undefined;
  private readonly batchCalls = new Map<number, { rs: Report[]; to: string; owed: ReturnType<OwedReports['sending']>[] }>();
  private readonly asks = new Map<number, Ask>();
  private readonly askCalls = new Map<number, Ask>();
  /** A member left the barriers' lists: check them once the commit's effects are performed (`afterAdvance`). */
  private recheck = false;
  /** The append answer held for reports (at most one: another append gives it). */
  private heldAnswer: HeldAnswer | undefined;
  /**
   * Reports that went in an append's answer, and when: no answer says the
   * master got them, so one the history does not show done an interval
   * later goes again (`expireCarried`). Bounded by the reports owed.
   */
  private readonly carried = new Map<string, { r: Report; to: string; at: number; seq: number }>();
  /** The last held answer's number (`HeldAnswer.seq`). */
  private answerSeq = 0;
  /**
   * The keys each answer carried, by its number, for `heardCarried`: the
   * last 64 answers (older ones' reports have long expired or been heard).
   */
  private readonly carriedBySeq = new Map<number, string[]>();
  /** `masterKey()`'s last answer, and the master and term it was made for. */
  private key: { master: number | undefined; term: number; text: string } = { master: undefined, term: -1, text: '' };

  constructor(private readonly p: ReportsPort) {}

  /** `master:term` as this member follows them: the key reports are marked sent to (made once per master and term). */
  private masterKey(): string {
    const master = this.p.master();
    const term = this.p.term();
    const k = this.key;
    if (k.master !== master || k.term !== term) this.key = { master, term, text: `${master}:${term}` };
    return this.key.text;
  }

  // ---------------------------------------------------------------- member: what it owes and sends

  /** This node owes its master `r`: kept until acknowledged (or settled by the history), sent now. */
  owe(r: Report): void {
    // A nodeup barrier exists only while its node is ComingUp (a joiner may
    // finish nodeup for a member that is Up by then).
    const m = r.kind === 'nodeup-done' ? this.p.history().member(r.node) : undefined;
    if (r.kind === 'nodeup-done' && (m?.state !== 'ComingUp' || m.incarnation !== r.incarnation)) return;
    this.owed.owe(r);
    if (this.p.isMaster()) {
      // Still owed until the ready transition is applied (tick offers it again).
      if (r.kind === 'keyservice-ready' && r.keyService && r.epoch !== undefined) this.p.effect({ type: 'ready-report', keyService: r.keyService, epoch: r.epoch, from: this.p.self });
      if (r.kind === 'nodeup-done') this.barrierDone('nodeup', r.node, r.incarnation, this.p.self);
      if (r.kind === 'cleanup-done') this.barrierDone('cleanup', r.node, r.incarnation, this.p.self);
      return;
    }
    if (this.carry(r)) return;
    this.send(r);
  }

  // ---------------------------------------------------------------- member: reports in an append's answer

  /**
   * Hold the answer `value` to append `id` until this member owes the
   * reports `expected` (keys, see `reportKey`), at most until `deadline`;
   * false (answer now) when nothing is expected. An answer held before is
   * given first.
   */
  holdAnswer(id: number, value: object, expected: readonly string[], deadline: number): boolean {
    this.giveAnswer();
    const master = this.p.master();
    if (expected.length === 0 || master === undefined || master === this.p.self) return false;
    this.heldAnswer = { id, value, to: this.masterKey(), expected: new Set(expected), carried: [], deadline, seq: ++this.answerSeq };
    this.p.wake(deadline);
    return true;
  }

  /** A barrier report owed to the master whose append answer is held: it goes in that answer (given once none is expected any more, or full). */
  private carry(r: Report): boolean {
    const h = this.heldAnswer;
    if (!h || !isBarrier(r) || h.to !== this.masterKey()) return false;
    const key = reportKey(r);
    h.carried.push(r);
    this.owed.sending(r, h.to);
    this.carried.set(key, { r, to: h.to, at: this.p.now(), seq: h.seq });
    const keys = this.carriedBySeq.get(h.seq);
    if (keys) keys.push(key);
    else {
      this.carriedBySeq.set(h.seq, [key]);
      if (this.carriedBySeq.size > 64) this.carriedBySeq.delete(this.carriedBySeq.keys().next().value!);
    }
    h.expected.delete(key);
    // A full answer goes now: the master takes at most MAX_REPORTS_PER_CALL
    // in one (more and it refuses the whole list); the rest, owed without an
    // answer to carry them, go in `clms.reports` calls.
    if (h.expected.size === 0 || h.carried.length >= MAX_REPORTS_PER_CALL) this.giveAnswer();
    return true;
  }

  /** Give the held answer, with the reports it carries. */
  giveAnswer(): void {
    const h = this.heldAnswer;
    if (!h) return;
    this.heldAnswer = undefined;
    this.p.effect({ type: 'respond', id: h.id, value: h.carried.length > 0 ? { ...h.value, reports: h.carried, seq: h.seq } : h.value });
  }

  /**
   * The master (`master:term` as this member follows it) says, in an
   * append's `heard`, that it got the answer numbered `seq`: the reports
   * that answer carried arrived and are not sent again (still owed, as an
   * acknowledged `clms.reports` call's are, until the history shows them).
   */
  heardCarried(seq: number): void {
    const to = this.masterKey();
    for (const key of this.carriedBySeq.get(seq) ?? []) {
      const c = this.carried.get(key);
      if (c?.seq === seq && c.to === to) this.carried.delete(key);
    }
    this.carriedBySeq.delete(seq);
  }

  /**
   * Reports carried in an answer an interval ago that the history does not
   * show done yet: the answer may never have arrived (no answer to it says
   * so), so they go again with the next resends (`owed.due`).
   */
  expireCarried(): void {
    const before = this.p.now() - this.p.heartbeatIntervalMs;
    for (const [key, c] of this.carried) {
      if (c.at > before) continue;
      this.carried.delete(key);
      this.owed.resend(c.r, c.to);
    }
  }

  /** Send `r` to the current master (none, or this node: nothing to send). */
  send(r: Report): void {
    const master = this.p.master();
    if (master === undefined || master === this.p.self) return;
    const to = this.masterKey();
    if (isBarrier(r)) return this.sendBarrier(r, master, to);
    const owed = this.owed.sending(r, to);
    this.sends.set(this.p.call(master, 'report', r, this.p.rpcTimeoutMs), { r, to, owed });
  }

  /** A barrier report: with the call under way to `to`, or in one of its own when none is. */
  private sendBarrier(r: Report, master: number, to: string): void {
    let b = this.barrierBatch;
    if (b?.to !== to) b = this.barrierBatch = { to, master, call: undefined, queued: [] };
    if (!b.queued.includes(r)) b.queued.push(r);
    if (b.call === undefined) this.flushBarriers(b);
  }

  /** Send what `b` holds that is still owed (at most MAX_REPORTS_PER_CALL; the rest after the answer). */
  private flushBarriers(b: BarrierBatch): void {
    const rs: Report[] = [];
    while (b.queued.length > 0 && rs.length < MAX_REPORTS_PER_CALL) {
      const r = b.queued.shift()!;
      if (this.owed.isOwed(r)) rs.push(r);
    }
    if (rs.length === 0) return;
    const owed = rs.map((r) => this.owed.sending(r, b.to));
    b.call = this.p.call(b.master, 'reports', { reports: rs }, this.p.rpcTimeoutMs);
    this.batchCalls.set(b.call, { rs, to: b.to, owed });
  }

  /** A new master: every report still owed goes to it, and what we know of a master we lost (its evidence for that GoingDown). */
  newMaster(master: number): void {
    this.giveAnswer();
    for (const r of this.owed.reports()) this.send(r);
    const lost = lostMasterReport(this.p.detection.lostMaster, master);
    if (lost) {
      this.p.detection.lostMaster = undefined;
      this.send(lost);
    }
  }

  /**
   * Ask the master to do something (leave, down, meta): sent until a
   * master acknowledges it, every heartbeat interval, for at most ten
   * failure timeouts; `respond` to `id` then (an error when none did).
   */
  ask(id: number, r: Report): void {
    const a: Ask = { id, report: r, deadline: this.p.now() + this.p.failureTimeoutMs * 10 };
    this.asks.set(id, a);
    this.tryAsk(a);
  }

  private tryAsk(a: Ask): void {
    a.wakeAt = undefined;
    if (this.p.now() >= a.deadline || this.p.phase() === 'closed') {
      this.asks.delete(a.id);
      this.p.effect({ type: 'respond', id: a.id, error: { kind: 'no-quorum', message: 'no master acknowledged the request within ten failure timeouts' } });
      return;
    }
    if (this.p.isMaster()) {
      this.asks.delete(a.id);
      this.received(a.id, this.p.self, a.report);
      return;
    }
    const master = this.p.master();
    if (master !== undefined) {
      this.askCalls.set(this.p.call(master, 'report', a.report, this.p.rpcTimeoutMs * 4), a);
      return;
    }
    this.askLater(a);
  }

  private askLater(a: Ask): void {
    a.wakeAt = this.p.now() + this.p.heartbeatIntervalMs;
    this.p.wake(a.wakeAt);
  }

  /** The answer (or failure) of call `call`; false when it is none of ours. */
  answered(call: number, value: unknown, failed: boolean): boolean {
    const batch = this.batchCalls.get(call);
    if (batch) {
      this.batchCalls.delete(call);
      const ok = failed ? undefined : (value as { ok?: unknown } | undefined)?.ok;
      batch.rs.forEach((r, i) => this.owed.answered(r, batch.owed[i], batch.to, Array.isArray(ok) && ok[i] === true));
      const b = this.barrierBatch;
      if (b?.call === call) {
        b.call = undefined;
        this.flushBarriers(b);
      }
      return true;
    }
    const s = this.sends.get(call);
    if (s) {
      this.sends.delete(call);
      this.owed.answered(s.r, s.owed, s.to, !failed && (value as { ok?: unknown } | undefined)?.ok === true);
      return true;
    }
    const a = this.askCalls.get(call);
    if (!a) return false;
    this.askCalls.delete(call);
    if (this.asks.get(a.id) !== a) return true;
    if (!failed && (value as { ok?: unknown } | undefined)?.ok === true) {
      this.asks.delete(a.id);
      this.p.effect({ type: 'respond', id: a.id, value: undefined });
      return true;
    }
    this.askLater(a);
    return true;
  }

  /** A wake-up: requests whose next try is due. */
  tick(): void {
    const now = this.p.now();
    if (this.heldAnswer && now >= this.heldAnswer.deadline) this.giveAnswer();
    for (const a of [...this.asks.values()]) if (a.wakeAt !== undefined && now >= a.wakeAt) this.tryAsk(a);
  }

  // ---------------------------------------------------------------- master: reports received

  /**
   * A report about (node, incarnation) that this master's history is behind
   * on: the node unknown, an older incarnation of it, or that incarnation
   * still in one of `before` (the states before the reported transition).
   */
  private notAppliedYet(node: number, incarnation: number, before: MemberInfo['state'][]): boolean {
    const m = this.p.history().member(node);
    if (!m || m.incarnation < incarnation) return true;
    return m.incarnation === incarnation && before.includes(m.state);
  }

  /** Report `r` from `from`, answered by `respond` to `id` (at once, or once what it asked for is settled). */
  received(id: number, from: number, r: Report): void {
    const answer = (ok: boolean): void => this.p.effect({ type: 'respond', id, value: { ok } });
    if (!this.p.isMaster()) return answer(false);
    switch (r.kind) {
      // A report about a node this master has not applied yet (a new master
      // still committing the entry it carried) is refused, so the member
      // sends it again; acknowledged, it would never come back and the
      // barrier would wait for ever.
      // The same for a transition it has not applied yet (the node is not
      // ComingUp, or not going down, as that incarnation here yet): its
      // barrier does not exist, and would wait for this report for ever.
      case 'nodeup-done':
      case 'cleanup-done':
        return answer(this.countBarrier(from, r));
      case 'suspect': {
        const d = this.p.detection;
        d.noteUnreachable(r.node, r.incarnation, from);
        d.suspect(r.node, `node ${from} reports: ${r.reason ?? 'unreachable'}`, { [String(from)]: r.reason ?? 'unreachable' }, undefined);
        return answer(true);
      }
      case 'leave':
        if (from !== r.node) return answer(false);
        return this.proposeThenAnswer(id, () => {
          const m = this.p.history().member(r.node);
          if (!m || m.incarnation !== r.incarnation || m.state !== 'Up') return undefined;
          return { kind: 'state', node: r.node, incarnation: r.incarnation, from: 'Up', to: 'ShuttingDown', cause: 'left' };
        });
      case 'keyservice-ready':
        if (from !== r.node || !r.keyService || r.epoch === undefined) return answer(false);
        this.p.effect({ type: 'ready-report', keyService: r.keyService, epoch: r.epoch, from });
        return answer(true);
      case 'meta': {
        if (from !== r.node || !r.meta) return answer(false);
        const meta = r.meta;
        return this.proposeThenAnswer(id, () => {
          const m = this.p.history().member(r.node);
          if (!m || m.state !== 'Up' || m.incarnation !== r.incarnation) return undefined;
          return { kind: 'meta', node: r.node, incarnation: m.incarnation, from: 'Up', to: 'Up', cause: 'metadata', meta };
        });
      }
      case 'down':
        // Declared down through the API: no verification and no confirmDown, but fenced.
        return this.p.detection.down(r.node, r.incarnation, r.reason ?? `declared down by node ${from}`, { api: `node ${from}` }, false, () => answer(true));
    }
  }

  /** Propose a change asked for; answer `{ ok: true }` once it is settled, an error when it did not commit. */
  private proposeThenAnswer(id: number, build: () => Omit<Transition, 'number' | 'term' | 'time'> | undefined): void {
    this.p.propose(build, (_t, failed) => {
      if (failed === undefined) this.p.effect({ type: 'respond', id, value: { ok: true } });
      else this.p.effect({ type: 'respond', id, error: { kind: 'no-quorum', message: failed } });
    });
  }

  /** Barrier reports a learner carried in its answer to an append (`appendAnswerReportsSchema`): counted as a `reports` call's; a malformed list is ignored. */
  receivedCarried(from: number, value: unknown): boolean {
    const rs = safeParse(appendAnswerReportsSchema, value);
    if (rs.success) this.receivedBatch(from, rs.data);
    return rs.success;
  }

  /** Barrier reports `rs` from `from` (`clms.reports`): one flag each, as `received` answers them one by one. */
  receivedBatch(from: number, rs: readonly Report[]): boolean[] {
    return rs.map((r) => this.p.isMaster() && this.countBarrier(from, r));
  }

  /** A barrier report from `from` counted in its barrier: false (to be sent again) when this master has not applied its transition yet, or it is no barrier report. */
  private countBarrier(from: number, r: Report): boolean {
    if (r.kind === 'nodeup-done' && !this.notAppliedYet(r.node, r.incarnation, ['NeverUp', 'Down'])) this.barrierDone('nodeup', r.node, r.incarnation, from);
    else if (r.kind === 'cleanup-done' && !this.notAppliedYet(r.node, r.incarnation, ['NeverUp', 'Up', 'ComingUp'])) this.barrierDone('cleanup', r.node, r.incarnation, from);
    else return false;
    return true;
  }

  // ---------------------------------------------------------------- master: barriers

  /** `from` reported for the barrier of `node` (only that barrier can open now). */
  private barrierDone(kind: BarrierKind, node: number, incarnation: number, from: number): void {
    if (!this.p.isMaster()) return;
    const b = this.barriers.report(kind, node, incarnation, from);
    if (b) this.opened(b);
  }

  /** Drop members that went down meanwhile from every barrier, and open those every member reported for. */
  checkBarriers(): void {
    if (!this.p.isMaster()) return;
    const alive = new Set(this.p.history().nodesIn('Up', 'ComingUp'));
    for (const b of this.barriers.prune(alive, this.p.skipCleanupBarrier())) this.opened(b);
  }

  /** Every member reported: propose the node's Up (nodeup) or Down (cleanup). */
  private opened(b: Barrier): void {
    const { node, incarnation } = b;
    const h = (): History => this.p.history();
    const ignore = (): void => {};
    if (b.kind === 'nodeup') {
      this.p.propose(() => {
        const m = h().member(node);
        if (!m || m.state !== 'ComingUp' || m.incarnation !== incarnation) return undefined;
        return { kind: 'state', node, incarnation, from: 'ComingUp', to: 'Up', cause: 'every member ran its nodeup callbacks' };
      }, ignore, node);
    } else {
      this.p.propose(() => {
        const m = h().member(node);
        if (!m || m.incarnation !== incarnation || (m.state !== 'GoingDown' && m.state !== 'ShuttingDown')) return undefined;
        return { kind: 'state', node, incarnation, from: m.state, to: 'Down', cause: 'every node finished its cleanup' };
      }, ignore, node);
    }
  }

  /** A new master rebuilds barriers from the states in the history; members re-report. */
  rebuild(): void {
    const h = this.p.history();
    this.barriers.rebuild(h.membersView(), h.nodesIn('Up', 'ComingUp'));
    // Our own reports count at once.
    for (const r of this.owed.reports()) {
      if (r.kind === 'nodeup-done') this.barrierDone('nodeup', r.node, r.incarnation, this.p.self);
      if (r.kind === 'cleanup-done') this.barrierDone('cleanup', r.node, r.incarnation, this.p.self);
    }
    this.checkBarriers();
  }

  /**
   * `t` (state `before`) was applied: a master starts the barrier it opens;
   * what the history now shows needs no more reports.
   */
  applied(t: Transition): void {
    if (t.kind !== 'state') return;
    // Out of ComingUp, its nodeup barrier is settled: nothing more to report for it.
    if (t.to !== 'ComingUp') this.owed.settle('nodeup-done', t.node, t.incarnation);
    if (t.node === this.p.self) return;
    const alive = (): number[] => this.p.history().nodesIn('Up', 'ComingUp');
    if (t.to === 'ComingUp' && this.p.isMaster()) this.barriers.start('nodeup', t.node, t.incarnation, alive());
    if ((t.to === 'GoingDown' || t.to === 'ShuttingDown') && this.p.isMaster()) this.barriers.start('cleanup', t.node, t.incarnation, alive());
    // Joining and coming up take nobody out of a barrier and open none: a
    // full scan (every barrier, every waiter) only when a member left.
    if (t.to !== 'Up' && t.to !== 'ComingUp' && this.p.isMaster()) this.recheck = true;
    if (t.to === 'Down') {
      this.p.detection.forget(t.node);
      this.owed.settle('cleanup-done', t.node, t.incarnation);
    }
  }

  /**
   * The driver performed a commit's effects (the core's `advance`): the
   * barriers are checked after what the apply queued (key-service
   * placements), before the next proposal is built.
   */
  afterAdvance(): void {
    if (!this.recheck) return;
    this.recheck = false;
    this.checkBarriers();
  }

  /** No barriers once this node is master no more. */
  steppedDown(): void {
    this.barriers.clear();
  }

  /** Restart or close: what this incarnation owed, asked or waited for ends (its requests fail). */
  reset(restart: boolean): void {
    this.giveAnswer();
    this.carried.clear();
    this.carriedBySeq.clear();
    for (const a of this.asks.values()) this.p.effect({ type: 'respond', id: a.id, error: { kind: 'no-quorum', message: 'no master acknowledged the request within ten failure timeouts' } });
    this.asks.clear();
    this.askCalls.clear();
    this.sends.clear();
    this.batchCalls.clear();
    this.barrierBatch = undefined;
    if (!restart) return;
    this.barriers.clear();
    this.owed.clear();
  }
}

/** Barrier reports travel in `reports` calls, several at once. */
function isBarrier(r: Report): boolean {
  return r.kind === 'nodeup-done' || r.kind === 'cleanup-done';
}
