/**
 * The raft-like core of CLMS as one synchronous state machine: terms,
 * votes, the master, the pending entry, replication and commit. It does no
 * IO: `step(input)` changes its state and queues effects, `ready()` hands
 * them to the driver (clms/driver/: runtime.ts, loop.ts, effects.ts), which performs them and feeds what
 * comes back (answers, failures, wake-ups) in as new inputs.
 *
 * The gate: every answer names the call it answers; a call this machine no
 * longer waits for (another election, another replication, a restart) is
 * dropped, and every message carries a term checked against the current
 * one (M5). So no decision is ever taken on a world that changed while a
 * call was out: there is no "still the master of that term?" re-check to
 * forget.
 *
 * Rules (docs/membership.md, "Guarantees"): M6 in election.ts, M3/M4 in
 * replication.ts, M3/M5/M6 in `acceptMaster`, M2 in `propose`.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import { Election, judgeVote } from './election.js';
import { FOLLOWER_STATES, History, historyIdOf } from './history.js';
import type { AppendRequest, HeartbeatRequest, HistorySnapshot, MemberInfo, NodeState, Transition, VoteRequest } from './messages.js';
import { parseMessage, snapshotSchema, transitionSchema } from './messages.js';
import { hasQuorum, isVoter, type QuorumPolicy, type VoterRule, votersOf } from './quorum.js';
import { Lease } from './lease.js';
import { standingRank } from './failover.js';
import { APPEND_ROUNDS, type AppendChain, batchOf, MAX_BATCH, MAX_BATCH_LEARNERS, MemberProgress, missing, Replication, sameEntry } from './replication.js';
import { Detection, type DetectionEffect, type HealthView, NEVER_LATE } from './detection.js';
import { type ReportEffect, Reports } from './reports.js';
import { reportKey } from './barriers.js';
import type { Report } from './messages.js';

/** The most a master's reported lateness stretches its members' patience (as the master caps theirs). */
const MAX_MASTER_HEALTH = 65;
/** Owed reports a member sends again per interval, at most (docs/membership.md, "Scale"). */
const REPORTS_PER_TICK = 8;

/** The settling of one of the core's own proposals: heard inside the core (`settleInternal`), never handed out. */
const isInternalSettle = (e: Effect): boolean => e.type === 'settle' && e.id < 0;

export type Phase = 'idle' | 'joining' | 'member' | 'rejoining' | 'leaving' | 'closed';

export interface CoreConfig {
  self: number;
  candidates: readonly number[];
  quorum: QuorumPolicy;
  /** Who votes and acknowledges (quorum.ts `votersOf`): every Up member (default) or the Up candidates only. */
  voters?: VoterRule;
  formation: 'all-candidates' | 'majority';
  failureTimeoutMs: number;
  heartbeatIntervalMs: number;
  rpcTimeoutMs: number;
  /** How long each candidate in the line waits after the one before it stands for election. */
  electionStaggerMs: number;
  /** Draws for the election's jitter and back-off (the node's injected random source). */
  random: { int(maxExclusive: number): number };
  /** Test-only planted bugs (canaries.ts), read at each use. */
  canaries?: { readonly acceptStaleTerm: boolean; readonly skipCleanupBarrier?: boolean };
  /** This node's own lateness (protocol/awareness.ts); never late when absent. */
  health?: HealthView;
  /** The policy hooks configured (their answers come back as `hook-answer`). */
  hooks?: { confirmDown: boolean; fence: boolean };
}

/** A change the master turns into a transition when its turn comes (undefined: it no longer applies). */
export type Build = () => Omit<Transition, 'number' | 'term' | 'time'> | Transition | undefined;

/** Every input carries the time: monotonic `now`, and `wall` for the transitions it stamps. */
export interface Time {
  now: number;
  wall: number;
}

/** What comes in, without the time (the driver stamps it). */
export type Message =
  /** A wake-up asked for by a `wake` effect (`what`: the planned election's). */
  | { type: 'tick'; what?: 'election' }
  /**
   * The heartbeat interval elapsed (the driver's periodic timer): a master
   * heartbeats its members and checks its quorum, a member judges its
   * master's silence (etcd raft's tickHeartbeat and tickElection).
   */
  | { type: 'interval' }
  /** The detector's verdict asked for by `check-detector`: whom it suspects. */
  | { type: 'detector-checked'; suspects: { node: number; reason: string; observers: Record<string, string>; deadline?: number | undefined }[] }
  /** The campaign a `stand` effect asked for ended (`refused`: at the pre-vote). */
  | { type: 'stood'; refused: boolean }
  | { type: 'vote'; id: number; from: number; req: VoteRequest }
  | { type: 'append'; id: number; from: number; req: AppendRequest }
  | { type: 'commit'; from: number; req: HeartbeatRequest }
  | { type: 'heartbeat'; id: number; from: number; req: HeartbeatRequest }
  /** The answer to call `call`, or its failure (an error code). */
  | { type: 'answer'; call: number; value: unknown }
  | { type: 'failed'; call: number; code: string }
  /** Stand for election (`bootstrap`: found a cluster, no history exists yet). */
  | { type: 'campaign'; id: number; bootstrap: boolean }
  /**
   * `node`: the change is about that node only and its build reads nothing
   * but that node's state, so it may share an append round with changes of
   * other nodes (`batchOf` in replication.ts).
   */
  | { type: 'propose'; id: number; build: Build; node?: number }
  /** The effects of the last commit are performed: the next proposal's turn. */
  | { type: 'advance' }
  /** The driver learnt who is master (a join answer), or that none is heard. */
  | { type: 'master'; master: number | undefined; term: number }
  /** No master heard: quorum lost (what `interval` decides from the time; scripts state it directly). */
  | { type: 'lose-quorum'; rule: string }
  /** This node was declared down: a master among its roles ends. */
  | { type: 'step-down'; why: string }
  /** Restart or close: every proposal ends with `why`. */
  | { type: 'reset'; why: string; history: History | undefined }
  // ---- the nodedown path (detection.ts) and reports (reports.ts)
  /** The detector (or a source like it) suspects `node`: verified as master, reported as a member. */
  | { type: 'suspect'; node: number; reason: string; observers: Record<string, string>; deadline?: number }
  /** The transport lost the link to (node, incarnation). */
  | { type: 'link-lost'; node: number; incarnation: number }
  /** Declare (node, incarnation) down without verifying it (a new incarnation of it joins): confirmDown, fence, GoingDown. */
  | { type: 'down'; node: number; incarnation: number; reason: string; observers: Record<string, string> }
  /** A policy hook's answer (false also when it threw: `error`). */
  | { type: 'hook-answer'; id: number; ok: boolean; error?: string }
  /** A report received from `from`, answered by `respond` to `id`. */
  | { type: 'report'; id: number; from: number; report: Report }
  /** Barrier reports received from `from` (`clms.reports`), answered by `reply` to `id` with a flag each. */
  | { type: 'reports'; id: number; from: number; reports: readonly Report[] }
  /** This node owes its master `report` (barriers, ready key services): sent until acknowledged. */
  | { type: 'owe'; report: Report }
  /** This node asks the master for something (leave, down, meta): `respond` to `id` when acknowledged, or failed. */
  | { type: 'ask'; id: number; report: Report }
  /** The driver performed what an elected master proposes first: barriers are rebuilt, a master we lost is suspected. */
  | { type: 'master-ready' };

export type Input = Time & Message;

export type ErrorKind = 'not-master' | 'no-quorum' | 'aborted';

export type Effect =
  | { type: 'call'; call: number; to: number; method: 'vote' | 'append' | 'heartbeat' | 'fetch' | 'alive' | 'probe' | 'report' | 'reports'; args: unknown; timeoutMs: number; ifConnected?: boolean }
  | { type: 'send'; to: number; method: 'commit'; args: HeartbeatRequest }
  | { type: 'reply'; id: number; value: unknown }
  /** Step `tick` (with `what`) at `at`. */
  | { type: 'wake'; at: number; what?: 'election' }
  /** Ask the pluggable detector whom of `members` it suspects now; step `detector-checked` with its answer. */
  | { type: 'check-detector'; members: number[] }
  /** The planned election is due: campaign (as `campaign`), then step `stood`. */
  | { type: 'stand' }
  /** No master heard for six failure timeouts: this node may have been declared down unheard; start again as a new incarnation. */
  | { type: 'evicted'; cause: string }
  | { type: 'apply'; t: Transition; before: NodeState; info: MemberInfo }
  /**
   * A member that fell further behind than the master's history holds (it
   * had applied up to `had`) started again from the master's snapshot:
   * views built from transitions start again from its key-service `base`;
   * the snapshot's tail follows as `apply` effects.
   */
  | { type: 'installed'; had: number; base: Transition[] }
  | { type: 'master'; master: number | undefined; term: number }
  | { type: 'stepped-down'; why: string }
  | { type: 'quorum'; has: boolean; rule: string | { heard: number[]; voters: number[]; what: string } }
  | { type: 'settle'; id: number; t?: Transition; error?: { kind: ErrorKind; message?: string } }
  | { type: 'pre-vote'; bootstrap: boolean; voters: number[]; granted: number[]; enough: boolean; allCandidates: boolean }
  | { type: 'elected'; term: number; bootstrap: boolean; granted: number[]; voters: number[]; hadQuorum: boolean; carried: Transition[] }
  | { type: 'campaign-done'; id: number; outcome: 'refused' | 'won' | 'lost' | 'void' }
  | { type: 'advance' }
  | DetectionEffect
  | ReportEffect;

interface Proposal {
  id: number;
  build: Build;
  node?: number | undefined;
}

export class Core {
  history: History;
  phase: Phase = 'idle';
  /** Highest term seen (M5) and the term of the last vote given. */
  term = 0;
  votedIn = 0;
  /** Whom this node voted for in `votedIn`, and when (stickiness to a master in the making: election.ts). */
  private votedFor: { node: number; at: number } | undefined;
  master: number | undefined;
  /**
   * The appended, not yet committed transitions (consecutive from
   * `history.last + 1`), the term of the master that last sent some, and
   * the highest of them that master sent: a commit of that term covers the
   * held entries up to it, never more (one it did not send may differ from
   * what it committed at that number).
   */
  private held: Transition[] = [];
  pendingFrom = 0;
  private vouched = 0;
  lastHeardMaster = Number.NEGATIVE_INFINITY;
  /**
   * How late the master said its own timers run (its local-health
   * multiplier, 1 when healthy, at most MAX_MASTER_HEALTH): a member allows
   * the master's silence that many failure timeouts before it stands for
   * election (Lifeguard: a starved master is slow, not gone).
   */
  masterHealth = 1;
  quorumOk = false;
  /** This process was a member once: it never bootstraps a new cluster alone. */
  everJoined = false;
  /** Key-service leases and the master's table of who answered when (lease.ts); its quorum check reads it. */
  readonly lease: Lease;
  /**
   * An election is planned (its wake-up is armed), and the earliest time
   * the next may be planned (after a lost or refused one). A restart
   * cancels the armed wake-up, so it clears the flag too (`reset`); the
   * back-off time outlives it.
   */
  private electionPlanned = false;
  private nextElectionAt = 0;
  /** The heartbeats out: whom, as the master of which term, sent when. */
  private readonly heartbeats = new Map<number, { node: number; term: number; sentAt: number }>();
  /**
   * When the master last asked each member something whose answer tells
   * the detector it is alive (an append or a heartbeat), and in what term.
   * A member is heartbeaten one interval after that, not at every
   * interval (heartbeatAll, heartbeatDeferred). Pruned to the members.
   */
  private readonly lastAsked = new Map<number, { term: number; at: number }>();
  /** Members whose heartbeat waits for one interval after they were last asked. */
  private readonly deferred = new Set<number>();
  /** When the wake-up for deferred heartbeats is due (one is armed when it is in the future). */
  private deferredWakeAt = Number.NEGATIVE_INFINITY;

  private effects: Effect[] = [];
  private nextCall = 1;
  private readonly proposals: Proposal[] = [];
  private replication: Replication | undefined;
  /** A commit's effects are being performed (the driver steps `advance` when done). */
  private advancing = false;
  private readonly appends = new Map<number, AppendChain>();
  /** What this master has sent each member in its term (replication.ts). */
  private readonly progress = new MemberProgress();
  private election: { id: number; e: Election; history: History } | undefined;
  /** A commit the members still have to hear of: the next round's appends carry it, or commit messages when none follows. */
  private commitOwed: { number: number; term: number; heard?: ReadonlySet<number> } | undefined;
  private fetching: number | undefined;
  /** The time of the input being stepped (one object, updated in place). */
  private readonly time: Time = { now: 0, wall: 0 };
  /** The nodedown path (detection.ts) and reports and barriers (reports.ts). */
  readonly detection: Detection;
  readonly reports: Reports;
  /** Proposals of the core's own (negative ids): what hears their end. */
  private readonly internal = new Map<number, (t: Transition | undefined, failed?: string) => void>();
  private nextInternal = 1;
  /** Effects up to here were looked at for internal settles. */
  private scanned = 0;

  constructor(
    readonly config: CoreConfig,
    history: History,
  ) {
    this.history = history;
    this.lease = new Lease(config.failureTimeoutMs, config.quorum);
    // The narrow view each part gets of the core (what it reads, what it may ask for).
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const core = this;
    const common = {
      self: config.self,
      rpcTimeoutMs: config.rpcTimeoutMs,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      failureTimeoutMs: config.failureTimeoutMs,
      history: () => this.history,
      isMaster: () => this.isMaster,
      term: () => this.term,
      master: () => this.master,
      phase: () => this.phase,
      now: () => this.time.now,
      wake: (at: number) => void this.effects.push({ type: 'wake', at }),
      effect: (e: DetectionEffect | ReportEffect) => void this.effects.push(e),
    };
    this.detection = new Detection({
      ...common,
      health: config.health ?? NEVER_LATE,
      hooks: config.hooks ?? { confirmDown: false, fence: false },
      get lastHeardMaster() {
        return core.lastHeardMaster;
      },
      set lastHeardMaster(at: number) {
        core.lastHeardMaster = at;
      },
      call: (to, method, args, timeoutMs) => this.call(to, method, args, { timeoutMs }),
      propose: (build, done, first) => this.proposeInternal(build, done, first),
      reportSuspect: (node, incarnation, reason) => this.reports.send({ kind: 'suspect', node, incarnation, reason }),
      announce: () => this.sendCommit({ number: this.history.last, term: this.term }, this.history.nodesIn('Up', 'ComingUp', 'ShuttingDown', 'GoingDown')),
    });
    this.reports = new Reports({
      ...common,
      skipCleanupBarrier: () => config.canaries?.skipCleanupBarrier === true,
      call: (to, method, args, timeoutMs) => this.call(to, method, args, { timeoutMs }),
      propose: (build, done, node) => this.proposeInternal(build, done, false, node),
      detection: this.detection,
    });
  }

  get isMaster(): boolean {
    return this.master === this.config.self && this.phase === 'member';
  }

  /** The last appended, not yet committed transition (undefined: none). */
  get pending(): Transition | undefined {
    return this.held.at(-1);
  }

  set pending(t: Transition | undefined) {
    this.held = t ? [t] : [];
    this.vouched = t?.number ?? 0;
  }

  /** Every appended, not yet committed transition, in order. */
  get pendingEntries(): readonly Transition[] {
    return this.held;
  }

  get campaigning(): boolean {
    return this.election !== undefined;
  }

  /** The effects queued since the last call, in order. */
  ready(): Effect[] {
    // The settling of the core's own proposals is heard here, not outside.
    const out = this.effects;
    this.effects = [];
    this.scanned = 0;
    return out.some(isInternalSettle) ? out.filter((e) => !isInternalSettle(e)) : out;
  }

  step(input: Input): void {
    this.stepAt(input, input.now, input.wall);
  }

  /** `step`, the time given apart (the driver's loop: no copy of the message to stamp it). */
  stepAt(message: Message, now: number, wall: number): void {
    this.time.now = now;
    this.time.wall = wall;
    this.dispatch(message);
    this.settleInternal();
  }

  /** Queue a change of the core's own; `done` hears its end (after the effects queued with it). */
  private proposeInternal(build: Build, done: (t: Transition | undefined, failed?: string) => void, first = false, node?: number): void {
    const id = -this.nextInternal++;
    this.internal.set(id, done);
    if (!first || !this.isMaster) return this.propose(id, build, node);
    this.proposals.unshift({ id, build });
    this.pump();
  }

  private settleInternal(): void {
    for (; this.scanned < this.effects.length; this.scanned++) {
      const e = this.effects[this.scanned]!;
      if (e.type !== 'settle' || e.id >= 0) continue;
      const done = this.internal.get(e.id);
      this.internal.delete(e.id);
      done?.(e.t, e.error ? (e.error.message ?? e.error.kind) : undefined);
    }
  }

  private dispatch(input: Message): void {
    switch (input.type) {
      case 'tick':
        return input.what === 'election' ? this.electionDue() : this.onTick();
      case 'interval':
        return this.onInterval();
      case 'detector-checked':
        return this.detected(input.suspects);
      case 'stood':
        return this.stood(input.refused);
      case 'vote':
        return this.reply(input.id, this.onVote(input.from, input.req));
      case 'append': {
        const had = this.history.last;
        const answer = this.onAppend(input.from, input.req);
        // The master got our answer numbered `heard`: the reports it carried go no more.
        if (input.req.heard !== undefined && this.master === input.from && this.term === input.req.term) this.reports.heardCarried(input.req.heard);
        // Committed entries sent to a learner: answered with the barrier reports they make it owe, or at the deadline.
        const deadline = this.time.now + Math.min(this.config.heartbeatIntervalMs / 4, this.config.rpcTimeoutMs / 2);
        if (input.req.reports && answer.ok && this.reports.holdAnswer(input.id, answer, this.reportsOwedFor(had), deadline)) return;
        return this.reply(input.id, answer);
      }
      case 'commit':
        if (this.acceptMaster(input.from, input.req.term, input.req.history)) this.commitUpTo(input.req.commit, input.req.term);
        return;
      case 'heartbeat':
        if (this.acceptMaster(input.from, input.req.term, input.req.history)) {
          this.masterHealth = Math.min(MAX_MASTER_HEALTH, input.req.health ?? 1);
          this.commitUpTo(input.req.commit, input.req.term);
          return this.reply(input.id, { term: this.term, last: this.history.last });
        }
        // Not following this master (another history, a new incarnation still
        // joining, another master of the term): the answer must not count
        // toward its quorum or lease (docs/protocol.md, "Lease").
        return this.reply(input.id, { term: this.term, last: this.history.last, follows: false });
      case 'answer':
      case 'failed':
        return this.onResult(input.call, input.type === 'answer' ? input.value : undefined, input.type === 'failed' ? input.code : undefined);
      case 'campaign':
        return this.campaign(input.id, input.bootstrap);
      case 'propose':
        return this.propose(input.id, input.build, input.node);
      case 'advance':
        this.advancing = false;
        this.reports.afterAdvance();
        return this.pump();
      case 'master':
        return this.setMaster(input.master, input.term);
      case 'lose-quorum':
        return this.loseQuorum(input.rule);
      case 'step-down':
        if (this.isMaster) this.stepDown(input.why);
        return;
      case 'reset':
        return this.reset(input.why, input.history);
      case 'suspect':
        return this.detection.suspect(input.node, input.reason, input.observers, input.deadline);
      case 'link-lost':
        return this.detection.linkLost(input.node, input.incarnation);
      case 'down':
        return this.detection.down(input.node, input.incarnation, input.reason, input.observers, true);
      case 'hook-answer':
        return this.detection.hookAnswered(input.id, input.ok, input.error);
      case 'report':
        return this.reports.received(input.id, input.from, input.report);
      case 'reports':
        return this.reply(input.id, { ok: this.reports.receivedBatch(input.from, input.reports) });
      case 'owe':
        return this.reports.owe(input.report);
      case 'ask':
        return this.reports.ask(input.id, input.report);
      case 'master-ready':
        this.reports.rebuild();
        return this.detection.suspectLostMaster();
    }
  }

  // ---------------------------------------------------------------- terms and masters

  /** Adopt a higher term (M5): any master role of ours ends. */
  private observeTerm(term: number): void {
    if (term <= this.term) return;
    const wasMaster = this.isMaster;
    this.term = term;
    if (wasMaster) this.stepDown('saw a higher term');
    else if (this.master !== undefined) this.setMaster(undefined, term);
  }

  private setMaster(master: number | undefined, term: number): void {
    if (term < this.term && master !== undefined) return;
    if (this.master === master && this.term === term) return;
    const changed = this.master !== master;
    if (changed) this.masterHealth = 1;
    this.master = master;
    this.term = Math.max(this.term, term);
    if (changed) this.effects.push({ type: 'master', master, term: this.term });
    // Reports owed to the old master go to the new one.
    if (changed && master !== undefined && master !== this.config.self) this.reports.newMaster(master);
  }

  private stepDown(why: string): void {
    this.master = undefined;
    this.effects.push({ type: 'master', master: undefined, term: this.term });
    this.failProposals('not-master', `no longer master: ${why}`);
    this.reports.steppedDown();
    this.effects.push({ type: 'stepped-down', why });
  }

  private failProposals(kind: ErrorKind, message: string): void {
    for (const p of this.proposals.splice(0)) this.effects.push({ type: 'settle', id: p.id, error: { kind, message } });
  }

  private loseQuorum(rule: Extract<Effect, { type: 'quorum' }>['rule']): void {
    if (!this.quorumOk) return;
    this.quorumOk = false;
    this.effects.push({ type: 'quorum', has: false, rule });
    if (this.isMaster) this.stepDown('lost quorum');
  }

  /** Voters: the Up members, or only the Up candidates with `voters: 'candidates'` (every candidate while none of them is Up). */
  voters(): number[] {
    return votersOf(this.history.nodesIn('Up'), this.config.candidates, this.voterRule);
  }

  private get voterRule(): VoterRule {
    return this.config.voters ?? 'members';
  }

  /** The history this node is in, or is acknowledging the first transition of; null when neither. */
  historyWanted(): string | null {
    const first = this.held[0];
    return this.history.id ?? (first?.number === 1 ? historyIdOf(first) : null);
  }

  private reply(id: number, value: unknown): void {
    this.effects.push({ type: 'reply', id, value });
  }

  private call(to: number, method: Extract<Effect, { type: 'call' }>['method'], args: unknown, extra: { ifConnected?: boolean; timeoutMs?: number } = {}): number {
    const call = this.nextCall++;
    this.effects.push({ type: 'call', call, to, method, args, timeoutMs: this.config.rpcTimeoutMs, ...extra });
    return call;
  }

  // ---------------------------------------------------------------- votes and elections

  private onVote(candidate: number, req: VoteRequest): { term: number; granted: boolean } {
    const h = this.history;
    const verdict = judgeVote(
      {
        self: this.config.self,
        candidates: this.config.candidates,
        term: this.term,
        votedIn: this.votedIn,
        votedFor: this.votedFor,
        master: this.master,
        isMaster: this.isMaster,
        quorumOk: this.quorumOk,
        heardMasterAt: this.lastHeardMaster,
        now: this.time.now,
        failureTimeoutMs: this.config.failureTimeoutMs,
        last: h.last,
        lastTerm: h.lastTerm,
        pending: this.pending,
        historyWanted: this.historyWanted(),
      },
      candidate,
      req,
    );
    if (verdict.kind === 'refuse') return { term: this.term, granted: false };
    if (verdict.kind === 'pre') return { term: this.term, granted: verdict.granted };
    this.observeTerm(req.term);
    if (!verdict.granted) return { term: this.term, granted: false };
    this.votedIn = req.term;
    this.votedFor = { node: candidate, at: this.time.now };
    return { term: this.term, granted: true };
  }

  private campaign(id: number, bootstrap: boolean): void {
    const c = this.config;
    if (this.election || this.phase === 'closed' || !c.candidates.includes(c.self)) {
      this.effects.push({ type: 'campaign-done', id, outcome: 'void' });
      return;
    }
    const voters = bootstrap ? [...c.candidates] : this.voters();
    // A cluster is founded only with every candidate (see docs/membership.md, "Formation").
    const allCandidates = bootstrap && c.quorum !== 'none' && (c.formation === 'all-candidates' || this.everJoined);
    const e = new Election({
      self: c.self,
      bootstrap,
      voters,
      quorum: c.quorum,
      allCandidates,
      lastNumber: this.pending?.number ?? this.history.last,
      lastTerm: this.pending?.term ?? this.history.lastTerm,
    });
    this.election = { id, e, history: this.history };
    this.askVotes('pre', this.term + 1);
  }

  private askVotes(stage: 'pre' | 'vote', term: number): void {
    const { e } = this.election!;
    e.beginRound(stage, term);
    for (const n of e.targets()) {
      // Calls are made in order and answered later: the round waits for all of them.
      e.waiting.set(this.call(n, 'vote', e.request(this.history.id), { ifConnected: e.start.bootstrap }), n);
    }
    if (e.waiting.size === 0) this.roundDone();
  }

  private voteAnswered(call: number, value: unknown): void {
    const { e } = this.election!;
    const from = e.waiting.get(call)!;
    e.waiting.delete(call);
    if (value !== undefined) {
      const r = value as { term: number; granted: boolean };
      if (r.granted) e.granted.add(from);
      else if (e.stage === 'vote') this.observeTerm(r.term);
    }
    if (e.waiting.size === 0) this.roundDone();
  }

  private roundDone(): void {
    const { id, e, history } = this.election!;
    const end = (outcome: 'refused' | 'won' | 'lost' | 'void'): void => {
      this.election = undefined;
      this.effects.push({ type: 'campaign-done', id, outcome });
    };
    const enough = e.enough();
    if (e.stage === 'pre') {
      this.effects.push({ type: 'pre-vote', bootstrap: e.start.bootstrap, voters: [...e.start.voters], granted: [...e.granted], enough, allCandidates: e.start.allCandidates });
      if (!enough || this.phase === 'closed') return end('refused');
      // Only a candidate that could win raises the term: one above the
      // highest it knows now (a master heard meanwhile may own the term the
      // pre-vote asked about).
      const term = this.term + 1;
      this.term = term;
      this.votedIn = term;
      this.votedFor = { node: this.config.self, at: this.time.now };
      return this.askVotes('vote', term);
    }
    // The votes are for the term and history we stood with.
    if (this.term !== e.term || this.phase === 'closed' || this.phase === 'rejoining' || this.history !== history) return end('void');
    if (!enough) return end('lost');
    // Another candidate's founding reached us while we stood: that history is the cluster now.
    if (e.start.bootstrap && (this.history.last > 0 || this.pending !== undefined)) return end('void');
    this.becomeMaster(e);
    end('won');
  }

  private becomeMaster(e: Election): void {
    this.phase = 'member';
    this.everJoined = true;
    this.setMaster(this.config.self, e.term);
    const hadQuorum = this.quorumOk;
    this.quorumOk = true;
    // The entries of a previous term we hold uncommitted are proposed again,
    // in order, before anything of ours (the queue is empty: only a master
    // queues). A GoingDown first among them is verified first, and nothing
    // is proposed meanwhile: its verdict puts it at the front (docs/protocol.md,
    // "A carried GoingDown"). One behind another carried entry commits as it
    // stands, its record says so.
    const carried = [...this.held];
    const [head, ...rest] = carried;
    if (head && !this.detection.reverify(head)) this.proposeCarried(head, 'not re-verified');
    for (const t of rest) this.proposeCarried(t, 'not re-verified: carried behind another entry');
    // We keep holding them until applied: should this mastership end before
    // they commit, a later election must still count them.
    // Every voter counts as heard now (they just voted).
    this.lease.elected(e.start.voters, this.time.now);
    this.effects.push({ type: 'elected', term: e.term, bootstrap: e.start.bootstrap, granted: [...e.granted], voters: [...e.start.voters], hadQuorum, carried });
  }

  /** Propose a carried entry again, at the end of the queue. */
  private proposeCarried(t: Transition, found: string): void {
    this.detection.commitCarried(t, t.node === this.config.self ? 'not re-verified: the node is this master' : found, { front: false });
  }

  // ---------------------------------------------------------------- master: proposals and replication

  private propose(id: number, build: Build, node?: number): void {
    // Only a master queues changes: a decision begun as master and finished
    // after stepping down must not wait for a later term of ours, where it
    // would take the number of the entry carried from the former master (M2).
    if (!this.isMaster) {
      this.effects.push({ type: 'settle', id, error: { kind: 'not-master' } });
      return;
    }
    this.proposals.push({ id, build, node });
    this.pump();
  }

  /**
   * Start the next proposals, when none is in flight (M4: one change at a
   * time; several changes of distinct nodes share a round when only the
   * last of them may change the voters, see `batchOf` in replication.ts).
   */
  private pump(): void {
    while (!this.replication && !this.advancing && this.proposals.length > 0 && this.isMaster && !this.detection.holding) {
      const p = this.proposals.shift()!;
      const first = this.build(p, this.history.last + 1);
      if (!first) continue;
      const batch = [{ proposal: p.id, t: first }];
      // The founding entries go one by one: their voters are the candidates.
      if (p.node !== undefined && this.history.last > 0) {
        batchOf(
          batch,
          this.proposals,
          this.history,
          (q, number) => this.build(q, number),
          (node) => isVoter(this.voterRule, this.config.candidates, node),
          this.learnersHearCommitted ? MAX_BATCH_LEARNERS : MAX_BATCH,
        );
      }
      // In our own log while it replicates: deposed before it commits, we
      // still count it when we stand again, and carry it if elected. Entries
      // carried from a former master that are still to be proposed stay held
      // behind it (log matching: they go only after an entry that differs).
      const entries = batch.map((b) => b.t);
      const carriedOn = entries.every((t, i) => sameEntry(this.held[i], t)) ? this.held.slice(entries.length) : [];
      this.held = [...entries, ...carriedOn];
      this.pendingFrom = this.term;
      this.vouched = first.number + batch.length - 1;
      const voters = this.history.last === 0 ? (this.config.quorum === 'none' ? [this.config.self] : [...this.config.candidates]) : this.voters();
      this.replication = new Replication(batch, this.term, voters, this.time.now, this.config.quorum, this.config.self);
      // The appends carry the last commit to the members they go to; the others hear of it now.
      if (this.commitOwed) this.sendCommit(this.commitOwed, this.history.nodesIn('GoingDown'));
      this.commitOwed = undefined;
      this.replicationRound();
    }
    if (this.commitOwed && !this.replication && !this.advancing) {
      this.sendCommit(this.commitOwed, this.history.nodesIn('Up', 'ComingUp', 'ShuttingDown', 'GoingDown'));
      this.commitOwed = undefined;
    }
  }

  /** The transition proposal `p` makes as entry `number`; undefined (and settled) when it no longer applies. */
  private build(p: Proposal, number: number): Transition | undefined {
    const change = p.build();
    if (!change) {
      this.effects.push({ type: 'settle', id: p.id });
      return undefined;
    }
    // An entry carried over from the previous master keeps its term and
    // time: some members may have it (and even have committed it) as is.
    const carried = change as Partial<Transition>;
    return carried.number === number && carried.term !== undefined && carried.time !== undefined
      ? (change as Transition)
      : { ...change, number, term: this.term, time: this.time.wall };
  }

  /** Append to every member that has not acknowledged; done at once when a quorum has it. */
  private replicationRound(): void {
    const r = this.replication!;
    r.wakeAt = undefined;
    if (!this.stillMasterOf(r.term)) return this.finish(false);
    if (r.committed) return this.finish(true);
    const targets = r.targets(this.history, this.config.self, this.learnersHearCommitted);
    r.left = targets.length;
    r.open = true;
    if (targets.length === 0) return this.roundEnded();
    for (const n of targets) this.sendAppend({ to: n, batch: r.entries, term: r.term, round: 0, entries: this.entriesFor(n, r), sentAt: 0, replication: r });
  }

  /**
   * Send learner `n` what is committed after what it was sent (`batch`,
   * the round just committed, when that is not known), unless an append
   * to it is under way: its answer sends the rest then. One append at a
   * time per learner: the rounds go at the voters' pace, and a learner
   * slower than that gets several rounds' entries in one append instead of
   * an append per round piling up behind (at 256 nodes in one process
   * those piled up past the 10,000 calls ICS lets be pending).
   */
  private toLearner(n: number, term: number, batch: readonly Transition[]): void {
    if (this.progress.busy(term, n)) return;
    if (!FOLLOWER_STATES.includes(this.history.stateOf(n))) return;
    const sent = this.progress.sentUpTo(term, n);
    const entries = sent === undefined ? [...batch] : missing(this.history, sent, []);
    if (entries.length === 0) return;
    this.sendAppend({ to: n, batch: entries, term, round: 0, entries, sentAt: 0, replication: undefined, withReports: true });
  }

  /** What a round's append to `n` carries: the round's entries, after those committed since what was last sent to `n` (MemberProgress). */
  private entriesFor(n: number, r: Replication): Transition[] {
    const sent = this.progress.sentUpTo(r.term, n);
    return sent === undefined || sent >= r.entries[0]!.number - 1 ? [...r.entries] : missing(this.history, sent, r.entries);
  }

  /**
   * `voters: 'candidates'`: the members that vote on nothing are sent the
   * entries only once committed, and answer with their barrier reports
   * (docs/protocol.md, "Reports in the append's answer"). With every
   * member voting, every member is sent them as they are appended.
   */
  private get learnersHearCommitted(): boolean {
    return this.voterRule === 'candidates';
  }

  /**
   * The barrier reports (keys) the entries applied after `had` make this
   * member owe: nodeup for each joiner still ComingUp, cleanup for each
   * node still going down or leaving (a member catching up from far
   * behind owes nothing for barriers long closed).
   */
  private reportsOwedFor(had: number): string[] {
    const keys: string[] = [];
    for (let n = had + 1; n <= this.history.last; n++) {
      const t = this.history.get(n);
      if (t?.kind !== 'state' || t.node === this.config.self) continue;
      const m = this.history.member(t.node);
      if (m?.incarnation !== t.incarnation || m.state !== t.to) continue;
      const kind = t.to === 'ComingUp' ? 'nodeup-done' : t.to === 'GoingDown' || t.to === 'ShuttingDown' ? 'cleanup-done' : undefined;
      if (kind) keys.push(reportKey({ kind, node: t.node, incarnation: t.incarnation }));
    }
    return keys;
  }

  private stillMasterOf(term: number): boolean {
    return this.isMaster && this.term === term;
  }

  /** One member's append ended (acknowledged or not). */
  private appendEnded(r: Replication, node: number, ok: boolean): void {
    if (ok) r.acks.add(node);
    r.left--;
    if (r.open && (r.left <= 0 || r.committed)) this.roundEnded();
  }

  private roundEnded(): void {
    const r = this.replication!;
    r.open = false;
    if (!this.stillMasterOf(r.term)) return this.finish(false);
    if (r.committed) return this.finish(true);
    if (this.time.now - r.started > this.config.failureTimeoutMs) {
      this.loseQuorum({ heard: [...r.acks], voters: [...r.voters], what: `transition ${r.t.number} not acknowledged within the failure timeout` });
      return this.finish(false);
    }
    r.wakeAt = this.time.now + this.config.heartbeatIntervalMs;
    this.effects.push({ type: 'wake', at: r.wakeAt });
  }

  private finish(ok: boolean): void {
    const r = this.replication!;
    this.replication = undefined;
    if (ok && this.stillMasterOf(r.term)) {
      const learners = this.learnersHearCommitted ? r.learnersOf(this.history, this.config.self) : [];
      for (const t of r.entries) this.applyEntry(t);
      // Learners get the entries now, committed (docs/protocol.md, "Reports in the append's answer").
      for (const n of learners) this.toLearner(n, r.term, r.entries);
      // The other members hear of it with the next round's appends, or by commit messages when none follows (pump).
      this.commitOwed = { number: r.t.number, term: r.term, ...(learners.length > 0 ? { heard: new Set(learners) } : {}) };
      for (const b of r.batch) this.effects.push({ type: 'settle', id: b.proposal, t: b.t });
      // The next proposal is built once the driver performed this commit's effects.
      this.advancing = true;
      this.effects.push({ type: 'advance' });
      return;
    }
    for (const b of r.batch) this.effects.push({ type: 'settle', id: b.proposal, error: { kind: 'no-quorum', message: `transition ${b.t.number} did not reach a quorum` } });
    this.pump();
  }

  private onTick(): void {
    const r = this.replication;
    if (r?.wakeAt !== undefined && this.time.now >= r.wakeAt) this.replicationRound();
    if (this.isMaster && this.deferred.size > 0) this.heartbeatDeferred(this.time.now);
    this.detection.tick();
    this.reports.tick();
  }

  // ---------------------------------------------------------------- the heartbeat interval

  /** Run `decide`, then hear the end of the core's own proposals it settled (as a step of its own would). */
  private part(decide: () => void): void {
    decide();
    this.settleInternal();
  }

  /**
   * Every heartbeat interval (etcd raft's tickHeartbeat and tickElection).
   * A master heartbeats its members, then asks the detector whom it
   * suspects and checks its quorum (`detected`). A member resends what it
   * owes its master, and judges the master's silence, stretched when its
   * own timers run late or when the master said its own do (Lifeguard:
   * either way the silence is no evidence): past the failure timeout it
   * loses its quorum and forgets the master, and a candidate plans to
   * stand; past six, it starts again as a new incarnation.
   */
  private onInterval(): void {
    const now = this.time.now;
    if (this.isMaster) {
      // A master hears itself: its silence clock starts when it stops being master.
      this.lastHeardMaster = now;
      return this.heartbeatAll(now);
    }
    if (this.phase !== 'member') return;
    // Owed reports are resent until the master acknowledges them (a new
    // master, or a new term, gets them again: its barriers are rebuilt).
    this.reports.expireCarried();
    for (const r of this.reports.owed.due(`${this.master}:${this.term}`, REPORTS_PER_TICK)) this.part(() => this.reports.send(r));
    const health = this.config.health ?? NEVER_LATE;
    const patience = this.config.failureTimeoutMs * Math.max(health.score + 1, this.masterHealth);
    if (now - this.lastHeardMaster > patience * 6) {
      // Long without a master and no election won: this node may have been
      // declared down while cut off (the others then refuse its incarnation
      // and it cannot even hear so). Start again as a new incarnation: if it
      // was still a member, the master retires the old one when the new one
      // joins.
      this.effects.push({ type: 'evicted', cause: 'no master for too long' });
      return;
    }
    if (now - this.lastHeardMaster <= patience) return;
    if (this.quorumOk) this.part(() => this.loseQuorum('no master heard within the failure timeout'));
    if (this.master !== undefined) this.part(() => this.setMaster(undefined, this.term));
    this.planElection(now);
  }

  /**
   * Heartbeat every member but ourselves; the detector is asked next. A
   * member asked something within the last interval (an append, in a join
   * storm) is heartbeaten only one interval after that (heartbeatDeferred),
   * if nothing else was asked of it meanwhile: an append's answer tells
   * what a heartbeat's would (it is alive, its health, how far it holds the
   * history; the lease counts it), and the append carries the commit and
   * our own health. So a member is still asked something at least every
   * interval, as with a heartbeat at every interval (what the detector's
   * timing and the pause a member may take rest on), and a join storm's
   * appends replace its heartbeats instead of doubling them.
   */
  private heartbeatAll(now: number): void {
    const members = this.history.nodesIn(...FOLLOWER_STATES).filter((n) => n !== this.config.self);
    const term = this.term;
    const health = this.ownHealth();
    this.deferred.clear();
    for (const n of members) {
      if (this.askedWithin(n, now)) this.deferred.add(n);
      else this.heartbeat(n, term, now, health);
    }
    if (this.lastAsked.size > members.length) {
      const keep = new Set(members);
      for (const n of this.lastAsked.keys()) if (!keep.has(n)) this.lastAsked.delete(n);
    }
    this.armDeferred(now);
    // Members not heard of before get a whole timeout from now.
    this.lease.expect(members, now);
    this.effects.push({ type: 'check-detector', members });
  }

  /** The deferred heartbeats now due: each member not asked anything for an interval. */
  private heartbeatDeferred(now: number): void {
    const health = this.ownHealth();
    for (const n of [...this.deferred]) {
      if (this.askedWithin(n, now)) continue;
      this.deferred.delete(n);
      if (FOLLOWER_STATES.includes(this.history.stateOf(n))) this.heartbeat(n, this.term, now, health);
    }
    this.armDeferred(now);
  }

  /** Whether `n` was asked something in this term less than an interval before `now`. */
  private askedWithin(n: number, now: number): boolean {
    const asked = this.lastAsked.get(n);
    return asked !== undefined && asked.term === this.term && asked.at > now - this.config.heartbeatIntervalMs;
  }

  private heartbeat(n: number, term: number, now: number, health: { health?: number }): void {
    const call = this.call(n, 'heartbeat', { term, history: this.history.id, commit: this.history.last, ...health }, { timeoutMs: this.config.failureTimeoutMs });
    this.heartbeats.set(call, { node: n, term, sentAt: now });
    this.lastAsked.set(n, { term, at: now });
  }

  /** Wake up when the first deferred heartbeat is due (unless a wake-up at or before it is armed already). */
  private armDeferred(now: number): void {
    let next = Number.POSITIVE_INFINITY;
    for (const n of this.deferred) next = Math.min(next, (this.lastAsked.get(n)?.at ?? now) + this.config.heartbeatIntervalMs);
    if (next === Number.POSITIVE_INFINITY || (this.deferredWakeAt > now && this.deferredWakeAt <= next)) return;
    this.deferredWakeAt = next;
    this.effects.push({ type: 'wake', at: next });
  }

  /** Our own lateness, for heartbeats and appends, told only when there is some (members then wait as much longer for us). */
  private ownHealth(): { health?: number } {
    const multiplier = (this.config.health ?? NEVER_LATE).score + 1;
    return multiplier > 1 ? { health: multiplier } : {};
  }

  /**
   * The detector's verdict on this interval: each suspect is verified
   * (detection.ts); then the quorum: the master must hear a quorum of
   * voters within the failure timeout, stretched when its own timers run
   * late (its members, told so in the heartbeats, wait as much longer for
   * it). Its key-service lease is not stretched.
   */
  private detected(suspects: Extract<Message, { type: 'detector-checked' }>['suspects']): void {
    for (const s of suspects) this.part(() => this.detection.suspect(s.node, s.reason, s.observers, s.deadline));
    const voters = this.voters();
    const heard = this.lease.heard(this.config.self, voters, this.time.now, (this.config.health ?? NEVER_LATE).scale(this.config.failureTimeoutMs));
    if (!hasQuorum(this.config.quorum, heard, voters)) this.loseQuorum({ heard: [...heard], voters, what: 'no quorum heard within the failure timeout' });
  }

  private heartbeatAnswered(h: { node: number; term: number; sentAt: number }, value: unknown): void {
    if (value === undefined) return;
    const r = value as { term: number; last: number; health?: number; follows?: boolean };
    // A newer term ends this mastership (the gate).
    if (r.term > this.term) return this.observeTerm(r.term);
    // A node that does not follow this master (a restarted voter that forgot
    // its vote, say) is no acknowledgement: counted, it renewed a stale
    // master's lease and its key-service host wrote after the next epoch
    // began elsewhere (sim seed 949986 at 3 nodes, K3).
    if (r.follows === false) return;
    this.lease.ack(h.node, h.sentAt);
    this.effects.push({ type: 'heard-alive', node: h.node, health: r.health });
    // Behind: append the last transition (with what it misses), as the master of the heartbeat's term only.
    const t = r.last < this.history.last ? (this.history.get(this.history.last) ?? this.history.since(0)[0]) : undefined;
    if (t && !this.progress.busy(h.term, h.node)) this.appendTo(h.node, t, h.term, undefined);
  }

  /**
   * Candidates stand in order: the first at once, the next a stagger
   * later, and a master this node found gone keeps no place in the line
   * (failover.ts). After a lost election a candidate waits a random while,
   * so that two of them do not keep splitting the votes (`stood`).
   */
  private planElection(now: number): void {
    const c = this.config;
    if (!c.candidates.includes(c.self) || this.history.stateOf(c.self) !== 'Up' || this.electionPlanned || now < this.nextElectionAt) return;
    const wait = standingRank(c.candidates, c.self, this.detection.lostMaster?.node) * c.electionStaggerMs + c.random.int(Math.max(1, c.electionStaggerMs / 2));
    this.electionPlanned = true;
    this.effects.push({ type: 'wake', at: now + wait, what: 'election' });
  }

  private electionDue(): void {
    this.electionPlanned = false;
    if (this.master !== undefined || this.phase !== 'member') return;
    this.effects.push({ type: 'stand' });
  }

  /**
   * The planned campaign ended without a master. A refused pre-vote raised
   * no term: stand again soon, so the first candidate to lose its master
   * does not hand the election to a later one that lost it a moment after
   * (the voters still heard the master when asked). A lost vote backs off
   * at random, so that two candidates stop splitting it.
   */
  private stood(refused: boolean): void {
    if (this.master !== undefined) return;
    const c = this.config;
    this.nextElectionAt = this.time.now + (refused ? Math.max(1, c.electionStaggerMs / 2) : c.electionStaggerMs * c.candidates.length + c.random.int(c.failureTimeoutMs));
  }

  /**
   * Send `t` (and whatever the member misses before it) to `n` as the
   * master of `term`; never once deposed, least of all under a newer term
   * learnt meanwhile (that would make two masters of it).
   */
  private appendTo(n: number, t: Transition, term: number, replication: Replication | undefined): void {
    this.sendAppend({ to: n, batch: [t], term, round: 0, entries: [t], sentAt: 0, replication });
  }

  private sendAppend(chain: AppendChain): void {
    if (!this.stillMasterOf(chain.term)) return this.appendDone(chain, false);
    chain.sentAt = this.time.now;
    const h = this.history;
    const first = chain.batch[0]!;
    // Our lateness, as a heartbeat tells it: the append stands for the member's next heartbeat.
    const heard = chain.withReports ? this.progress.heardFrom(chain.term, chain.to) : undefined;
    const args = {
      term: chain.term,
      history: h.id ?? (first.number === 1 ? historyIdOf(first) : null),
      commit: h.last,
      entries: chain.entries,
      ...this.ownHealth(),
      ...(chain.withReports ? { reports: true } : {}),
      ...(heard !== undefined ? { heard } : {}),
    };
    this.appends.set(this.call(chain.to, 'append', args), chain);
    this.lastAsked.set(chain.to, { term: chain.term, at: chain.sentAt });
    this.progress.sending(chain.term, chain.to, chain.entries.at(-1)?.number ?? 0);
  }

  private appendAnswered(chain: AppendChain, value: unknown): void {
    const r = value as { term: number; ok: boolean; last: number; health?: number; reports?: unknown; seq?: unknown; follows?: boolean } | undefined;
    this.progress.ended(chain.term, chain.to, r === undefined || r.term > this.term || r.follows === false ? 'failed' : r.ok ? 'ok' : { holds: r.last });
    if (r === undefined) return this.appendDone(chain, false);
    if (r.term > this.term) {
      this.observeTerm(r.term);
      return this.appendDone(chain, false);
    }
    // Refused by a node that does not follow this master: no acknowledgement, as for a heartbeat.
    if (r.follows === false) return this.appendDone(chain, false);
    this.lease.ack(chain.to, chain.sentAt);
    // Heard, as a heartbeat's answer would tell (the append stood for the member's next heartbeat).
    this.effects.push({ type: 'heard-alive', node: chain.to, health: r.health });
    if (r.ok) {
      // A learner's barrier reports, carried in its answer (counted as a `reports` call's are).
      // Its number goes back in the next append (`heard`): those reports arrived.
      if (r.reports !== undefined && this.reports.receivedCarried(chain.to, r.reports) && Number.isSafeInteger(r.seq) && (r.seq as number) > 0) {
        this.progress.heardAnswer(chain.term, chain.to, r.seq as number);
      }
      this.appendDone(chain, true);
      // What was committed while this one was under way.
      if (chain.withReports && this.stillMasterOf(chain.term) && (this.progress.sentUpTo(chain.term, chain.to) ?? 0) < this.history.last) this.toLearner(chain.to, chain.term, []);
      return;
    }
    // The member misses transitions: send them first, from history.
    chain.entries = missing(this.history, r.last, chain.batch);
    if (++chain.round >= APPEND_ROUNDS) return this.appendDone(chain, false);
    this.sendAppend(chain);
  }

  private appendDone(chain: AppendChain, ok: boolean): void {
    if (chain.replication && chain.replication === this.replication) this.appendEnded(chain.replication, chain.to, ok);
  }

  private sendCommit(c: { number: number; term: number; heard?: ReadonlySet<number> }, to: readonly number[]): void {
    for (const n of to) {
      if (n === this.config.self || c.heard?.has(n)) continue;
      this.effects.push({ type: 'send', to: n, method: 'commit', args: { term: c.term, history: this.history.id, commit: c.number } });
    }
  }

  // ---------------------------------------------------------------- members: receiving

  /**
   * The one gate for the master's messages. `founding`: the append carries
   * the first transition of a history nothing is committed in yet (a
   * cluster being formed, which asks its candidates).
   */
  private acceptMaster(sender: number, term: number, history: string | null, founding = false): boolean {
    // A master of another cluster history is nobody's master here; a node in
    // no history yet takes part only in forming one, and otherwise joins.
    const mine = this.historyWanted();
    if (mine !== null ? history !== mine : !founding) return false;
    // An evicted incarnation is on its way out: it applies nothing more.
    if (this.phase === 'rejoining' || this.phase === 'closed' || this.phase === 'idle') return false;
    if (term < this.term && !this.config.canaries?.acceptStaleTerm) return false; // M5
    if (!this.config.candidates.includes(sender)) return false; // M6: only candidates are masters
    if (term > this.term || this.master !== sender) {
      if (this.isMaster && term === this.term) return false;
      // One master per term (M3): the first one heard for a term keeps it.
      if (term === this.term && this.master !== undefined) return false;
      if (this.isMaster) this.stepDown(`node ${sender} is master in term ${term}`);
      this.term = term;
      this.setMaster(sender, term);
    }
    this.lastHeardMaster = this.time.now;
    // The master of the term we voted in is heard: the vote has done its
    // part (stickiness goes by the master heard from now on, election.ts).
    if (this.votedFor && term >= this.votedIn) this.votedFor = undefined;
    if ((this.phase === 'member' || this.phase === 'leaving') && !this.quorumOk) {
      this.quorumOk = true;
      this.effects.push({ type: 'quorum', has: true, rule: `heard master ${sender}` });
    }
    return true;
  }

  private onAppend(from: number, a: AppendRequest): { term: number; ok: boolean; last: number; follows?: false } {
    const first = a.entries[0];
    const founding = a.commit === 0 && first?.number === 1 && a.history === historyIdOf(first);
    const refuse = (): { term: number; ok: boolean; last: number } => ({ term: this.term, ok: false, last: this.history.last });
    // Not following this master: refused, and said so (it must not count toward its quorum or lease).
    if (!this.acceptMaster(from, a.term, a.history, founding)) return { ...refuse(), follows: false };
    this.masterHealth = Math.min(MAX_MASTER_HEALTH, a.health ?? 1);
    // The commit it carries covers what this master appended before (its last commit message may never come).
    this.commitHeld(a.commit, a.term);
    let sent = 0;
    for (const e of a.entries) {
      if (e.number <= this.history.last) continue;
      if (e.number <= a.commit && e.number === this.history.last + 1) {
        this.applyEntry(e);
        continue;
      }
      // Held entries before it must be this master's (sent now or before): it vouches for none it did not send.
      const i = e.number - this.history.last - 1;
      if (i > this.held.length || (i > 0 && sent === 0 && (this.pendingFrom !== a.term || this.held[i - 1]!.number > this.vouched))) return refuse();
      // Log matching: an entry held at that number stays when it is the same, else it and what follows it go.
      if (!sameEntry(this.held[i], e)) {
        this.held.length = i;
        this.held.push(e);
      }
      sent = e.number;
    }
    if (sent > 0) {
      this.vouched = this.pendingFrom === a.term ? Math.max(this.vouched, sent) : sent;
      this.pendingFrom = a.term;
      this.commitHeld(a.commit, a.term);
    }
    return { term: this.term, ok: true, last: this.history.last };
  }

  /** Apply the held entries the master of `term` sent and says are committed (up to `commit`). */
  private commitHeld(commit: number, term: number): void {
    if (this.pendingFrom !== term) return;
    const upTo = Math.min(commit, this.vouched);
    while (this.held.length > 0 && this.held[0]!.number <= upTo && this.held[0]!.number === this.history.last + 1) this.applyEntry(this.held[0]!);
  }

  /**
   * The master of `term` says everything up to `commit` is committed. Our
   * held entries count only if that same master sent them: an entry left by
   * an earlier master may not be the one committed at that number (log
   * matching); then we fetch what was committed instead.
   */
  private commitUpTo(commit: number, term: number): void {
    this.commitHeld(commit, term);
    if (commit > this.history.last && this.master !== undefined && this.master !== this.config.self && this.fetching === undefined) {
      this.fetching = this.call(this.master, 'fetch', { after: this.history.last });
    }
  }

  private fetched(value: unknown): void {
    if (value === undefined) return; // the next heartbeat retries
    const r = value as { transitions: unknown[]; snapshot: unknown };
    try {
      if (r.snapshot) {
        const snapshot = parseMessage(snapshotSchema, r.snapshot) as HistorySnapshot;
        // Only a gap no transition bridges (or another history) starts us
        // from the snapshot's members: what lies between is not announced
        // here. An answer to a fetch asked before we caught up (by a join
        // answer, say) reaches back to what we hold: its tail is applied
        // entry by entry, as appends are, with events and callbacks.
        if (snapshot.id !== this.history.id || this.history.last < snapshot.number) {
          const had = this.history.last;
          this.history.install({ ...snapshot, tail: [] });
          this.effects.push({ type: 'installed', had, base: this.history.keyServiceBase() });
        }
        for (const t of snapshot.tail) if (t.number === this.history.last + 1) this.applyEntry(t);
        this.held = this.held.filter((t) => t.number > this.history.last);
        if (this.held[0] && this.held[0].number !== this.history.last + 1) this.held = [];
        return;
      }
      for (const raw of r.transitions) {
        const t = parseMessage(transitionSchema, raw) as Transition;
        if (t.number === this.history.last + 1) this.applyEntry(t);
      }
    } catch {
      // A malformed answer is no answer: the next heartbeat retries.
    }
  }

  /** Commit `t` (the next number) to the history; the driver performs the rest (events, callbacks). */
  private applyEntry(t: Transition): void {
    if (t.number !== this.history.last + 1) return;
    const before = this.history.stateOf(t.node);
    // The held entry at this number goes; so does all that follows it when the committed one differs.
    if (this.held[0] && this.held[0].number <= t.number) {
      if (sameEntry(this.held[0], t)) this.held.shift();
      else this.held = [];
    }
    const info = this.history.append(t);
    this.reports.applied(t);
    this.effects.push({ type: 'apply', t, before, info });
    // A master record from an older term (replayed history) names nobody now.
    if (t.kind === 'master' && t.term >= this.term) this.setMaster(t.node, t.term);
  }

  // ---------------------------------------------------------------- answers

  private onResult(call: number, value: unknown, _code: string | undefined): void {
    const heartbeat = this.heartbeats.get(call);
    if (heartbeat) {
      this.heartbeats.delete(call);
      return this.heartbeatAnswered(heartbeat, value);
    }
    const chain = this.appends.get(call);
    if (chain) {
      this.appends.delete(call);
      return this.appendAnswered(chain, value);
    }
    if (call === this.fetching) {
      this.fetching = undefined;
      return this.fetched(value);
    }
    if (this.election?.e.waiting.has(call)) return this.voteAnswered(call, value);
    if (this.detection.answered(call, value, _code) || this.reports.answered(call, value, _code !== undefined)) return;
    // Anything else answers a call of a former election or incarnation: dropped.
  }

  private reset(why: string, history: History | undefined): void {
    this.failProposals('aborted', why);
    const r = this.replication;
    this.replication = undefined;
    this.advancing = false;
    for (const b of r?.batch ?? []) this.effects.push({ type: 'settle', id: b.proposal, error: { kind: 'aborted', message: why } });
    if (this.election) this.effects.push({ type: 'campaign-done', id: this.election.id, outcome: 'void' });
    this.election = undefined;
    this.appends.clear();
    this.progress.clear();
    this.fetching = undefined;
    this.detection.reset();
    this.reports.reset(history !== undefined);
    this.commitOwed = undefined;
    if (history) {
      this.history = history;
      this.held = [];
      this.master = undefined;
      this.quorumOk = false;
      // A new incarnation: acknowledgements were given to the former one.
      this.lease.forgetAcks();
      // Its timers were stopped, the planned election's wake-up with them:
      // a flag left set would keep this candidate from ever standing again.
      this.electionPlanned = false;
    }
  }
}
