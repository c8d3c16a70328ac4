/**
 * The nodedown path of a master, from a suspicion to a committed GoingDown
 * (docs/architecture.md, "What happens when a node goes down", steps 1-4),
 * as part of the synchronous core: what raises a suspicion (the detector,
 * a lost link, a member's report, the master a member lost), the
 * verification (`alive` to the node, `probe` to helpers, tallied by
 * verification.ts), the `confirmDown` and `fence` hooks, and the proposal
 * of the GoingDown with its decision record. Also a member's side of a
 * lost link: report it, or, for its master, ask it `alive` at once.
 *
 * Every call and hook it asks for comes back as an input naming it (by
 * call id, by hook id). A suspicion belongs to the mastership (term) that
 * raised it: an answer that arrives when this node is no longer the master
 * of that term ends the suspicion and decides nothing. That is the one
 * gate; nothing here re-checks "is the world still the same?".
 *
 * A GoingDown a former master proposed and this one carries over is
 * verified here too before it commits (docs/protocol.md, "A carried
 * GoingDown").
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import type { History } from './history.js';
import type { Transition } from './messages.js';
import { UnreachableReports, type Verdict, Verification } from './verification.js';
import type { LostMaster } from './failover.js';

/** This node's own lateness, as protocol/awareness.ts measures it. */
export interface HealthView {
  readonly score: number;
  scale(ms: number): number;
  lateBy(ms: number): boolean;
}

/** A healthy node: never late (the scripted tests' default). */
export const NEVER_LATE: HealthView = { score: 0, scale: (ms) => ms, lateBy: () => false };

/** A down's decision record, as the core knows it (the driver adds the time and the detector's name). */
export interface DownRecord {
  node: number;
  term: number;
  rule: string;
  observers: Record<string, string>;
  /** Name the detector in the record. */
  detector: boolean;
  tookMs?: number;
  timings?: Record<string, number>;
}

/** The effects detection queues (part of the core's `Effect`). */
export type DetectionEffect =
  /** Ask the pluggable detector whether a lost link is reason to suspect (`linkLost`); yes: step `suspect` with these. */
  | { type: 'consult-detector'; node: number; reason: string; observers: Record<string, string> }
  /** The node answered `alive` or a heartbeat (with its own lateness, `health`): the detector heard it (its silence starts again). */
  | { type: 'heard-alive'; node: number; health?: number | undefined }
  /** Run a policy hook; its answer comes back as `hook-answer` with this id. */
  | { type: 'hook'; id: number; hook: 'confirm-down' | 'fence'; node: number; incarnation: number; reason: string }
  | { type: 'record'; record: DownRecord }
  | { type: 'log'; level: 'info' | 'error'; message: string; data: Record<string, unknown> }
  /** The master this member lost did not answer: the driver's tick runs now, and the core's `interval` with it (an election may start). */
  | { type: 'master-silent' };

/** What a part of the core reads of it (its configuration and state, the time) and the wake-up it may ask for. */
export interface CoreView {
  readonly self: number;
  readonly rpcTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  readonly failureTimeoutMs: number;
  history(): History;
  isMaster(): boolean;
  term(): number;
  master(): number | undefined;
  phase(): string;
  now(): number;
  wake(at: number): void;
}

/** What detection needs of the core: read its state, make calls, queue effects, propose. */
export interface DetectionPort extends CoreView {
  readonly health: HealthView;
  readonly hooks: { readonly confirmDown: boolean; readonly fence: boolean };
  lastHeardMaster: number;
  call(to: number, method: 'alive' | 'probe', args: unknown, timeoutMs: number): number;
  effect(e: DetectionEffect): void;
  /**
   * Queue a change as master (`first`: ahead of every queued one); `done`
   * hears the committed transition (undefined: not committed, or nothing
   * to do).
   */
  propose(build: () => Omit<Transition, 'number' | 'term' | 'time'> | Transition | undefined, done: (t: Transition | undefined) => void, first?: boolean): void;
  /**
   * Tell every member who is master now (a `commit` of what is committed):
   * members serve probes only to the master they know, and a new master
   * that holds its appends back while it verifies is not known yet.
   */
  announce(): void;
  /** Send a `suspect` report to the master (a member's lost link). */
  reportSuspect(node: number, incarnation: number, reason: string): void;
}

/** One suspicion of (node, incarnation) under the mastership of `term`, from verification to the GoingDown. */
interface Suspicion {
  node: number;
  incarnation: number;
  reason: string;
  observers: Record<string, string>;
  first: number;
  term: number;
  timings: Record<string, number>;
  /** Run the confirmDown hook before fencing. */
  confirm: boolean;
  v?: Verification;
  deadline: number;
  refuteAgain: boolean;
  retryAt?: number;
  /** A carried GoingDown held until this verification decides (see `reverify`). */
  carried?: Transition;
  /** Called when this down ends, committed or not. */
  then?: (t: Transition | undefined) => void;
}

interface CallOf {
  s: Suspicion;
  kind: 'alive' | 'probe';
  helper: number;
  dueAt: number;
}

/** What a carried GoingDown's record says its verification found. */
const CARRIED_VERDICT: Record<Verdict, string> = {
  unreachable: 're-verified: unreachable',
  reachable: 're-verified: reachable, committed all the same (a quorum may hold it already), so the node starts again as a new incarnation',
  unknown: 're-verified: nobody could say',
};

export class Detection {
  /** Members that reported a node unreachable, and when (evidence for a verification). */
  readonly unreachable = new UnreachableReports();
  /** The master whose link this member lost and who did not answer then (protocol/failover.ts). */
  lostMaster: LostMaster | undefined;
  /** Suspicions under way, by node (one at a time per node). */
  private readonly busy = new Map<number, Suspicion>();
  /** Downs decided without verification (the API, a restarted node), by hook id while a hook runs. */
  private readonly calls = new Map<number, CallOf>();
  private readonly hooks = new Map<number, Suspicion>();
  /** `alive` calls to our master after its link broke: call id → that master. */
  private readonly masterChecks = new Map<number, LostMaster>();
  private nextHook = 1;

  constructor(private readonly p: DetectionPort) {}

  /** A carried GoingDown waits for its verification: the core builds no proposal meanwhile. */
  get holding(): Transition | undefined {
    for (const s of this.busy.values()) if (s.carried) return s.carried;
    return undefined;
  }

  /**
   * Something suggests `node` is gone (the detector, a lost link, a report):
   * a master verifies it; a member reports it to its master.
   */
  suspect(node: number, reason: string, observers: Record<string, string>, deadline: number | undefined): void {
    const h = this.p.history();
    if (!this.p.isMaster()) {
      this.p.reportSuspect(node, h.member(node)?.incarnation ?? 0, reason);
      return;
    }
    const m = h.member(node);
    // A leaving node (ShuttingDown) goes silent and closes its links on
    // purpose, and its Down follows the others' cleanup without it: nothing
    // to suspect (the API can still declare it down).
    if (!m || node === this.p.self || (m.state !== 'Up' && m.state !== 'ComingUp')) return;
    if (this.busy.has(node)) return;
    const now = this.p.now();
    // While our own timers run late, the node gets at least a stretched window to answer.
    const window = now + this.p.health.scale(this.p.rpcTimeoutMs);
    const until = deadline === undefined || this.p.health.score > 0 ? Math.max(deadline ?? 0, window) : deadline;
    this.verify({ node, incarnation: m.incarnation, reason, observers, first: now, term: this.p.term(), timings: {}, confirm: true, deadline: until, refuteAgain: true });
  }

  /**
   * The core became master carrying `t`, the entry a former master
   * appended and never committed. It commits first, unchanged (Raft never
   * takes an entry back: a quorum may hold it, even have committed it).
   * A GoingDown gets a decision record saying who proposed it and on what
   * evidence; see `reverify` for one verified before it commits.
   */
  commitCarried(
    t: Transition,
    found: string,
    { first = this.p.now(), observers = { [String(this.p.self)]: 'held it uncommitted when elected' }, timings, front = true }: { first?: number; observers?: Record<string, string>; timings?: Record<string, number>; front?: boolean } = {},
  ): void {
    const term = this.p.term();
    const rule = `proposed by ${this.proposer(t)} on evidence "${t.cause}"; carried over and committed by master ${this.p.self} (term ${term}), ${found}`;
    this.p.propose(
      () => (t.number === this.p.history().last + 1 ? { ...t } : undefined),
      (committed) => {
        if (committed?.kind !== 'state' || committed.to !== 'GoingDown') return;
        const tookMs = this.p.now() - first;
        this.p.effect({ type: 'record', record: { node: committed.node, term: committed.term, rule, detector: false, observers, ...(timings ? { tookMs, timings: { ...timings, committed: tookMs } } : {}) } });
      },
      front,
    );
  }

  /**
   * Who proposed `t`: the node of its term's master record, the first entry
   * a master appends (searched back from `t`, as far as the history holds).
   */
  private proposer(t: Transition): string {
    const h = this.p.history();
    for (let n = Math.min(t.number - 1, h.last); n > 0; n--) {
      const e = h.get(n);
      if (!e || e.term < t.term) break;
      if (e.kind === 'master' && e.term === t.term) return `master ${e.node} (term ${t.term})`;
    }
    return `the master of term ${t.term}`;
  }

  /**
   * The core became master carrying `t`. A GoingDown of another node is
   * verified like any suspicion before it commits (the core builds no
   * proposal meanwhile: `holding`), then committed unchanged whatever the
   * verdict (`commitCarried`), its record saying what the verification
   * found. False when `t` is no such GoingDown (the caller commits it at once).
   */
  reverify(t: Transition): boolean {
    const m = this.p.history().member(t.node);
    if (t.kind !== 'state' || t.to !== 'GoingDown' || t.node === this.p.self || !m || m.incarnation !== t.incarnation) return false;
    const before = this.busy.get(t.node);
    if (before) this.end(before, undefined);
    const now = this.p.now();
    this.p.announce();
    this.verify({ node: t.node, incarnation: t.incarnation, reason: t.cause, observers: {}, first: now, term: this.p.term(), timings: {}, confirm: false, deadline: now + this.p.health.scale(this.p.rpcTimeoutMs), refuteAgain: true, carried: t });
    return true;
  }

  /** Declare (node, incarnation) down without verifying it (the API, a restarted node); `confirm`: ask the confirmDown hook first. */
  down(node: number, incarnation: number, reason: string, observers: Record<string, string>, confirm: boolean, then?: (t: Transition | undefined) => void): void {
    const now = this.p.now();
    const s: Suspicion = { node, incarnation, reason, observers, first: now, term: this.p.term(), timings: {}, confirm, deadline: now, refuteAgain: false, ...(then ? { then } : {}) };
    if (confirm) this.confirmStage(s);
    else this.fenceStage(s);
  }

  /** A member reported `node` unreachable: evidence for a verification under way or soon. */
  noteUnreachable(node: number, incarnation: number, from: number): void {
    if (from === node || from === this.p.self || this.p.history().member(node)?.incarnation !== incarnation) return;
    this.unreachable.note(node, incarnation, from, this.p.now());
    const s = this.busy.get(node);
    if (s?.v && this.current(s)) this.verdict(s, s.v.reported(this.p.now()));
  }

  /** The transport lost the link to (node, incarnation): a fast hint (a killed process closes its sockets). */
  linkLost(node: number, incarnation: number): void {
    if (this.p.phase() !== 'member') return;
    const m = this.p.history().member(node);
    if (!m || m.incarnation !== incarnation || (m.state !== 'Up' && m.state !== 'ComingUp' && m.state !== 'ShuttingDown')) return;
    // A node that is leaving closes its links when its leave is committed:
    // that is no failure (its Down follows the others' cleanup, with or
    // without it), unless it was our master.
    if (m.state === 'ShuttingDown' && node !== this.p.master()) return;
    if (this.p.isMaster()) {
      this.p.effect({ type: 'consult-detector', node, reason: 'link lost', observers: { [String(this.p.self)]: 'link lost' } });
    } else if (node === this.p.master()) {
      // Verify the master at once: if it is gone, stand for election without waiting the timeout.
      this.masterChecks.set(this.p.call(node, 'alive', null, this.p.rpcTimeoutMs), { node, incarnation });
    } else {
      this.p.reportSuspect(node, incarnation, 'link lost');
    }
  }

  /**
   * Elected: the former master's link broke and it did not answer then
   * (`lostMaster`). That is its evidence, so its record says `link lost`,
   * not a heartbeat timeout later. Verified like any suspicion.
   */
  suspectLostMaster(): void {
    const lost = this.lostMaster;
    this.lostMaster = undefined;
    if (!lost || lost.node === this.p.self || this.p.history().member(lost.node)?.incarnation !== lost.incarnation) return;
    this.p.effect({ type: 'consult-detector', node: lost.node, reason: 'link lost', observers: { [String(this.p.self)]: 'link lost (the former master)' } });
  }

  /** The answer (or failure, `code`) of call `call`; false when it is none of ours. */
  answered(call: number, value: unknown, code: string | undefined): boolean {
    const lost = this.masterChecks.get(call);
    if (lost) {
      this.masterChecks.delete(call);
      this.masterAnswered(lost, code === undefined);
      return true;
    }
    const c = this.calls.get(call);
    if (!c) return false;
    this.calls.delete(call);
    const s = c.s;
    // The gate: a suspicion of a former mastership, or one that ended, decides nothing.
    if (this.busy.get(s.node) !== s || !s.v) return true;
    if (!this.current(s)) return this.end(s, undefined), true;
    const now = this.p.now();
    if (c.kind === 'probe') {
      const r = value as { reachable?: unknown } | undefined;
      this.verdict(s, code === undefined ? s.v.probeAnswered(c.helper, r?.reachable === true, now) : s.v.probeFailed(c.helper, now));
      return true;
    }
    if (code === undefined) {
      const outcome = s.v.aliveAnswered();
      // Heard from: its silence starts again (a later suspicion gets a full window, not one already past).
      this.p.effect({ type: 'heard-alive', node: s.node });
      this.verdict(s, outcome);
      return true;
    }
    // Our timeout fired late (our own loop was starved): the answer may be
    // waiting unread. Once, give the node a fresh, stretched window to
    // answer instead of counting our lateness against it.
    if (this.p.health.lateBy(now - c.dueAt) && s.refuteAgain && s.v.outcome === undefined) {
      s.refuteAgain = false;
      s.deadline = now + this.p.health.scale(this.p.rpcTimeoutMs);
      this.askSelf(s);
      return true;
    }
    this.verdict(s, s.v.aliveFailed(code, now));
    // Our own failed `alive` is tried again every quarter heartbeat until the deadline while undecided: our links may just have been reset.
    const wait = Math.max(1, Math.round(this.p.heartbeatIntervalMs / 4));
    if (s.v.outcome === undefined && now + wait < s.deadline) {
      s.retryAt = now + wait;
      this.p.wake(s.retryAt);
    }
    return true;
  }

  /** The answer of hook `id` (false also when it threw; `error` then says why). */
  hookAnswered(id: number, ok: boolean, error: string | undefined): void {
    const s = this.hooks.get(id);
    if (!s) return;
    this.hooks.delete(id);
    if (!this.current(s)) return this.end(s, undefined);
    if (s.confirm) {
      s.confirm = false;
      if (!ok) {
        this.p.effect({ type: 'log', level: 'info', message: 'nodedown not confirmed by policy', data: { node: s.node, reason: s.reason } });
        return this.end(s, undefined);
      }
      return this.fenceStage(s);
    }
    if (!ok) {
      this.p.effect({ type: 'log', level: 'error', message: 'fencing failed: the node is not declared down', data: { node: s.node, err: error } });
      return this.end(s, undefined);
    }
    this.commitStage(s);
  }

  /** A wake-up: our own `alive` tried again where its retry is due. */
  tick(): void {
    const now = this.p.now();
    for (const s of this.busy.values()) {
      if (s.retryAt === undefined || now < s.retryAt) continue;
      s.retryAt = undefined;
      if (s.v?.outcome === undefined && this.current(s)) this.askSelf(s);
    }
  }

  /** A node is Down: its reports are of no more use. */
  forget(node: number): void {
    this.unreachable.forget(node);
  }

  /** Restart or close: nothing of this incarnation goes on. */
  reset(): void {
    for (const s of [...this.busy.values(), ...this.hooks.values()]) this.end(s, undefined);
    this.busy.clear();
    this.calls.clear();
    this.hooks.clear();
    this.masterChecks.clear();
    this.unreachable.clear();
    this.lostMaster = undefined;
  }

  // ---------------------------------------------------------------- stages

  /** Still the master of the term that raised `s`. */
  private current(s: Suspicion): boolean {
    return this.p.isMaster() && this.p.term() === s.term;
  }

  /**
   * Is the node reachable? Asked at once, in parallel: the node itself, and
   * up to five other members who try to reach it (so one broken link does
   * not kill a healthy node); the tally of verification.ts decides. The
   * node has until the deadline to answer; the helpers give up on it a
   * quarter of the time left earlier, so their answers are in by then.
   */
  private verify(s: Suspicion): void {
    this.busy.set(s.node, s);
    const now = this.p.now();
    const left = Math.max(1, Math.round(s.deadline - now));
    s.v = new Verification({ node: s.node, incarnation: s.incarnation, self: this.p.self, up: this.p.history().nodesIn('Up'), observers: s.observers, reports: this.unreachable, failureTimeoutMs: this.p.failureTimeoutMs, now });
    this.askSelf(s);
    for (const h of s.v.helpers) {
      const call = this.p.call(h, 'probe', { node: s.node, timeoutMs: Math.max(1, Math.floor((left * 3) / 4)) }, left);
      this.calls.set(call, { s, kind: 'probe', helper: h, dueAt: now + left });
    }
  }

  private askSelf(s: Suspicion): void {
    const now = this.p.now();
    const timeoutMs = Math.max(1, Math.round(s.deadline - now));
    this.calls.set(this.p.call(s.node, 'alive', null, timeoutMs), { s, kind: 'alive', helper: s.node, dueAt: now + timeoutMs });
  }

  private verdict(s: Suspicion, verdict: Verdict | undefined): void {
    if (verdict === undefined) return;
    s.retryAt = undefined;
    s.timings.verified = this.p.now() - s.first;
    if (s.carried) {
      const t = s.carried;
      // The hold ends with the verification; the entry commits first.
      this.end(s, undefined);
      return this.commitCarried(t, CARRIED_VERDICT[verdict], { first: s.first, observers: s.observers, timings: s.timings });
    }
    if (verdict !== 'unreachable') {
      this.p.effect({ type: 'log', level: 'info', message: verdict === 'reachable' ? 'suspicion not confirmed: the node answers' : 'suspicion left open: nobody else could say anything about the node', data: { node: s.node, observers: s.observers, verdict } });
      return this.end(s, undefined);
    }
    this.confirmStage(s);
  }

  private confirmStage(s: Suspicion): void {
    if (s.confirm && this.p.hooks.confirmDown) return this.hook(s, 'confirm-down');
    s.confirm = false;
    this.fenceStage(s);
  }

  private fenceStage(s: Suspicion): void {
    if (this.p.hooks.fence) return this.hook(s, 'fence');
    this.commitStage(s);
  }

  private hook(s: Suspicion, hook: 'confirm-down' | 'fence'): void {
    const id = this.nextHook++;
    this.hooks.set(id, s);
    this.p.effect({ type: 'hook', id, hook, node: s.node, incarnation: s.incarnation, reason: s.reason });
  }

  private commitStage(s: Suspicion): void {
    s.timings.confirmed = this.p.now() - s.first;
    const { node, incarnation } = s;
    this.p.propose(
      () => {
        const m = this.p.history().member(node);
        if (!m || m.incarnation !== incarnation) return undefined;
        if (m.state !== 'Up' && m.state !== 'ComingUp' && m.state !== 'ShuttingDown') return undefined;
        return { kind: 'state', node, incarnation, from: m.state, to: 'GoingDown', cause: s.reason };
      },
      (t) => {
        if (t) {
          const tookMs = this.p.now() - s.first;
          this.p.effect({ type: 'record', record: { node, term: this.p.term(), rule: s.reason, detector: true, observers: s.observers, tookMs, timings: { ...s.timings, committed: tookMs } } });
        }
        this.end(s, t);
      },
    );
  }

  private end(s: Suspicion, t: Transition | undefined): void {
    if (this.busy.get(s.node) === s) this.busy.delete(s.node);
    for (const [id, c] of this.calls) if (c.s === s) this.calls.delete(id);
    const then = s.then;
    delete s.then;
    then?.(t);
  }

  private masterAnswered(lost: LostMaster, answered: boolean): void {
    const now = this.p.now();
    if (answered) {
      this.p.lastHeardMaster = now;
      return;
    }
    // Gone: as if the failure timeout had passed, so the election starts now.
    this.lostMaster = lost;
    this.p.lastHeardMaster = Math.min(this.p.lastHeardMaster, now - this.p.failureTimeoutMs - 1);
    this.p.effect({ type: 'master-silent' });
  }
}
