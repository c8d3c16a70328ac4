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
import { type Clock, every, realClock, type TimerHandle } from '../clock/index.js';
import { parseOptions } from '../config/index.js';
import { AlreadyStartedError, ClusterInfraError, DuplicateNodeError, InvalidArgumentError, InvalidStateError, LeaveFailedError, NotAMemberError, NotMasterError, ServiceExistsError } from '../errors/index.js';
import { canaries } from '../canaries.js';
import { detached } from '../ics/context.js';
import { createIcs, type Ics } from '../ics/ics.js';
import { checkCallOptions } from '../ics/options.js';
import { IcsStatusError } from '../ics/status.js';
import type { HandlerContext, ServiceRegistration } from '../ics/types.js';
import { defaultLogger, type Logger } from '../logging/index.js';
import { cryptoRandom, type RandomSource } from '../random/index.js';
import { heartbeatDetector, type NodedownDetector } from './detector.js';
import { KeyServiceManager, type KeyServiceRegistration } from '../keyservice/index.js';
import { type HistorySnapshot, History, historyIdOf } from './protocol/history.js';
import type { OwedReports } from './protocol/barriers.js';
import { LocalHealth } from './protocol/awareness.js';
import { newcomerCheck, newcomerVerdict } from './protocol/identity.js';
import { Lease } from './protocol/lease.js';
import { type Build, Core, type Effect, type Message as CoreInput, type Phase } from './protocol/core.js';
import { EffectLoop } from './driver/loop.js';
import { type ApplyPort, applied } from './driver/apply.js';
import { Callbacks, syntheticTransition } from './driver/callbacks.js';
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
import {
  appendSchema,
  fetchSchema,
  heartbeatSchema,
  joinSchema,
  type JoinRequest,
  parseMessage as parse,
  probeTargetSchema,
  type Report,
  reportSchema,
  snapshotSchema,
  voteSchema,
} from './protocol/messages.js';

const CLMS = { channel: 'clms', subservice: 1 } as const;

const TIMED_OUT = Symbol('timed out');
/** Join handlers that may wait for their commit at once; later joins are answered 'queued' at once. */
const MAX_JOIN_WAITERS = 64;
const PROBE = { channel: 'clms-probe', subservice: 1 } as const;

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
  private joining: Promise<void> | undefined;
  /** Set when a member refused this node as a second process with its node number: start() rejects with it. */
  private duplicate: DuplicateNodeError | undefined;

  // ---- master state
  /** Join proposals not settled yet, by node (see onJoin). */
  /** While leave() waits: settles it once this incarnation's leave is known to be committed. */
  private leaving: { resolve(): void } | undefined;
  /** Join handlers waiting for their commit (at most MAX_JOIN_WAITERS). */
  private joinWaiters = 0;
  private readonly joinsUnderWay = new Map<number, { incarnation: number; committed: Promise<Transition | undefined> }>();
  /** What joining waits for (the `joining` event), and handshakes refused lately. */
  private readonly progress: JoinTracker;
  /** What `communication` returns: follows the endpoint across incarnations. */
  private readonly handle = new CommunicationHandle();

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
    // Closed because another live process has our node number (see onRefused).
    if (this.duplicate) throw this.duplicate;
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

  /** `carried`: services the application registered on the former incarnation's ICS. */
  private async boot(carried: ServiceRegistration[] = []): Promise<void> {
    this.ics = createIcs({
      transport: this.opts.transport,
      clusterName: this.clusterName,
      nodeNum: this.nodeNum,
      clock: this.clock,
      random: this.random,
      logger: this.opts.logger ?? defaultLogger(),
      peers: (n) => this.history.member(n)?.address || undefined,
      admitIncarnation: (q: { node: number; incarnation: number }) => this.admitIncarnation(q.node, q.incarnation),
      // One death, one answer: a call in flight on a lost link waits for this node's verdict on its peer.
      linkLossGraceMs: this.timing.failureTimeoutMs,
      ...(this.opts.ics as object),
      ...(canaries.reuseIncarnation && this.ics ? { incarnation: this.ics.incarnation } : {}),
    });
    this.registerServices();
    this.keys.attach(this.ics);
    this.handle.attach(this.ics);
    for (const reg of carried) {
      try {
        this.ics.registerService(reg);
      } catch (err) {
        // CLMS and key services registered theirs again already.
        if (!(err instanceof ServiceExistsError)) throw err;
      }
    }
    this.ics.on('link', (e) => {
      if (e.state === 'down') this.onLinkLost(e.node, e.incarnation);
    });
    this.ics.on('refused', (e) => this.onRefused(e.node, e.reason));
    this.ics.on('rejected', (info) => {
      // This very node dialling itself (its own address among the seeds) is no news.
      if (info.remote?.nodeNum !== this.nodeNum || info.remote.incarnation !== this.incarnation) this.progress.refusedInbound(info.remoteAddress, info.error, info.remote?.nodeNum);
    });
    try {
      await this.ics.start();
    } catch (err) {
      // Closed while this incarnation began: nothing to start.
      if (this.currentPhase() === 'closed') return;
      throw err;
    }
    if (this.currentPhase() === 'closed') {
      await this.ics.close();
      return;
    }
    this.phase = 'joining';
    let due = this.clock.now() + this.timing.heartbeatIntervalMs;
    this.timers.push(
      every(this.clock, this.timing.heartbeatIntervalMs, () => {
        // Our own lateness first: the tick then judges silences with it.
        this.health.tick(due, this.clock.now());
        this.tick();
        due = this.clock.now() + this.timing.heartbeatIntervalMs;
      }),
    );
    this.detector.start?.({
      self: this.nodeNum,
      clock: this.clock,
      timing: this.timing,
      // Verified as master, reported to the master as a member (protocol/detection.ts).
      suspect: (node, reason) => detached(() => this.step({ type: 'suspect', node, reason, observers: { [this.detector.name]: reason } })),
    });
    this.progress.begin(this.incarnation);
    this.joining = this.joinLoop();
    await this.joining;
  }

  /** Probe seeds until a master admits us, or (as a candidate) form the cluster. */
  private async joinLoop(): Promise<void> {
    const index = this.candidates.indexOf(this.nodeNum);
    const began = this.clock.now();
    const ics = this.ics;
    let attempts = 0;
    // Rounds in a row in which no master answered: a node that cannot stand
    // for election probes less and less often (up to the failure timeout),
    // so hundreds of nodes started at once do not drown the candidates in
    // probes while they elect the first master.
    let unanswered = 0;
    // A master that queued our join: asked again directly, without probing.
    let queuedAt: number | undefined;
    // When this incarnation last asked a master to join, and since when no master answers.
    let asked = false;
    let lastFound = began;
    // One loop per incarnation: a former incarnation's loop (woken by the restart) ends.
    while ((this.phase === 'joining' || this.phase === 'rejoining') && this.ics === ics) {
      attempts++;
      let wait = this.timing.joinRetryMs;
      const master = queuedAt ?? (await this.findMaster());
      queuedAt = undefined;
      unanswered = master === undefined && index < 0 ? unanswered + 1 : 0;
      if (unanswered > 1) wait = Math.min(this.timing.failureTimeoutMs, this.timing.joinRetryMs * 2 ** Math.min(unanswered - 1, 16));
      if (master !== undefined) lastFound = this.clock.now();
      if (master === undefined && asked && this.clock.now() - lastFound > this.timing.failureTimeoutMs * 10) {
        // We asked a master to join, then nobody answers any more: the join
        // may have been committed and this incarnation declared down since,
        // and the others refuse its links, so they cannot even tell us.
        this.log.warn({ silentMs: this.clock.now() - lastFound }, 'no master answers since we asked to join: starting again as a new incarnation');
        void this.restart();
        return;
      }
      if (master !== undefined && master !== this.nodeNum) {
        asked = true;
        const r = await this.tryJoin(master);
        if (r === 'joined') return;
        if (r === 'queued') queuedAt = master;
      } else if ((this.history.last > 0 || this.pending !== undefined) && this.clock.now() - Math.max(began, this.lastHeardMaster) > this.timing.failureTimeoutMs * 6) {
        // We acknowledged the first transitions of a cluster as a candidate
        // (committed or not), then its master went before we joined, and
        // nobody we can reach holds that history: start again as a new
        // incarnation, empty (a pending founding entry would otherwise refuse
        // every other founding for ever).
        this.log.warn({ last: this.history.last }, 'the cluster we were joining has no master left: starting again');
        void this.restart();
        return;
      } else if (index >= 0 && this.history.last === 0 && this.pending === undefined && attempts > 1 + index) {
        // Nobody answers as master: stand for election with the other candidates.
        await this.elect(true);
        if (this.isMaster || this.currentPhase() === 'member') return;
      }
      if (this.phase !== 'joining' && this.phase !== 'rejoining') return;
      this.progress.publish();
      await this.sleep(wait + this.random.int(wait));
    }
  }

  /** Addresses from the configured discovery, bounded; a failing source counts as none. */
  private async discovered(): Promise<string[]> {
    if (!this.opts.discovery) return [];
    try {
      const found = await this.opts.discovery.addresses();
      return Array.isArray(found) ? found.filter((a) => typeof a === 'string' && a.length > 0).slice(0, this.opts.maxNodes) : [];
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'discovery failed; probing the static seeds only');
      return [];
    }
  }

  /** Ask every seed (and known member) who the master is. */
  private async findMaster(): Promise<number | undefined> {
    const addresses = new Set(this.opts.seeds);
    for (const a of await this.discovered()) addresses.add(a);
    for (const m of this.history.members()) if (m.address && m.node !== this.nodeNum) addresses.add(m.address);
    // Seeds often list every node, this one too: it has nothing to say to itself.
    if (this.ics.address) addresses.delete(this.ics.address);
    const failures = new Map<string, unknown>();
    let answered = 0;
    const answers = await Promise.all(
      [...addresses].map(async (address) => {
        try {
          const node = await this.ics.connectAddress(address, { timeoutMs: this.timing.rpcTimeoutMs });
          if (node === this.nodeNum) return undefined;
          const r = (await this.ics.call(node, PROBE, 'whoIsMaster', null, { timeoutMs: this.timing.rpcTimeoutMs })) as {
            master: number | null;
            term: number;
            address: string | null;
          };
          answered++;
          return r.master === null ? undefined : r;
        } catch (err) {
          failures.set(address, err);
          return undefined;
        }
      }),
    );
    let best: { master: number | null; term: number; address: string | null } | undefined;
    for (const a of answers) if (a && (!best || a.term > best.term)) best = a;
    this.progress.probed({ tried: addresses.size, answered, failures, master: best?.master ?? undefined }, this.candidates.includes(this.nodeNum), this.candidates);
    if (!best || best.master === null || best.master === this.nodeNum) return undefined;
    if (best.address) {
      try {
        await this.ics.connectAddress(best.address, { timeoutMs: this.timing.rpcTimeoutMs });
      } catch {
        return undefined;
      }
    }
    return best.master;
  }

  /** 'queued': the master has our join in its queue; ask it again. */
  private async tryJoin(master: number): Promise<'joined' | 'queued' | 'failed'> {
    let r: { ok: boolean; reason?: string; evicted?: boolean; queued?: boolean; snapshot?: unknown };
    try {
      r = (await this.ics.call(
        master,
        CLMS,
        'join',
        { incarnation: this.incarnation, address: this.ics.address ?? '', meta: this.opts.meta, keyServices: this.keys.hosted() },
        { timeoutMs: this.timing.rpcTimeoutMs * 4 },
      )) as typeof r;
    } catch (err) {
      this.log.debug({ master, err: (err as Error).message }, 'join failed');
      this.progress.joinAnswer(master, `no answer (${(err as Error).message})`);
      return 'failed';
    }
    this.progress.joinAnswer(master, r.ok || r.queued === true ? undefined : r.reason ?? 'no reason given');
    if (!r.ok && r.evicted === true) {
      this.log.warn({ master, reason: r.reason }, 'this incarnation was declared down: starting again as a new one');
      void this.restart();
      return 'joined';
    }
    if (!r.ok && r.queued === true) return 'queued';
    if (!r.ok || !r.snapshot) {
      this.log.info({ master, reason: r.reason }, 'join refused for now');
      return 'failed';
    }
    const snapshot = parse(snapshotSchema, r.snapshot) as HistorySnapshot;
    const had = this.history.last;
    if (had > 0) {
      // What we applied before (e.g. bootstrap appends) must be the master's
      // history too; a node holding another history cannot be reconciled and
      // starts again as a new incarnation.
      for (const t of snapshot.tail) {
        if (t.number > had) break;
        const mine = this.history.get(t.number);
        if (mine && (mine.term !== t.term || mine.node !== t.node || mine.kind !== t.kind || mine.to !== t.to || mine.incarnation !== t.incarnation)) {
          this.log.warn({ number: t.number }, 'my history differs from the master\'s: starting again as a new incarnation');
          void this.restart();
          return 'joined';
        }
      }
    }
    // A late joiner starts from the master's snapshot plus its tail; it is
    // told about every transition it had not applied yet, in order. An
    // answer that comes after this node, as a follower, applied beyond its
    // snapshot (the join answer was slow) would take its history back in
    // time, and the transitions it already applied would come again: it
    // keeps what it has (the entries both hold were compared above).
    const last = snapshot.tail.at(-1)?.number ?? snapshot.number;
    if (last > had || this.history.id !== snapshot.id) {
      this.history.install(snapshot);
      // An entry left pending by another history (or master) is not this one's.
      this.pending = undefined;
      const news = joinedAt(snapshot.tail, this.nodeNum, this.incarnation);
      for (const t of snapshot.tail) if (t.number > had) this.notify(t, t.number < news);
      // The key-service view is rebuilt from the tail.
      this.keys.reset();
      for (const t of snapshot.tail) this.keys.applied(t);
    }
    this.phase = 'member';
    this.everJoined = true;
    this.lastHeardMaster = this.clock.now();
    this.setMaster(master, Math.max(this.term, snapshot.tail.at(-1)?.term ?? snapshot.term));
    // Our ComingUp is in the history: run nodeup for every member, then report.
    const me = this.history.member(this.nodeNum);
    if (me?.state === 'ComingUp' && me.incarnation === this.incarnation) void this.runOwnNodeup(me);
    // Members already on their way down when we joined wait for every member's
    // cleanup, ours included. Those we never saw up have nothing to call
    // back, but their links are refused and the master hears we are done;
    // those we ran nodeup for (we applied their ComingUp as a follower before
    // our join was answered) get their nodedown callbacks like anywhere else.
    for (const m of this.history.members()) {
      if (m.node === this.nodeNum || (m.state !== 'GoingDown' && m.state !== 'ShuttingDown')) continue;
      if (!this.ranNodeup(m.node, m.incarnation)) this.markCleaned(m.node, m.incarnation);
      void this.cleanup(this.history.get(m.since) ?? this.syntheticTransition(m));
    }
    return 'joined';
  }

  private runOwnNodeup(me: MemberInfo): Promise<void> {
    return this.callbacks.runOwnNodeup(me);
  }

  private syntheticTransition(m: MemberInfo): Transition {
    return syntheticTransition(m, this.term);
  }

  // ================================================================ services

  private registerServices(): void {
    this.ics.registerService({
      ...PROBE,
      name: 'clms.probe',
      handlers: {
        whoIsMaster: () => {
          // Only a master we heard lately, as a member, is worth naming: a stale
          // name sends joiners knocking on a door that no longer opens.
          const fresh = this.isMaster || (this.phase === 'member' && this.clock.now() - this.lastHeardMaster <= this.timing.failureTimeoutMs);
          const master = fresh ? this.masterNum : undefined;
          return {
            master: master ?? null,
            term: this.term,
            address: master !== undefined ? (this.history.member(master)?.address ?? (master === this.nodeNum ? (this.ics.address ?? null) : null)) : null,
          };
        },
      },
    });
    this.ics.registerService({
      ...CLMS,
      name: 'clms',
      // A join waits for its commit (bounded, see onJoin): up to one handler
      // per joining node, so room for every node and the reports besides.
      pool: { max: Math.max(256, this.opts.maxNodes + 64), queue: 4096, priorityReserve: 64 },
      handlers: {
        vote: (a, ctx) => this.request({ type: 'vote', id: this.loop.id(), from: ctx.caller.nodeNum, req: parse(voteSchema, a) }),
        append: (a, ctx) => this.request({ type: 'append', id: this.loop.id(), from: ctx.caller.nodeNum, req: parse(appendSchema, a) }),
        commit: (a, ctx) => {
          this.step({ type: 'commit', from: ctx.caller.nodeNum, req: parse(heartbeatSchema, a) });
          return null;
        },
        heartbeat: (a, ctx) => {
          const r = this.request({ type: 'heartbeat', id: this.loop.id(), from: ctx.caller.nodeNum, req: parse(heartbeatSchema, a) }) as { term: number; last: number };
          // `health`: our local-health multiplier, so the master gives a starved member as much longer to answer.
          return { ...r, incarnation: this.incarnation, health: this.health.multiplier };
        },
        join: (a, ctx) => this.onJoin(parse(joinSchema, a), ctx),
        report: (a, ctx) => this.answer({ type: 'report', from: ctx.caller.nodeNum, report: parse(reportSchema, a) }),
        fetch: (a, ctx) => {
          this.allowOnly('fetch', this.isMemberOrJoiner(ctx.caller), ctx);
          return this.onFetch(parse(fetchSchema, a));
        },
        alive: () => ({ incarnation: this.incarnation }),
        lease: (_a, ctx) => ({ granted: this.grantsLease(ctx.caller.nodeNum, ctx.caller.incarnation) }),
        probe: (a, ctx) => {
          this.allowOnly('probe', this.isCurrentMaster(ctx.caller), ctx);
          return this.onProbe(parse(probeTargetSchema, a));
        },
      },
    });
  }

  // ---- who may ask what

  /**
   * Any peer that knows the secret can call these services; a membership
   * request that makes this node work or wait on someone's behalf (probe:
   * a call to a third node, held up to a failure timeout; fetch: the whole
   * history) is served only to those the protocol sends it: refused at once
   * otherwise, so a rogue or confused peer holds no handler slot.
   */
  private allowOnly(what: string, allowed: boolean, ctx: HandlerContext): void {
    if (allowed) return;
    throw new IcsStatusError('PERMISSION_DENIED', `clms.${what} is not served to node ${ctx.caller.nodeNum} (incarnation ${ctx.caller.incarnation})`);
  }

  /** The master of the current term, as this node knows it (probes are its verification). */
  private isCurrentMaster(caller: HandlerContext['caller']): boolean {
    return caller.nodeNum === this.masterNum && caller.nodeNum !== this.nodeNum && this.history.member(caller.nodeNum)?.incarnation === caller.incarnation;
  }

  /** A member of this history (any state but Down), or a node whose join is under way here. */
  private isMemberOrJoiner(caller: HandlerContext['caller']): boolean {
    const m = this.history.member(caller.nodeNum);
    if (m && m.incarnation === caller.incarnation && m.state !== 'Down') return true;
    return this.joinsUnderWay.get(caller.nodeNum)?.incarnation === caller.incarnation;
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

  private get pending(): Transition | undefined {
    return this.core.pending;
  }

  private set pending(t: Transition | undefined) {
    this.core.pending = t;
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

  private get everJoined(): boolean {
    return this.core.everJoined;
  }

  private set everJoined(v: boolean) {
    this.core.everJoined = v;
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

  /** A request the core answers (vote, append, heartbeat): its reply. */
  private request(input: CoreInput & { id: number }): unknown {
    return this.loop.request(input);
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

  // ================================================================ members: serving

  private onFetch(f: { after: number }): { transitions: Transition[]; snapshot: HistorySnapshot | null } {
    if (f.after < this.history.first - 1) return { transitions: [], snapshot: this.history.snapshot() };
    return { transitions: this.history.since(f.after, 10_000), snapshot: null };
  }

  private async onProbe(p: { node: number; timeoutMs?: number | undefined }): Promise<{ reachable: boolean }> {
    const timeoutMs = Math.min(p.timeoutMs ?? this.timing.rpcTimeoutMs, this.timing.failureTimeoutMs);
    const dueAt = this.clock.now() + timeoutMs;
    try {
      await this.ics.call(p.node, CLMS, 'alive', null, { timeoutMs });
      return { reachable: true };
    } catch (err) {
      // Our timeout fired late: our own loop was slow, and the answer may be
      // waiting unread. That is no evidence against the node (the master
      // counts a failed probe as none).
      if (this.health.lateBy(this.clock.now() - dueAt)) throw err;
      return { reachable: false };
    }
  }

  // ================================================================ master: joins, reports, downs

  private async onJoin(
    j: JoinRequest,
    ctx: HandlerContext,
  ): Promise<{ ok: boolean; reason?: string; retryAfterMs?: number; evicted?: boolean; queued?: boolean; snapshot?: HistorySnapshot }> {
    const node = ctx.caller.nodeNum;
    if (!this.isMaster) return { ok: false, reason: 'not the master', retryAfterMs: this.timing.joinRetryMs };
    if (ctx.caller.incarnation !== j.incarnation) return { ok: false, reason: 'incarnation does not match the link' };
    const refuse = (reason: string): { ok: false; reason: string } => {
      this.record({ kind: 'refused-join', node, term: this.term, time: this.clock.wallNow(), rule: reason });
      return { ok: false, reason };
    };
    if (this.opts.allow?.nodes && !this.opts.allow.nodes.includes(node)) return refuse(`node ${node} is not on the allow-list`);
    if (this.opts.allow?.addresses && !this.opts.allow.addresses.includes(j.address)) return refuse(`address ${j.address} is not on the allow-list`);
    if (this.opts.admit) {
      const verdict = await this.opts.admit({ node, incarnation: j.incarnation, address: j.address, meta: j.meta });
      if (verdict !== true) return refuse(typeof verdict === 'string' ? verdict : 'refused by the admission policy');
    }
    const current = this.history.member(node);
    if (current && current.incarnation === j.incarnation && (current.state === 'ComingUp' || current.state === 'Up')) {
      return { ok: true, snapshot: this.history.snapshot() };
    }
    if (current && current.incarnation === j.incarnation) {
      // This incarnation went down (M8): it may come back only as a new one.
      return { ok: false, reason: `incarnation ${j.incarnation} of node ${node} is ${current.state}: start again as a new incarnation`, evicted: true };
    }
    if (current && current.state !== 'Down' && current.state !== 'NeverUp') {
      // A former incarnation is still a member, or its cleanup runs (C1).
      if (current.state === 'Up' || current.state === 'ComingUp') {
        this.step({ type: 'down', node: current.node, incarnation: current.incarnation, reason: 'restarted as a new incarnation', observers: { master: 'saw a new incarnation join' } });
      }
      return { ok: false, reason: `node ${node}'s former incarnation is ${current.state}: waiting for its cleanup`, retryAfterMs: this.timing.joinRetryMs };
    }
    if (this.history.nodesIn('ComingUp', 'Up', 'ShuttingDown', 'GoingDown').length >= this.opts.maxNodes) return refuse('the cluster has maxNodes members');
    // One proposal per joining incarnation: a joiner that asks again waits
    // on the same one. The wait is shorter than the joiner's own timeout: in
    // a join storm (hundreds of nodes started at once) the queue is long,
    // and a handler that outlives its caller only holds a pool slot that
    // the reports of the members need. The joiner asks again ('queued').
    let join = this.joinsUnderWay.get(node);
    if (!join || join.incarnation !== j.incarnation) {
      const entry = {
        incarnation: j.incarnation,
        committed: this.propose(() => {
          const s = this.history.stateOf(node);
          if (s !== 'NeverUp' && s !== 'Down') return undefined;
          return { kind: 'state', node, incarnation: j.incarnation, from: s, to: 'ComingUp', cause: 'joined', address: j.address, meta: j.meta, keyServices: j.keyServices };
        }, node).catch(() => undefined),
      };
      void entry.committed.then(() => {
        if (this.joinsUnderWay.get(node) === entry) this.joinsUnderWay.delete(node);
      });
      this.joinsUnderWay.set(node, entry);
      join = entry;
    }
    // At most MAX_JOIN_WAITERS handlers wait for a commit: the others answer
    // 'queued' at once, so joins (which anyone who knows the secret can send,
    // under any node number) never fill the pool that appends, heartbeats and
    // reports are served from.
    if (this.joinWaiters >= MAX_JOIN_WAITERS) return { ok: false, reason: 'the join is queued', queued: true, retryAfterMs: this.timing.joinRetryMs };
    this.joinWaiters++;
    const t = await this.within(join.committed, this.timing.rpcTimeoutMs * 2).finally(() => this.joinWaiters--);
    if (t === TIMED_OUT) return { ok: false, reason: 'the join is queued', queued: true, retryAfterMs: this.timing.joinRetryMs };
    if (!t) return { ok: false, reason: 'could not commit the join', retryAfterMs: this.timing.joinRetryMs };
    return { ok: true, snapshot: this.history.snapshot() };
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

  /**
   * A node refused this incarnation's link because it applied this
   * incarnation's GoingDown or ShuttingDown: a committed fact, said by a
   * member of our history (or our master). A leaver is done; a member was
   * declared down and starts again as a new incarnation at once, instead of
   * waiting six failure timeouts without a master to find out.
   */
  private onRefused(node: number, reason: 'incarnation-down' | 'newer-incarnation' | 'node-number-in-use'): void {
    if (reason === 'node-number-in-use') return this.refusedAsDuplicate(node);
    if (reason !== 'incarnation-down' || node === this.nodeNum) return;
    const m = this.history.member(node);
    if (node !== this.masterNum && m?.state !== 'Up' && m?.state !== 'ComingUp') return;
    if (this.leaving) return this.leaving.resolve();
    if (this.phase !== 'member') return;
    void this.evicted({ number: this.history.last, term: this.term, kind: 'state', node: this.nodeNum, incarnation: this.incarnation, from: 'Up', to: 'GoingDown', cause: `node ${node} refused this incarnation: it was declared down`, time: this.clock.wallNow() });
  }

  /**
   * A node dials in as another incarnation of `node` than the one our
   * history holds: a restart, or a second process given the same number.
   * The held incarnation is asked first (protocol/identity.ts); while it
   * answers, the newcomer is refused (it learns why and gives up) and the
   * refusal is recorded. ICS holds the newcomer's link until then.
   */
  private admitIncarnation(node: number, incarnation: number): boolean | Promise<boolean> {
    const held = this.history.member(node);
    if (!held || newcomerCheck(held, incarnation) === 'admit') return true;
    return this.ics.call(node, CLMS, 'alive', null, { timeoutMs: this.timing.rpcTimeoutMs }).then(
      (r) => (r as { incarnation?: unknown }).incarnation,
      () => undefined,
    ).then((answered) => {
      if (newcomerVerdict(held, typeof answered === 'number' ? answered : undefined) === 'admit') return true;
      this.record({ kind: 'refused-join', node, term: this.term, time: this.clock.wallNow(), rule: `incarnation ${incarnation} of node ${node} refused: node number in use by incarnation ${held.incarnation} at ${held.address ?? 'its address'}, which answers` });
      return false;
    });
  }

  /** A member refused this incarnation: its node number is in use by another live process. A joining node gives up. */
  private refusedAsDuplicate(by: number): void {
    if (this.phase !== 'joining' && this.phase !== 'rejoining') return;
    this.duplicate ??= new DuplicateNodeError(this.nodeNum, by);
    this.log.error({ refusedBy: by }, this.duplicate.message);
    void this.close();
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

  /** `p`, or TIMED_OUT when it has not settled within `ms` (p must not reject). */
  private within<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
    return new Promise((resolve) => {
      const timer = this.clock.setTimeout(() => resolve(TIMED_OUT), ms);
      void p.then((v) => {
        timer.cancel();
        resolve(v);
      });
    });
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

/** Number of this incarnation's ComingUp in a join snapshot's tail (what came before it is history to the joiner). */
function joinedAt(tail: readonly Transition[], node: number, incarnation: number): number {
  return tail.find((t) => t.node === node && t.incarnation === incarnation && t.to === 'ComingUp')?.number ?? Number.POSITIVE_INFINITY;
}

/** Create a cluster node; `await node.start()` joins (or forms) the cluster. */
export function createClusterNode(options: ClusterNodeOptions): ClusterNode {
  return new ClusterNode(options);
}

export type { NodeState, TransitionKind };
