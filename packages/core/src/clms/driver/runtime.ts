/**
 * What runs behind a ClusterNode (node.ts, the public facade): the protocol
 * core and the loop that feeds it, the node's ports and the driver's parts
 * wired to them (boot, join, admission, callbacks, apply, restart, events,
 * effects, the key-service lease), its timers and sleeps, and the requests
 * the API makes of the core (propose, elect, ask the master, report). The
 * facade holds one and delegates to it; no part here imports the facade.
 */
import { setMaxListeners } from 'node:events';
import type { EventEmitter } from 'eventemitter3';
import { type Clock, realClock, type TimerHandle } from '../../clock/index.js';
import { parseOptions } from '../../config/index.js';
import { ClusterInfraError, LeaveFailedError } from '../../errors/index.js';
import { canaries } from '../../canaries.js';
import { detached } from '../../ics/context.js';
import type { Ics } from '../../ics/ics.js';
import type { ServiceRegistration } from '../../ics/types.js';
import { defaultLogger, type Logger } from '../../logging/index.js';
import { cryptoRandom, type RandomSource } from '../../random/index.js';
import { heartbeatDetector, type NodedownDetector } from '../detector.js';
import { KeyServiceManager } from '../../keyservice/index.js';
import { History } from '../protocol/history.js';
import { LocalHealth } from '../protocol/awareness.js';
import { type Build, Core, type Message as CoreInput, type Phase } from '../protocol/core.js';
import type { Report } from '../protocol/messages.js';
import { EffectLoop } from './loop.js';
import { type AdmissionPort, Admissions } from './admission.js';
import { boot, type BootPort } from './boot.js';
import { type JoinPort, Joiner } from './join.js';
import { CLMS } from './serve.js';
import type { ApplyPort } from './apply.js';
import { Callbacks } from './callbacks.js';
import { Effects } from './effects.js';
import { Events } from './events.js';
import { KeyServiceLease } from './lease.js';
import { Incarnations } from './restart.js';
import { type ClusterNodeOptions, clusterNodeOptionsSchema, presets, type ResolvedClusterNodeOptions, type Timing } from '../options.js';
import { JoinTracker } from '../progress.js';
import { CommunicationHandle } from '../communication.js';
import type { ClusterEvents, MemberInfo, Transition, WatchEvent } from '../types.js';

export class NodeRuntime {
  readonly nodeNum: number;
  readonly clusterName: string;
  readonly candidates: readonly number[];
  readonly timing: Timing;
  readonly opts: ResolvedClusterNodeOptions;
  readonly clock: Clock;
  private readonly random: RandomSource;
  readonly logger: Logger;
  private readonly log: Logger;
  private readonly detector: NodedownDetector;
  /** How late this node's own timers run (Lifeguard's self-awareness): stretches its own waits. */
  private readonly health: LocalHealth;
  readonly keys: KeyServiceManager;
  /** The driver's parts: events and records, subsystem callbacks, what a commit does here, restarts, the rest of the effects, leases. */
  readonly events: Events;
  readonly callbacks: Callbacks;
  private readonly applying: ApplyPort;
  private readonly incarnations: Incarnations;
  private readonly effects: Effects;
  private readonly lease: KeyServiceLease;

  ics!: Ics;
  /**
   * The protocol core: term, vote, master, pending entry, replication and
   * commit decided synchronously (protocol/core.ts); `loop` feeds it and
   * performs its effects (driver/loop.ts).
   */
  readonly core: Core;
  private readonly loop: EffectLoop;
  /** Sleeps under way (see sleep). */
  private readonly sleepers = new Set<() => void>();
  private timers: TimerHandle[] = [];
  readonly closeController = new AbortController();

  /** While leave() waits: settles it once this incarnation's leave is known to be committed. */
  private leaving: { resolve(): void } | undefined;
  /** What joining waits for (the `joining` event), and handshakes refused lately. */
  readonly progress: JoinTracker;
  /** What `communication` returns: follows the endpoint across incarnations. */
  readonly handle = new CommunicationHandle();
  /** What the driver's parts need of this node, each seeing only its own port (driver/boot.ts, join.ts, serve.ts, admission.ts). */
  private readonly ports: BootPort & JoinPort & AdmissionPort;
  /** The master's join handler, and this node's answers to refusals of its own link (driver/admission.ts). */
  readonly admissions: Admissions;
  /** The join loop and this node's own nodeup (driver/join.ts). */
  private readonly joiner: Joiner;

  /** `emitter`: the ClusterNode, whose events the parts emit. */
  constructor(options: ClusterNodeOptions, emitter: EventEmitter<ClusterEvents>) {
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
        voters: this.opts.voters,
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
      perform: (e) => this.effects.perform(e),
    });
    this.progress = new JoinTracker({ now: () => this.clock.now(), log: this.log, emit: (p) => emitter.emit('joining', p) });
    const d = this.opts.detector ?? heartbeatDetector();
    this.detector = typeof d === 'function' ? d(this.timing) : d;
    this.events = new Events({ emitter, log: this.log });
    // Every subsystem callback gets this signal, and the callbacks of every
    // member may run at once (an eviction runs them side by side): that many
    // abort listeners is expected, not the leak Node warns of past 10.
    setMaxListeners(Math.max(10, this.opts.maxNodes * this.opts.maxSubsystems), this.closeController.signal);
    this.callbacks = new Callbacks({
      nodeNum: this.nodeNum,
      maxSubsystems: this.opts.maxSubsystems,
      log: this.log,
      emitter,
      signal: this.closeController.signal,
      incarnation: () => this.incarnation,
      history: () => this.history,
      term: () => this.core.term,
      nodeDown: (node, incarnation) => this.ics.nodeDown(node, incarnation),
      report: (r) => this.report(r),
    });
    this.lease = new KeyServiceLease({
      nodeNum: this.nodeNum,
      rpcTimeoutMs: this.timing.rpcTimeoutMs,
      now: () => this.clock.now(),
      lease: this.core.lease,
      quorumOk: () => this.core.quorumOk,
      phase: () => this.phase,
      isMaster: () => this.isMaster,
      master: () => this.core.master,
      voters: () => this.core.voters(),
      history: () => this.history,
      incarnation: () => this.incarnation,
      ics: () => this.ics,
    });
    this.keys = new KeyServiceManager({
      nodeNum: this.nodeNum,
      log: this.log,
      ics: () => this.ics,
      isMaster: () => this.isMaster,
      master: () => this.core.master,
      historyId: () => this.history.id,
      leaseValid: () => this.lease.holds(),
      renewLease: () => this.lease.renew(),
      fenceWaitMs: () => this.opts.keyServiceFenceWaitMs ?? (this.opts.fence ? 0 : this.timing.failureTimeoutMs),
      // Read-only: key services only iterate it (no copy per transition).
      members: () => this.history.membersView() as MemberInfo[],
      member: (n) => this.history.member(n),
      propose: (build) => this.propose(build),
      reportReady: (name, epoch) => this.report({ kind: 'keyservice-ready', node: this.nodeNum, incarnation: this.incarnation, keyService: name, epoch }),
      emitKeyService: (info) => {
        emitter.emit('keyservice', info);
        this.events.broadcast({ type: 'keyservice', keyService: info });
      },
      emitActivity: (info) => emitter.emit('keyservice-host', info),
      emitFormed: (formed) => {
        emitter.emit('formed', { formed });
        this.events.broadcast({ type: 'formed', formed });
      },
      emitHalted: (keyService, reason) => {
        emitter.emit('halted', { keyService, reason });
        this.events.broadcast({ type: 'halted', keyService, reason });
      },
      rpcTimeoutMs: () => this.timing.rpcTimeoutMs,
      failureTimeoutMs: () => this.timing.failureTimeoutMs,
      now: () => this.clock.now(),
      timer: (ms, fn) => this.clock.setTimeout(fn, ms),
    });
    this.applying = {
      nodeNum: this.nodeNum,
      log: this.log,
      emitter,
      events: this.events,
      callbacks: this.callbacks,
      keys: this.keys,
      incarnation: () => this.incarnation,
      isMaster: () => this.isMaster,
      history: () => this.history,
      forget: (node) => this.detector.forget(node),
      leaving: () => this.leaving,
      evicted: (t) => this.incarnations.evicted(t),
      report: (r) => this.report(r),
    };
    this.effects = new Effects({
      nodeNum: this.nodeNum,
      log: this.log,
      clock: this.clock,
      opts: this.opts,
      emitter,
      events: this.events,
      keys: this.keys,
      progress: this.progress,
      detector: this.detector,
      health: this.health,
      applying: this.applying,
      history: () => this.history,
      term: () => this.core.term,
      incarnation: () => this.incarnation,
      ics: () => this.ics,
      step: (input) => this.step(input),
      elect: (bootstrap) => this.elect(bootstrap),
      propose: (build) => this.propose(build),
      evicted: (t) => this.incarnations.evicted(t),
      tick: () => this.tick(),
    });
    this.incarnations = new Incarnations({
      nodeNum: this.nodeNum,
      log: this.log,
      emitter,
      callbacks: this.callbacks,
      keys: this.keys,
      autoRejoin: this.opts.autoRejoin,
      historyLimit: this.opts.historyLimit,
      incarnation: () => this.incarnation,
      phase: () => this.phase,
      closed: () => this.closeController.signal.aborted,
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
      restart: () => this.incarnations.restart(),
      close: () => this.close(),
      sleep: (ms) => this.sleep(ms),
      addTimer: (t) => void this.timers.push(t),
      tick: () => this.tick(),
      joinLoop: () => this.joiner.loop(),
      record: (r) => this.events.record(r),
      notify: (t, replayed) => this.events.notify(t, replayed),
      report: (r) => this.report(r),
      reportReceived: (from, report) => this.answer({ type: 'report', from, report }),
      onJoin: (j, caller) => this.admissions.join(j, caller),
      isJoining: (node, incarnation) => this.admissions.isJoining(node, incarnation),
      admitIncarnation: (node, incarnation) => this.admissions.admitIncarnation(node, incarnation),
      onRefused: (node, reason) => this.admissions.refused(node, reason),
      // The transport lost a link: a fast hint (a killed process closes its sockets); the core decides (protocol/detection.ts).
      onLinkLost: (node, incarnation) => this.step({ type: 'link-lost', node, incarnation }),
      grantsLease: (node, incarnation) => this.lease.grants(node, incarnation),
      leaving: () => this.leaving,
      evicted: (t) => this.incarnations.evicted(t),
      ranNodeup: (node, incarnation) => this.callbacks.ranNodeup(node, incarnation),
      markCleaned: (node, incarnation) => this.callbacks.markCleaned(node, incarnation),
      cleanup: (t) => this.callbacks.cleanup(t),
      runOwnNodeup: (me) => this.callbacks.runOwnNodeup(me),
    };
    this.admissions = new Admissions(this.ports);
    this.joiner = new Joiner(this.ports);
  }

  // ---- the protocol core (protocol/core.ts): its state, read here; its decisions, made there

  get history(): History {
    return this.core.history;
  }

  get phase(): Phase {
    return this.core.phase;
  }

  set phase(p: Phase) {
    this.core.phase = p;
  }

  get incarnation(): number {
    return this.ics.incarnation;
  }

  get isMaster(): boolean {
    return this.core.master === this.nodeNum && this.phase === 'member';
  }

  /** Begin an incarnation (driver/boot.ts); `carried`: services the application registered on the former one. */
  boot(carried: ServiceRegistration[] = []): Promise<void> {
    return boot(this.ports, carried);
  }

  /** Feed the core one input, then perform what it decided (driver/loop.ts, effects.ts). */
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

  // ================================================================ reports (decided in protocol/reports.ts)

  /** This node owes the master `r` (a barrier, a ready key service): sent until acknowledged. */
  private report(r: Report): void {
    this.step({ type: 'owe', report: r });
  }

  /** Ask the master to do something (leave, down, meta); resolves once a master acknowledged it. */
  async askMaster(r: Report): Promise<void> {
    await this.answer({ type: 'ask', report: r });
  }

  // ================================================================ heartbeats

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
    for (const r of this.core.reports.owed.reports('keyservice-ready')) {
      if (!r.keyService || r.epoch === undefined) continue;
      if (!this.keys.awaitsReady(r.keyService, r.epoch)) this.core.reports.owed.forget(r);
      else if (this.isMaster) this.keys.commitReady(r.keyService, r.epoch, this.nodeNum);
    }
    if (!this.isMaster && this.phase === 'member') {
      // A host keeps its key-service lease fresh.
      if (this.keys.hostsAny()) this.lease.renew();
      // A founder deposed before it committed its own Up finishes joining as any joiner does.
      const me = this.history.member(this.nodeNum);
      if (me?.state === 'ComingUp' && me.incarnation === this.incarnation) void this.callbacks.runOwnNodeup(me);
    }
    this.step({ type: 'interval' });
  }

  // ================================================================ leaving and closing (the API's, node.ts)

  /** See ClusterNode.leave. */
  async leave(): Promise<void> {
    if (this.phase !== 'member') return this.close();
    // Key services this node hosts move first, with their data (bounded).
    if (this.keys.hostsAny()) {
      await this.keys.handOverAll();
      // Declared down or closed during the hand-over: this incarnation is no
      // member to leave any more. Going on would set 'leaving' over 'closed'
      // (or 'rejoining'), and a restart under way then saw no close and began
      // a new incarnation on the closed node's address (sim seed 911581, L1).
      // ('leaving': another leave() went first; this one goes on with it, as before.)
      const phase = this.currentPhase();
      if (phase !== 'member' && phase !== 'leaving') return this.close();
    }
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

  /** See ClusterNode.close. */
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

  /** See ClusterNode.watch. */
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

  /** The phase, read fresh (it changes across awaits; TypeScript's narrowing does not know). */
  private currentPhase(): Phase {
    return this.phase;
  }

  // ================================================================ timers

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
