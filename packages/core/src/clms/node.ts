/**
 * CLMS, the cluster membership subsystem: a master-driven membership that
 * every node agrees on.
 *
 * The protocol, in short (docs/membership.md and docs/protocol.md have it
 * in full):
 * - One master per term decides every change. Terms only grow; a node that
 *   has seen term e refuses every membership message of a term below e (M5).
 * - A change is a numbered transition. The master appends it on every
 *   member and commits it once a quorum of the voters acknowledged it, one
 *   change at a time (the single-server-change argument of Raft: any two
 *   quorums of consecutive configurations intersect), then tells everyone.
 *   Voters are the Up members; before any history exists they are the
 *   candidates (bootstrap), so two isolated candidates cannot both form a
 *   cluster.
 * - A candidate becomes master only with votes from a quorum, and a voter
 *   grants its vote only to a candidate whose history is at least as
 *   complete as its own (so every committed transition survives a master
 *   change) and only when it has not heard from a live master within the
 *   failure timeout (so a node cut off from the master cannot depose it).
 * - Nodeup: ComingUp is committed, every member sets up its links and runs
 *   its nodeup callbacks and reports; then Up. Nodedown: verified, confirmed,
 *   fenced, GoingDown committed, every node errors out ICS and runs its
 *   nodedown callbacks and reports; then Down. A node may join again only
 *   after its Down: the cleanup barrier (C1).
 */
import { EventEmitter } from 'eventemitter3';
import { type Clock, realClock, type TimerHandle } from '../clock/index.js';
import { parseOptions } from '../config/index.js';
import { AlreadyStartedError, ClusterInfraError, InvalidArgumentError, InvalidStateError, LeaveFailedError, NotAMemberError, NotMasterError } from '../errors/index.js';
import { canaries } from '../canaries.js';
import { detached } from '../ics/context.js';
import type { Ics } from '../ics/ics.js';
import { checkCallOptions } from '../ics/options.js';
import type { ServiceRegistration } from '../ics/types.js';
import { defaultLogger, type Logger } from '../logging/index.js';
import { cryptoRandom, type RandomSource } from '../random/index.js';
import { heartbeatDetector, type NodedownDetector } from './detector.js';
import { KeyServiceManager, type KeyServiceRegistration } from '../keyservice/index.js';
import { History, historyIdOf } from './protocol/history.js';
import type { OwedReports } from './protocol/barriers.js';
import { LocalHealth } from './protocol/awareness.js';
import { Lease } from './protocol/lease.js';
import { type Build, Core, type Effect, type Message as CoreInput, type Phase } from './protocol/core.js';
import { EffectLoop } from './driver/loop.js';
import { type AdmissionPort, Admissions } from './driver/admission.js';
import { boot, type BootPort } from './driver/boot.js';
import { type JoinPort, Joiner } from './driver/join.js';
import { CLMS } from './driver/serve.js';
import { type ApplyPort, applied } from './driver/apply.js';
import { Callbacks } from './driver/callbacks.js';
import { Events } from './driver/events.js';
import { Incarnations } from './driver/restart.js';
import { type ClusterNodeOptions, clusterNodeOptionsSchema, presets, type ResolvedClusterNodeOptions, type Timing } from './options.js';
import { heardOnly } from './reasons.js';
import { JoinTracker, type RefusedHandshake } from './progress.js';
import { CommunicationHandle } from './communication.js';
import { giveUpAfter, startOptionsSchema, type StartOptions, waitForUp } from './lifecycle.js';
import type {
  ClusterEvents,
  DecisionRecord,
  KeyServiceInfo,
  MemberInfo,
  Membership,
  NodeState,
  Subsystem,
  Transition,
  TransitionKind,
  WatchEvent,
} from './types.js';
import type { Report } from './protocol/messages.js';


export class ClusterNode extends EventEmitter<ClusterEvents> implements AsyncDisposable {
  readonly nodeNum: number;
  readonly clusterName: string;
  readonly candidates: readonly number[];
  readonly timing: Timing;
  private readonly opts: ResolvedClusterNodeOptions;
  /**
   * The clock this node runs on (the `clock` option, or the real one).
   * Packages built on the SDK schedule on it, so that they stay
   * deterministic under a virtual clock with the node.
   */
  readonly clock: Clock;
  private readonly random: RandomSource;
  /**
   * The logger this node was given (the `logger` option; silent by
   * default). Packages built on the SDK log through a child of it
   * (`node.logger.child({ component: 'dlm' })`), so one option quiets or
   * routes everything the application runs on the node.
   */
  readonly logger: Logger;
  private readonly log: Logger;
  private readonly detector: NodedownDetector;
  /** How late this node's own timers run (Lifeguard's self-awareness): stretches its own waits. */
  private readonly health: LocalHealth;
  private readonly keys: KeyServiceManager;
  /** The driver's parts: events and records, subsystem callbacks, what a commit does here, restarts. */
  private readonly events: Events;
  private readonly callbacks: Callbacks;
  private readonly applying: ApplyPort;
  private readonly incarnations: Incarnations;

  private ics!: Ics;
  /**
   * The protocol core: term, vote, master, pending entry, replication and
   * commit decided synchronously (protocol/core.ts); `loop` feeds it and
   * performs its effects (driver/loop.ts).
   */
  private readonly core: Core;
  private readonly loop: EffectLoop;
  /** Sleeps under way (see sleep). */
  private readonly sleepers = new Set<() => void>();
  private timers: TimerHandle[] = [];
  private closeController = new AbortController();

  // ---- master state
  /** While leave() waits: settles it once this incarnation's leave is known to be committed. */
  private leaving: { resolve(): void } | undefined;
  /** What joining waits for (the `joining` event), and handshakes refused lately. */
  private readonly progress: JoinTracker;
  /** What `communication` returns: follows the endpoint across incarnations. */
  private readonly handle = new CommunicationHandle();
  /** What the driver's parts need of this node, each seeing only its own port (driver/boot.ts, join.ts, serve.ts, admission.ts). */
  private readonly ports: BootPort & JoinPort & AdmissionPort;
  /** The master's join handler, and this node's answers to refusals of its own link (driver/admission.ts). */
  private readonly admissions: Admissions;
  /** The join loop and this node's own nodeup (driver/join.ts). */
  private readonly joiner: Joiner;

  constructor(options: ClusterNodeOptions) {
    super();
    this.opts = parseOptions('cluster node', clusterNodeOptionsSchema, options);
    this.nodeNum = this.opts.nodeNum;
    this.clusterName = this.opts.clusterName;
    this.candidates = this.opts.candidates;
    this.timing = { ...presets[this.opts.preset], ...this.opts.timing } as Timing;
    this.clock = this.opts.clock ?? realClock;
    this.random = this.opts.random ?? cryptoRandom;
    this.logger = this.opts.logger ?? defaultLogger();
    this.log = this.logger.child({ component: 'clms', node: this.nodeNum });
    this.health = new LocalHealth({ intervalMs: this.timing.heartbeatIntervalMs, max: this.opts.localHealthMax });
    this.core = new Core(
      {
        self: this.nodeNum,
        candidates: this.candidates,
        quorum: this.opts.quorum,
        formation: this.opts.formation,
        failureTimeoutMs: this.timing.failureTimeoutMs,
        heartbeatIntervalMs: this.timing.heartbeatIntervalMs,
        rpcTimeoutMs: this.timing.rpcTimeoutMs,
        electionStaggerMs: this.timing.electionStaggerMs,
        random: this.random,
        canaries,
        health: this.health,
        hooks: { confirmDown: this.opts.confirmDown !== undefined, fence: this.opts.fence !== undefined },
      },
      new History(this.opts.historyLimit),
    );
    this.loop = new EffectLoop({
      core: this.core,
      clock: this.clock,
      log: this.log,
      service: CLMS,
      ics: () => this.ics,
      timer: (ms, fn) => {
        const t = this.clock.setTimeout(fn, ms);
        this.timers.push(t);
        return t;
      },
      perform: (e) => this.perform(e),
    });
    this.progress = new JoinTracker({ now: () => this.clock.now(), log: this.log, emit: (p) => this.emit('joining', p) });
    const d = this.opts.detector ?? heartbeatDetector();
    this.detector = typeof d === 'function' ? d(this.timing) : d;
    this.events = new Events({ emitter: this, log: this.log });
    this.callbacks = new Callbacks({
      nodeNum: this.nodeNum,
      maxSubsystems: this.opts.maxSubsystems,
      log: this.log,
      emitter: this,
      signal: this.closeController.signal,
      incarnation: () => this.incarnation,
      history: () => this.history,
      term: () => this.term,
      nodeDown: (node, incarnation) => this.ics.nodeDown(node, incarnation),
      report: (r) => this.report(r),
    });
    this.keys = new KeyServiceManager({
      nodeNum: this.nodeNum,
      log: this.log,
      ics: () => this.ics,
      isMaster: () => this.isMaster,
      master: () => this.masterNum,
      historyId: () => this.history.id,
      leaseValid: () => this.keyServiceLease(),
      renewLease: () => this.renewLease(),
      fenceWaitMs: () => this.opts.keyServiceFenceWaitMs ?? (this.opts.fence ? 0 : this.timing.failureTimeoutMs),
      // Read-only: key services only iterate it (no copy per transition).
      members: () => this.history.membersView() as MemberInfo[],
      member: (n) => this.history.member(n),
      propose: (build) => this.propose(build),
      reportReady: (name, epoch) => this.report({ kind: 'keyservice-ready', node: this.nodeNum, incarnation: this.incarnation, keyService: name, epoch }),
      emitKeyService: (info) => {
        this.emit('keyservice', info);
        this.broadcast({ type: 'keyservice', keyService: info });
      },
      emitActivity: (info) => this.emit('keyservice-host', info),
      emitFormed: (formed) => {
        this.emit('formed', { formed });
        this.broadcast({ type: 'formed', formed });
      },
      emitHalted: (keyService, reason) => {
        this.emit('halted', { keyService, reason });
        this.broadcast({ type: 'halted', keyService, reason });
      },
      rpcTimeoutMs: () => this.timing.rpcTimeoutMs,
      failureTimeoutMs: () => this.timing.failureTimeoutMs,
      now: () => this.clock.now(),
      timer: (ms, fn) => this.clock.setTimeout(fn, ms),
    });
    this.applying = {
      nodeNum: this.nodeNum,
      log: this.log,
      emitter: this,
      events: this.events,
      callbacks: this.callbacks,
      keys: this.keys,
      incarnation: () => this.incarnation,
      isMaster: () => this.isMaster,
      history: () => this.history,
      forget: (node) => this.detector.forget(node),
      leaving: () => this.leaving,
      evicted: (t) => this.evicted(t),
      report: (r) => this.report(r),
    };
    this.incarnations = new Incarnations({
      nodeNum: this.nodeNum,
      log: this.log,
      emitter: this,
      callbacks: this.callbacks,
      keys: this.keys,
      autoRejoin: this.opts.autoRejoin,
      historyLimit: this.opts.historyLimit,
      incarnation: () => this.incarnation,
      phase: () => this.phase,
      setPhase: (phase) => (this.phase = phase),
      history: () => this.history,
      step: (input) => this.step(input),
      stopTimers: () => this.stopTimers(),
      ics: () => this.ics,
      boot: (carried) => this.boot(carried),
      close: () => this.close(),
    });
    this.ports = {
      nodeNum: this.nodeNum,
      clusterName: this.clusterName,
      candidates: this.candidates,
      core: this.core,
      loop: this.loop,
      clock: this.clock,
      random: this.random,
      log: this.log,
      timing: this.timing,
      opts: this.opts,
      maxNodes: this.opts.maxNodes,
      health: this.health,
      detector: this.detector,
      progress: this.progress,
      keys: this.keys,
      ics: () => this.ics,
      setIcs: (ics) => (this.ics = ics),
      attach: (ics) => {
        this.keys.attach(ics);
        this.handle.attach(ics);
      },
      step: (input) => this.step(input),
      propose: (build, node) => this.propose(build, node),
      elect: (bootstrap) => this.elect(bootstrap),
      restart: () => this.restart(),
      close: () => this.close(),
      sleep: (ms) => this.sleep(ms),
      addTimer: (t) => void this.timers.push(t),
      tick: () => this.tick(),
      joinLoop: () => this.joiner.loop(),
      record: (r) => this.record(r),
      notify: (t, replayed) => this.notify(t, replayed),
      report: (r) => this.report(r),
      reportReceived: (from, report) => this.answer({ type: 'report', from, report }),
      onJoin: (j, caller) => this.admissions.join(j, caller),
      isJoining: (node, incarnation) => this.admissions.isJoining(node, incarnation),
      admitIncarnation: (node, incarnation) => this.admissions.admitIncarnation(node, incarnation),
      onRefused: (node, reason) => this.admissions.refused(node, reason),
      onLinkLost: (node, incarnation) => this.onLinkLost(node, incarnation),
      grantsLease: (node, incarnation) => this.grantsLease(node, incarnation),
      leaving: () => this.leaving,
      evicted: (t) => this.evicted(t),
      ranNodeup: (node, incarnation) => this.ranNodeup(node, incarnation),
      markCleaned: (node, incarnation) => this.markCleaned(node, incarnation),
      cleanup: (t) => this.cleanup(t),
      runOwnNodeup: (me) => this.runOwnNodeup(me),
    };
    this.admissions = new Admissions(this.ports);
    this.joiner = new Joiner(this.ports);
  }

  // ================================================================ key services

  /**
   * Register a key service this node may host (the seeds' boot entries):
   * register before `start()`, in order of preference. Returns a disposer
   * that unregisters it (as `unregisterKeyService`). docs/key-services.md.
   */
  registerKeyService(reg: KeyServiceRegistration): () => Promise<void> {
    if (this.phase !== 'idle' && this.phase !== 'joining') throw new InvalidStateError('register key services before the node has joined (before start())');
    return this.keys.register(reg);
  }

  /**
   * Stop registering key service `name` on this node, at any time: what it
   * hosts is handed over to another node that registers it (or stops), and
   * the cluster no longer places it here. Resolves once this node's
   * announcement no longer lists it. docs/key-services.md, "Unregistering".
   */
  unregisterKeyService(name: string): Promise<void> {
    return this.keys.unregister(name);
  }

  /** Where key service `name` lives, its epoch, ready or not. */
  keyService(name: string): KeyServiceInfo | undefined {
    return this.keys.info(name);
  }

  keyServices(): KeyServiceInfo[] {
    return this.keys.all();
  }

  /** Every critical key service has a ready host. */
  get formed(): boolean {
    return this.keys.formed;
  }

  /** Set while a critical key service has no eligible node left (the cluster is halted), with the reason. */
  get halted(): { keyService: string; reason: string } | undefined {
    return this.keys.halted();
  }

  /**
   * Key services act only under a lease (K1, K5): a member that heard its
   * master within the failure timeout, or a master that heard a quorum. The
   * others need at least that long to declare this node down and move what
   * it hosts, so a paused or cut-off host stops before a newer one starts,
   * even before its own timers run.
   */
  private keyServiceLease(): boolean {
    if (!this.quorumOk || (this.phase !== 'member' && this.phase !== 'leaving')) return false;
    const now = this.clock.now();
    if (!this.isMaster) return this.lease.memberHolds(now);
    return this.lease.masterHolds(this.nodeNum, this.voters(), now);
  }

  /** As master: `node` (that incarnation) may hold a key-service lease now. */
  private grantsLease(node: number, incarnation: number): boolean {
    const m = this.history.member(node);
    return this.isMaster && this.keyServiceLease() && m?.incarnation === incarnation && (m.state === 'Up' || m.state === 'ComingUp' || m.state === 'ShuttingDown');
  }

  /** As a member: ask the master for a lease (one request at a time); granted, it counts from the sending. */
  private renewLease(): void {
    const master = this.masterNum;
    if (this.lease.asking || this.isMaster || master === undefined || (this.phase !== 'member' && this.phase !== 'leaving')) return;
    this.lease.asking = true;
    const sentAt = this.clock.now();
    const incarnation = this.incarnation;
    void this.ics
      .call(master, CLMS, 'lease', null, { timeoutMs: this.timing.rpcTimeoutMs })
      .then((r) => {
        if ((r as { granted?: unknown }).granted === true && this.incarnation === incarnation && this.masterNum === master) this.lease.granted(sentAt);
      })
      .catch(() => {})
      .finally(() => {
        this.lease.asking = false;
      });
  }

  /** Call a method of key service `name` on its current host (see docs/key-services.md). */
  callKeyService<T = unknown>(name: string, method: string, args?: unknown, options?: { signal?: AbortSignal; timeoutMs?: number; idempotent?: boolean }): Promise<T> {
    try {
      checkCallOptions(options);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.keys.call(name, method, args ?? null, options) as Promise<T>;
  }

  // ================================================================ API

  /**
   * Start: listen, then find the master and join (or form the cluster).
   * Resolves once this node is a member (its ComingUp committed; `whenUp()`
   * waits for Up). With `timeoutMs` or `signal`, gives up when either ends
   * first: the node closes and start() rejects with NotJoinedError
   * (`CLMS_ERR_NOT_JOINED`) carrying the reasons of the last `joining` event.
   */
  async start(options: StartOptions = {}): Promise<this> {
    if (this.phase !== 'idle') throw new AlreadyStartedError(this.phase === 'closed' ? 'start() on a closed node: make a new ClusterNode' : 'start() was called twice');
    const o = parseOptions('start', startOptionsSchema, options);
    const booting = this.boot();
    if (o.timeoutMs === undefined && o.signal === undefined) await booting;
    else await giveUpAfter(booting, { ...o, clock: this.clock, nodeNum: this.nodeNum, reasons: () => this.progress.reasons(), close: () => this.close() });
    // Closed because another live process has our node number (see Admissions.refused).
    if (this.admissions.duplicate) throw this.admissions.duplicate;
    return this;
  }

  /**
   * Resolves when this node is Up (its own Up transition applied, in its
   * current incarnation; at once when it is). Rejects with NodeClosedError
   * (`CLMS_ERR_CLOSED`) when the node closes first, and with the signal's
   * AbortedError when `signal` aborts.
   */
  whenUp(options: { signal?: AbortSignal } = {}): Promise<this> {
    return waitForUp(this, {
      isUp: () => (this.phase === 'member' || this.phase === 'leaving') && this.history.member(this.nodeNum)?.state === 'Up' && this.history.member(this.nodeNum)?.incarnation === this.ics?.incarnation,
      isClosed: () => this.phase === 'closed',
      closed: this.closeController.signal,
      ...options,
    });
  }

  /**
   * Handshakes refused lately, both ways: peers this node refused (a wrong
   * secret or cluster name, a clashing node number) and seeds that refused
   * it. Bounded (the 32 most recent kinds), newest last; `cluster status`
   * reports them.
   */
  refusedHandshakes(): RefusedHandshake[] {
    return this.progress.refused();
  }

  /** What joining waits for now (the reasons of the last `joining` event); empty once joined. */
  joiningReasons(): readonly string[] {
    return this.phase === 'joining' || this.phase === 'rejoining' ? this.progress.reasons() : [];
  }

  /**
   * ICS for the application (services, calls, typed clients): a stable
   * handle that forwards to the endpoint of the current incarnation, so it
   * keeps working after an automatic rejoin (see communication.ts).
   * Undefined before `start()`.
   */
  get communication(): Ics {
    return (this.ics ? this.handle.proxy : undefined) as Ics;
  }

  /** The ICS endpoint of the current incarnation itself: a new one after each rejoin (for tools that follow incarnations). */
  get currentCommunication(): Ics {
    return this.ics;
  }

  get incarnation(): number {
    return this.ics.incarnation;
  }

  get address(): string | undefined {
    return this.ics.address;
  }

  get master(): number | undefined {
    return this.masterNum;
  }

  get currentTerm(): number {
    return this.term;
  }

  get isMaster(): boolean {
    return this.masterNum === this.nodeNum && this.phase === 'member';
  }

  get hasQuorum(): boolean {
    return this.quorumOk;
  }

  get maxNodes(): number {
    return this.opts.maxNodes;
  }

  /** The membership as of the last committed transition. */
  membership(): Membership {
    return { number: this.history.last, term: this.term, master: this.masterNum, members: this.history.members() };
  }

  info(node: number = this.nodeNum): MemberInfo | undefined {
    return this.history.member(node);
  }

  /** Committed transitions after `after` (as far as the bounded history holds them). */
  transitions(after = 0): Transition[] {
    return this.history.since(after);
  }

  transition(number: number): Transition | undefined {
    return this.history.get(number);
  }

  /** The transition after / before `number` (undefined past either end of the kept history). */
  nextTransition(number: number): Transition | undefined {
    return this.history.get(number + 1);
  }

  previousTransition(number: number): Transition | undefined {
    return this.history.get(number - 1);
  }

  get lastTransition(): number {
    return this.history.last;
  }

  /**
   * The name of the history this node follows (null before it has one):
   * the same on every member, late joiners too (it travels with the
   * snapshot). A cluster that re-forms from nothing starts a new history
   * whose transitions, terms and key-service epochs number from the start
   * again: a package that keeps numbers across them (fencing tokens,
   * revisions) compares this first. `compareHistoryIds` orders two of them
   * by founding time (see there for what that promises).
   */
  get historyId(): string | null {
    return this.history.id;
  }

  get firstTransition(): number {
    return this.history.first;
  }

  /** Why nodes went down, quorum was lost, masters changed (bounded, newest last). */
  decisionRecords(): readonly DecisionRecord[] {
    return this.events.decisions;
  }

  /** Replace this node's metadata; replicated as a `meta` transition. */
  async setInfo(meta: Record<string, unknown>): Promise<void> {
    await this.askMaster({ kind: 'meta', node: this.nodeNum, incarnation: this.incarnation, meta });
  }

  registerSubsystem(s: Subsystem): () => void {
    return this.callbacks.register(s);
  }

  /**
   * Transitions from `since` (replayed from history) and then live, in
   * number order, each exactly once; master and quorum changes in between.
   */
  async *watch(options: { since?: number; signal?: AbortSignal } = {}): AsyncGenerator<WatchEvent> {
    const queue: WatchEvent[] = [];
    let wake: (() => void) | undefined;
    const push = (e: WatchEvent): void => {
      queue.push(e);
      wake?.();
    };
    let next = options.since ?? this.history.first;
    for (const t of this.history.since(next - 1)) push({ type: 'transition', transition: { ...t, replayed: true } });
    next = this.history.last + 1;
    const listener = (e: WatchEvent): void => {
      if (e.type === 'transition') {
        if (e.transition.number < next) return;
        next = e.transition.number + 1;
      }
      push(e);
    };
    this.events.watchers.add(listener);
    const signal = options.signal;
    const onAbort = (): void => wake?.();
    signal?.addEventListener('abort', onAbort);
    try {
      while (!signal?.aborted && this.phase !== 'closed') {
        if (queue.length === 0) {
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
          continue;
        }
        yield queue.shift()!;
      }
    } finally {
      this.events.watchers.delete(listener);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Leave the cluster cleanly: resolves once this node's ShuttingDown is
   * committed, then closes. The others run their cleanup and commit Down
   * (this node, gone by then, does not see it). Committed means: the master
   * acknowledged it, this node applied it, or a member refused this
   * incarnation's link because it applied it. A master that dies meanwhile
   * is waited out: the request goes to the next one. Rejects with
   * `LeaveFailedError` when no master acknowledged it within ten failure
   * timeouts; the node did not leave then and is still a member.
   */
  async leave(): Promise<void> {
    if (this.phase !== 'member') return this.close();
    // Key services this node hosts move first, with their data (bounded).
    if (this.keys.hostsAny()) await this.keys.handOverAll();
    const request = { kind: 'leave' as const, node: this.nodeNum, incarnation: this.incarnation };
    try {
      // (A leaving master commits its own ShuttingDown while still master; the
      // others elect a successor once it is gone.)
      if (this.isMaster) {
        await this.askMaster(request);
      } else {
        this.phase = 'leaving';
        await new Promise<void>((resolve, reject) => {
          this.leaving = { resolve };
          this.askMaster(request).then(resolve, reject);
        });
      }
    } catch (err) {
      this.leaving = undefined;
      if (this.currentPhase() === 'leaving') this.phase = 'member';
      if (this.currentPhase() === 'closed') return;
      throw new LeaveFailedError(`node ${this.nodeNum} did not leave: its ShuttingDown was not committed (${(err as Error).message})`, { cause: err });
    }
    this.leaving = undefined;
    await this.close();
  }

  /** Ask the master to declare `node` down (API-driven membership). */
  async declareDown(node: number, reason = 'declared down by API'): Promise<void> {
    const info = this.history.member(node);
    if (!info) throw new NotAMemberError(node);
    await this.askMaster({ kind: 'down', node, incarnation: info.incarnation, reason });
  }

  /** Stop at once: no goodbye to the cluster (the others will detect it). Idempotent. */
  async close(): Promise<void> {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.closeController.abort(new ClusterInfraError('CORE_ERR_ABORTED', 'node closed'));
    this.detector.stop?.();
    this.opts.discovery?.close?.();
    this.keys.close();
    this.stopTimers();
    this.step({ type: 'reset', why: 'node closed', history: undefined });
    for (const w of this.events.watchers) w({ type: 'quorum', hasQuorum: false });
    await this.ics?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ================================================================ boot and join

  /** Begin an incarnation (driver/boot.ts); `carried`: services the application registered on the former one. */
  private boot(carried: ServiceRegistration[] = []): Promise<void> {
    return boot(this.ports, carried);
  }

  /** This node's own nodeup, once it is ComingUp in its history (driver/join.ts). */
  private runOwnNodeup(me: MemberInfo): Promise<void> {
    return this.callbacks.runOwnNodeup(me);
  }

  // ---- the protocol core (protocol/core.ts): its state, read here; its decisions, made there

  private get history(): History {
    return this.core.history;
  }

  private get term(): number {
    return this.core.term;
  }

  private get masterNum(): number | undefined {
    return this.core.master;
  }

  private get lastHeardMaster(): number {
    return this.core.lastHeardMaster;
  }

  private set lastHeardMaster(at: number) {
    this.core.lastHeardMaster = at;
  }

  private get quorumOk(): boolean {
    return this.core.quorumOk;
  }

  private get phase(): Phase {
    return this.core.phase;
  }

  private set phase(p: Phase) {
    this.core.phase = p;
  }

  /** Key-service leases, as a member and as a master (protocol/lease.ts; the master's quorum check reads them). */
  private get lease(): Lease {
    return this.core.lease;
  }

  /** Reports this node owes the master, resent on ticks until acknowledged (protocol/reports.ts). */
  private get owedReports(): OwedReports {
    return this.core.reports.owed;
  }

  /** Feed the core one input, then perform what it decided (driver/effects.ts). */
  private step(input: CoreInput): void {
    this.loop.step(input);
  }

  /** An input the core answers later, with `respond` (a report received, a request of ours). */
  private answer(input: { type: 'report'; from: number; report: Report } | { type: 'ask'; report: Report }): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const id = this.loop.expect(resolve, reject);
      this.step({ ...input, id } as CoreInput);
    });
  }

  private setMaster(master: number | undefined, term: number): void {
    this.step({ type: 'master', master, term });
  }

  /** Voters: the Up members (the candidates before any history exists). */
  private voters(): number[] {
    return this.core.voters();
  }

  /**
   * Stand for election; `bootstrap` when no history exists yet. Resolves
   * 'refused' when the pre-vote found no quorum (the voters still hear a
   * master, or have a fuller history): no term was raised, so no split
   * vote to back off from.
   */
  private elect(bootstrap: boolean): Promise<'refused' | undefined> {
    return new Promise((resolve) => {
      const id = this.loop.expect((outcome) => resolve(outcome === 'refused' ? 'refused' : undefined));
      this.step({ type: 'campaign', id, bootstrap });
    });
  }

  /**
   * Queue a change; the master commits changes one at a time (protocol/core.ts).
   * `node`: the change is about that node and `build` reads only its state,
   * so it may share an append round with changes of other nodes.
   */
  private propose(build: Build, node?: number): Promise<Transition | undefined> {
    return new Promise((resolve, reject) => {
      const id = this.loop.expect((t) => resolve(t as Transition | undefined), reject);
      // The commit loop outlives whichever handler proposed the change.
      detached(() => this.step({ type: 'propose', id, build, ...(node === undefined ? {} : { node }) }));
    });
  }

  /** What the core decided, performed: the driver's half of each effect. */
  private perform(e: Effect): void {
    switch (e.type) {
      case 'master':
        this.emit('master', { master: e.master, term: e.term });
        this.broadcast({ type: 'master', master: e.master, term: e.term });
        return;
      case 'stepped-down':
        this.log.warn({ term: this.term, why: e.why }, 'stepping down as master');
        return;
      case 'quorum': {
        const rule = typeof e.rule === 'string' ? e.rule : heardOnly(this.nodeNum, new Set(e.rule.heard), e.rule.voters, e.rule.what);
        // A node without quorum stops hosting at once (K5).
        if (e.has) this.keys.quorumRegained();
        else this.keys.quorumLost();
        this.record({ kind: e.has ? 'quorum-regained' : 'quorum-lost', term: this.term, time: this.clock.wallNow(), rule });
        this.emit('quorum', { hasQuorum: e.has });
        this.broadcast({ type: 'quorum', hasQuorum: e.has });
        return;
      }
      case 'apply':
        // Effects (callbacks, cleanup, reports) outlive the message that committed t.
        return detached(() => applied(this.applying, e.t, e.before, e.info));
      case 'pre-vote':
        if (e.bootstrap) {
          const rule = e.allCandidates ? 'all-candidates' : this.opts.quorum === 'majority' ? this.opts.formation : 'quorum';
          this.progress.electionWaits(e.enough ? [] : e.voters.filter((v) => !e.granted.includes(v)), rule, e.voters);
        }
        return;
      case 'elected':
        return this.elected(e);
      default:
        return this.performDetection(e);
    }
  }

  /** The effects of the nodedown path and of reports (protocol/detection.ts, reports.ts). */
  private performDetection(e: Effect): void {
    switch (e.type) {
      case 'consult-detector':
        if (this.detector.linkLost(e.node, this.clock.now())) this.step({ type: 'suspect', node: e.node, reason: e.reason, observers: e.observers });
        return;
      case 'heard-alive':
        return this.detector.heard(e.node, this.clock.now(), e.health);
      case 'check-detector': {
        const observer = String(this.nodeNum);
        const found = this.detector.check(this.clock.now(), e.members, this.health.multiplier);
        return this.step({ type: 'detector-checked', suspects: found.map((s) => ({ node: s.node, reason: s.reason, observers: { [observer]: `${this.detector.name}: ${s.reason}` }, deadline: s.deadline })) });
      }
      case 'stand':
        return void this.elect(false).then((outcome) => this.step({ type: 'stood', refused: outcome === 'refused' }));
      case 'evicted':
        return void this.evicted({ number: this.history.last, term: this.term, kind: 'state', node: this.nodeNum, incarnation: this.incarnation, from: 'Up', to: 'GoingDown', cause: e.cause, time: this.clock.wallNow() });
      case 'hook':
        return detached(() => this.runHook(e));
      case 'record': {
        const r = e.record;
        return this.record({ kind: 'down', node: r.node, term: r.term, time: this.clock.wallNow(), rule: r.rule, ...(r.detector ? { detector: this.detector.name } : {}), observers: r.observers, ...(r.tookMs !== undefined ? { tookMs: r.tookMs } : {}), ...(r.timings ? { timings: r.timings } : {}) });
      }
      case 'log':
        return e.level === 'error' ? this.log.error(e.data, e.message) : this.log.info(e.data, e.message);
      case 'master-silent':
        return this.tick();
      case 'ready-report':
        return this.keys.commitReady(e.keyService, e.epoch, e.from);
      default:
        return;
    }
  }

  /** Run a policy hook (confirmDown, fence); its answer goes back to the core. */
  private runHook(e: Extract<Effect, { type: 'hook' }>): void {
    const confirm = this.opts.confirmDown;
    const fence = this.opts.fence;
    const run = async (): Promise<boolean> => {
      if (e.hook === 'confirm-down') return Boolean(await confirm?.(e.node, e.reason));
      await fence?.(e.node, e.incarnation);
      return true;
    };
    void run().then(
      (ok) => this.step({ type: 'hook-answer', id: e.id, ok }),
      (err: unknown) => this.step({ type: 'hook-answer', id: e.id, ok: false, error: (err as Error)?.message }),
    );
  }

  private elected(e: Extract<Effect, { type: 'elected' }>): void {
    const { term, bootstrap, voters } = e;
    this.log.info({ term, votes: e.granted }, 'elected master');
    // Silences measured in an earlier mastership of ours are stale: each member starts afresh.
    for (const n of this.history.nodesIn('Up', 'ComingUp', 'ShuttingDown')) this.detector.forget(n);
    this.record({ kind: 'master', node: this.nodeNum, term, time: this.clock.wallNow(), rule: `elected with votes from ${e.granted.join(', ')} of voters ${voters.join(', ')}` });
    // The entry of the previous term we held uncommitted is proposed by the core already, first.
    // (Failures surface as quorum loss; nobody awaits these.)
    const quiet = (p: Promise<unknown>): void => void p.catch(() => {});
    if (bootstrap) {
      // A new history: where key services lived in a former one no longer holds (their epochs go on above it).
      this.keys.reset();
      quiet(this.propose(() => ({
        kind: 'state',
        node: this.nodeNum,
        incarnation: this.incarnation,
        from: this.history.stateOf(this.nodeNum),
        to: 'ComingUp',
        cause: 'formed the cluster',
        address: this.ics.address ?? '',
        meta: this.opts.meta,
        keyServices: this.keys.hosted(),
      })));
      quiet(this.propose(() => ({ kind: 'state', node: this.nodeNum, incarnation: this.incarnation, from: 'ComingUp', to: 'Up', cause: 'formed the cluster' })));
    }
    quiet(this.propose(() => ({
      kind: 'master',
      node: this.nodeNum,
      incarnation: this.incarnation,
      from: this.history.stateOf(this.nodeNum),
      to: this.history.stateOf(this.nodeNum),
      cause: `master for term ${term}`,
    })));
    // Only now may key services ask for moves: their proposals queue behind
    // the carried entry, which a former quorum may already have committed.
    this.keys.quorumRegained();
    // Barriers of the former master are rebuilt from the history; a master we lost is suspected.
    this.step({ type: 'master-ready' });
    // Elected by a quorum: a node that had lost its quorum has it again, and says so (as a member does on hearing a master).
    if (!e.hadQuorum) {
      this.emit('quorum', { hasQuorum: true });
      this.broadcast({ type: 'quorum', hasQuorum: true });
    }
  }

  // ================================================================ applying, callbacks, restarts (driver/apply.ts, callbacks.ts, restart.ts)

  private cleanup(t: Transition): Promise<void> {
    return this.callbacks.cleanup(t);
  }

  private ranNodeup(node: number, incarnation: number): boolean {
    return this.callbacks.ranNodeup(node, incarnation);
  }

  private markCleaned(node: number, incarnation: number): boolean {
    return this.callbacks.markCleaned(node, incarnation);
  }

  private evicted(t: Transition): Promise<void> {
    return this.incarnations.evicted(t);
  }

  private restart(): Promise<void> {
    return this.incarnations.restart();
  }

  // ================================================================ reports (decided in protocol/reports.ts)

  /** This node owes the master `r` (a barrier, a ready key service): sent until acknowledged. */
  private report(r: Report): void {
    this.step({ type: 'owe', report: r });
  }

  /** Ask the master to do something (leave, down, meta); resolves once a master acknowledged it. */
  private async askMaster(r: Report): Promise<void> {
    await this.answer({ type: 'ask', report: r });
  }

  // ================================================================ heartbeats and detection

  /**
   * Every heartbeat interval: what the driver keeps (ready reports of key
   * services, a member's key-service lease and its own nodeup), then the
   * core's `interval` (protocol/core.ts): heartbeats and the quorum as
   * master, the master's silence and elections as member.
   */
  private tick(): void {
    if (this.phase === 'closed') return;
    // Ready reports: dropped once the history says ready (or the epoch
    // ended); a master offers its own to itself again.
    for (const r of this.owedReports.reports()) {
      if (r.kind !== 'keyservice-ready' || !r.keyService || r.epoch === undefined) continue;
      if (!this.keys.awaitsReady(r.keyService, r.epoch)) this.owedReports.forget(r);
      else if (this.isMaster) this.keys.commitReady(r.keyService, r.epoch, this.nodeNum);
    }
    if (!this.isMaster && this.phase === 'member') {
      // A host keeps its key-service lease fresh.
      if (this.keys.hostsAny()) this.renewLease();
      // A founder deposed before it committed its own Up finishes joining as any joiner does.
      const me = this.history.member(this.nodeNum);
      if (me?.state === 'ComingUp' && me.incarnation === this.incarnation) void this.runOwnNodeup(me);
    }
    this.step({ type: 'interval' });
  }

  /** The transport lost a link: a fast hint (a killed process closes its sockets); the core decides (protocol/detection.ts). */
  private onLinkLost(node: number, incarnation: number): void {
    this.step({ type: 'link-lost', node, incarnation });
  }

  // ================================================================ helpers

  private notify(t: Transition, replayed = false): void {
    this.events.notify(t, replayed);
  }

  private broadcast(e: WatchEvent): void {
    this.events.broadcast(e);
  }

  private record(r: DecisionRecord): void {
    this.events.record(r);
  }

  /** The phase, read fresh (it changes across awaits; TypeScript's narrowing does not know). */
  private currentPhase(): typeof this.phase {
    return this.phase;
  }

  /**
   * Wait `ms`. A restart or close cuts every sleep short (they resolve):
   * loops re-check their conditions and end, instead of hanging with their
   * flags set (a commit loop asleep at a restart kept `committing` for ever,
   * and the next incarnation, master, never committed anything).
   */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        this.sleepers.delete(wake);
        resolve();
      };
      this.sleepers.add(wake);
      this.timers.push(this.clock.setTimeout(wake, ms));
    });
  }

  /** Cancel every timer of this incarnation, and end its sleeps. */
  private stopTimers(): void {
    for (const t of this.timers) t.cancel();
    this.timers = [];
    for (const wake of [...this.sleepers]) wake();
  }
}

/** Create a cluster node; `await node.start()` joins (or forms) the cluster. */
export function createClusterNode(options: ClusterNodeOptions): ClusterNode {
  return new ClusterNode(options);
}

export type { NodeState, TransitionKind };
