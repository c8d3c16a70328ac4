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
import type { Clock } from '../clock/index.js';
import { parseOptions } from '../config/index.js';
import { AlreadyStartedError, InvalidArgumentError, InvalidStateError, NodeClosedError, NotAMemberError } from '../errors/index.js';
import type { Ics } from '../ics/ics.js';
import { checkCallOptions, checkNode, isAbortSignal } from '../ics/options.js';
import type { Logger } from '../logging/index.js';
import type { KeyServiceRegistration } from '../keyservice/index.js';
import { NodeRuntime } from './driver/runtime.js';
import { type ClusterNodeOptions, metaProblem, type Timing } from './options.js';
import type { RefusedHandshake } from './progress.js';
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

/**
 * A cluster node: the public face of CLMS (the API, options and events of
 * docs/membership.md). What runs behind it, the protocol core, its loop and
 * the driver's parts, is a NodeRuntime (driver/runtime.ts); each method
 * here delegates to it.
 */
export class ClusterNode extends EventEmitter<ClusterEvents> implements AsyncDisposable {
  readonly nodeNum: number;
  readonly clusterName: string;
  readonly candidates: readonly number[];
  readonly timing: Timing;
  /**
   * The clock this node runs on (the `clock` option, or the real one).
   * Packages built on the SDK schedule on it, so that they stay
   * deterministic under a virtual clock with the node.
   */
  readonly clock: Clock;
  /**
   * The logger this node was given (the `logger` option; silent by
   * default). Packages built on the SDK log through a child of it
   * (`node.logger.child({ component: 'dlm' })`), so one option quiets or
   * routes everything the application runs on the node.
   */
  readonly logger: Logger;
  /** The core, its loop, the ports and the driver's parts. */
  private readonly rt: NodeRuntime;

  constructor(options: ClusterNodeOptions) {
    super();
    this.rt = new NodeRuntime(options, this);
    this.nodeNum = this.rt.nodeNum;
    this.clusterName = this.rt.clusterName;
    this.candidates = this.rt.candidates;
    this.timing = this.rt.timing;
    this.clock = this.rt.clock;
    this.logger = this.rt.logger;
  }

  // ================================================================ key services

  /**
   * Register a key service this node may host (the seeds' boot entries):
   * register before `start()`, in order of preference. Returns a disposer
   * that unregisters it (as `unregisterKeyService`). docs/key-services.md.
   */
  registerKeyService(reg: KeyServiceRegistration): () => Promise<void> {
    if (this.rt.phase !== 'idle' && this.rt.phase !== 'joining') throw new InvalidStateError('register key services before the node has joined (before start())');
    return this.rt.keys.register(reg);
  }

  /**
   * Stop registering key service `name` on this node, at any time: what it
   * hosts is handed over to another node that registers it (or stops), and
   * the cluster no longer places it here. Resolves once this node's
   * announcement no longer lists it. docs/key-services.md, "Unregistering".
   */
  unregisterKeyService(name: string): Promise<void> {
    return this.rt.keys.unregister(name);
  }

  /** Where key service `name` lives, its epoch, ready or not. */
  keyService(name: string): KeyServiceInfo | undefined {
    return this.rt.keys.info(name);
  }

  keyServices(): KeyServiceInfo[] {
    return this.rt.keys.all();
  }

  /** Every critical key service has a ready host. */
  get formed(): boolean {
    return this.rt.keys.formed;
  }

  /** Set while a critical key service has no eligible node left (the cluster is halted), with the reason. */
  get halted(): { keyService: string; reason: string } | undefined {
    return this.rt.keys.halted();
  }

  /** Call a method of key service `name` on its current host (see docs/key-services.md). */
  callKeyService<T = unknown>(name: string, method: string, args?: unknown, options?: { signal?: AbortSignal; timeoutMs?: number; idempotent?: boolean }): Promise<T> {
    try {
      checkCallOptions(options);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.rt.keys.call(name, method, args ?? null, options) as Promise<T>;
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
    if (this.rt.phase !== 'idle') throw new AlreadyStartedError(this.rt.phase === 'closed' ? 'start() on a closed node: make a new ClusterNode' : 'start() was called twice');
    const o = parseOptions('start', startOptionsSchema, options);
    const booting = this.rt.boot();
    if (o.timeoutMs === undefined && o.signal === undefined) await booting;
    else await giveUpAfter(booting, { ...o, clock: this.clock, nodeNum: this.nodeNum, reasons: () => this.rt.progress.reasons(), close: () => this.close() });
    // Closed because another live process has our node number (see Admissions.refused).
    if (this.rt.admissions.duplicate) throw this.rt.admissions.duplicate;
    return this;
  }

  /**
   * Resolves when this node is Up (its own Up transition applied, in its
   * current incarnation; at once when it is). Rejects with NodeClosedError
   * (`CLMS_ERR_CLOSED`) when the node closes first, and with the signal's
   * AbortedError when `signal` aborts.
   */
  whenUp(options: { signal?: AbortSignal } = {}): Promise<this> {
    try {
      checkSignalOption(options, 'whenUp');
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return waitForUp(this, {
      isUp: () => (this.rt.phase === 'member' || this.rt.phase === 'leaving') && this.rt.history.member(this.nodeNum)?.state === 'Up' && this.rt.history.member(this.nodeNum)?.incarnation === this.rt.ics?.incarnation,
      isClosed: () => this.rt.phase === 'closed',
      closed: this.rt.closeController.signal,
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
    return this.rt.progress.refused();
  }

  /** What joining waits for now (the reasons of the last `joining` event); empty once joined. */
  joiningReasons(): readonly string[] {
    return this.rt.phase === 'joining' || this.rt.phase === 'rejoining' ? this.rt.progress.reasons() : [];
  }

  /**
   * ICS for the application (services, calls, typed clients): a stable
   * handle that forwards to the endpoint of the current incarnation, so it
   * keeps working after an automatic rejoin (see communication.ts).
   * Undefined before `start()`.
   */
  get communication(): Ics {
    return (this.rt.ics ? this.rt.handle.proxy : undefined) as Ics;
  }

  /** The ICS endpoint of the current incarnation itself: a new one after each rejoin (for tools that follow incarnations). */
  get currentCommunication(): Ics {
    return this.rt.ics;
  }

  /** This node's incarnation: a new one after each rejoin; 0 before `start()`. */
  get incarnation(): number {
    return this.rt.ics?.incarnation ?? 0;
  }

  /** The address this node listens on (undefined before `start()`). */
  get address(): string | undefined {
    return this.rt.ics?.address;
  }

  get master(): number | undefined {
    return this.rt.core.master;
  }

  get currentTerm(): number {
    return this.rt.core.term;
  }

  get isMaster(): boolean {
    return this.rt.isMaster;
  }

  get hasQuorum(): boolean {
    return this.rt.core.quorumOk;
  }

  get maxNodes(): number {
    return this.rt.opts.maxNodes;
  }

  /** The membership as of the last committed transition. */
  membership(): Membership {
    return { number: this.rt.history.last, term: this.rt.core.term, master: this.rt.core.master, members: this.rt.history.members() };
  }

  info(node: number = this.nodeNum): MemberInfo | undefined {
    return this.rt.history.member(node);
  }

  /** Committed transitions after `after` (as far as the bounded history holds them). */
  transitions(after = 0): Transition[] {
    return this.rt.history.since(after);
  }

  transition(number: number): Transition | undefined {
    return this.rt.history.get(number);
  }

  /** The transition after / before `number` (undefined past either end of the kept history). */
  nextTransition(number: number): Transition | undefined {
    return this.rt.history.get(number + 1);
  }

  previousTransition(number: number): Transition | undefined {
    return this.rt.history.get(number - 1);
  }

  get lastTransition(): number {
    return this.rt.history.last;
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
    return this.rt.history.id;
  }

  get firstTransition(): number {
    return this.rt.history.first;
  }

  /** Why nodes went down, quorum was lost, masters changed (bounded, newest last). */
  decisionRecords(): readonly DecisionRecord[] {
    return this.rt.events.decisions;
  }

  /**
   * Replace this node's metadata; replicated as a `meta` transition.
   * Rejects at once with InvalidArgumentError when `meta` is not a plain
   * object that encodes within MAX_META_BYTES, NotAMemberError before
   * `start()`, NodeClosedError once closed.
   */
  async setInfo(meta: Record<string, unknown>): Promise<void> {
    const problem = metaProblem(meta);
    if (problem) throw new InvalidArgumentError(`setInfo(meta): meta ${problem}`);
    this.mayAsk('setInfo()');
    await this.rt.askMaster({ kind: 'meta', node: this.nodeNum, incarnation: this.incarnation, meta });
  }

  /** A request to the master (setInfo, declareDown) needs a node that started and did not close. */
  private mayAsk(what: string): void {
    if (this.rt.phase === 'closed') throw new NodeClosedError(`${what} on a closed node`);
    if (this.rt.phase === 'idle') throw new NotAMemberError(this.nodeNum, `${what}: node ${this.nodeNum} has not started (await start() first)`);
  }

  registerSubsystem(s: Subsystem): () => void {
    return this.rt.callbacks.register(s);
  }

  /**
   * Transitions from `since` (replayed from history) and then live, in
   * number order, each exactly once; master and quorum changes in between.
   */
  watch(options: { since?: number; signal?: AbortSignal } = {}): AsyncGenerator<WatchEvent> {
    // Checked now, not at the first next(): a since of 'x' replayed nothing and waited.
    checkSignalOption(options, 'watch');
    const since = options.since;
    if (since !== undefined && !(Number.isSafeInteger(since) && since >= 0)) throw new InvalidArgumentError(`watch's since is a transition number (an integer >= 0), got ${String(since)}`);
    return this.rt.watch(options);
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
  leave(): Promise<void> {
    return this.rt.leave();
  }

  /**
   * Ask the master to declare `node` down (API-driven membership).
   * Rejects at once with InvalidArgumentError for a node number that is not
   * a positive integer or a reason over 1000 characters, NotAMemberError
   * before `start()` or for a node this node's history does not hold,
   * NodeClosedError once closed.
   */
  async declareDown(node: number, reason = 'declared down by API'): Promise<void> {
    checkNode(node);
    if (typeof reason !== 'string' || (reason.length > 1000 && Array.from(reason).length > 1000)) throw new InvalidArgumentError('declareDown(node, reason): reason must be a string of at most 1000 characters');
    this.mayAsk('declareDown()');
    const info = this.rt.history.member(node);
    if (!info) throw new NotAMemberError(node);
    await this.rt.askMaster({ kind: 'down', node, incarnation: info.incarnation, reason });
  }

  /** Stop at once: no goodbye to the cluster (the others will detect it). Idempotent. */
  close(): Promise<void> {
    return this.rt.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Create a cluster node; `await node.start()` joins (or forms) the cluster. */
export function createClusterNode(options: ClusterNodeOptions): ClusterNode {
  return new ClusterNode(options);
}

export type { NodeState, TransitionKind };

/** Options of `whenUp` and `watch`: an object (or nothing) whose `signal`, when given, is an AbortSignal. */
function checkSignalOption(options: unknown, call: string): asserts options is { signal?: AbortSignal } {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError(`${call}'s options must be an object`);
  const signal = (options as { signal?: unknown }).signal;
  if (signal !== undefined && !isAbortSignal(signal)) throw new InvalidArgumentError(`${call}'s signal must be an AbortSignal`);
}
