/**
 * Admission, the driver's half: the master's `join` handler, the check ICS
 * makes before it lets a new incarnation of a known node in, and what this
 * node does when a member refuses its own link. The decisions are pure
 * (protocol/admission.ts, protocol/identity.ts); this runs the `admit`
 * hook, records refusals, proposes the ComingUp and waits (bounded) for
 * its commit.
 */
import type { Clock } from '../../clock/index.js';
import { DuplicateNodeError } from '../../errors/index.js';
import type { Ics } from '../../ics/ics.js';
import type { HandlerContext } from '../../ics/types.js';
import type { Logger } from '../../logging/index.js';
import type { ResolvedClusterNodeOptions, Timing } from '../options.js';
import { type Admission, comingUp, hookVerdict, type JoinAnswer, JoinQueue, placeJoin, queued, screenJoin, waitedJoin } from '../protocol/admission.js';
import type { Build, Core, Message as CoreInput } from '../protocol/core.js';
import { newcomerCheck, newcomerVerdict } from '../protocol/identity.js';
import type { JoinRequest } from '../protocol/messages.js';
import type { DecisionRecord, Transition } from '../types.js';
import { CLMS } from './serve.js';
import { type SharedSnapshot, sharedSnapshot } from './wire.js';

/** What admission needs of its node. */
export interface AdmissionPort {
  readonly nodeNum: number;
  readonly core: Core;
  readonly clock: Clock;
  readonly log: Logger;
  readonly timing: Pick<Timing, 'joinRetryMs' | 'rpcTimeoutMs'>;
  readonly opts: Pick<ResolvedClusterNodeOptions, 'allow' | 'admit' | 'maxNodes'>;
  /** The endpoint of the current incarnation. */
  ics(): Ics;
  step(input: CoreInput): void;
  /** Queue a change about `node` (see NodeRuntime.propose). */
  propose(build: Build, node?: number): Promise<Transition | undefined>;
  record(r: DecisionRecord): void;
  /** Set while leave() waits for this incarnation's leave to be committed. */
  leaving(): { resolve(): void } | undefined;
  /** This incarnation was declared down: stop acting as a member, clean up, rejoin. */
  evicted(t: Transition): Promise<void>;
  close(): Promise<void>;
}

/** The answer to a join request, on the wire. */
export type JoinReply = JoinAnswer & { readonly snapshot?: SharedSnapshot };

const TIMED_OUT = Symbol('timed out');

export class Admissions {
  /** The joins under way here as master, and the handlers waiting for their commit. */
  private readonly queue = new JoinQueue<Promise<Transition | undefined>>();
  /** Set when a member refused this node as a second process with its node number: start() rejects with it. */
  duplicate: DuplicateNodeError | undefined;

  constructor(private readonly port: AdmissionPort) {}

  /** A member of this history may fetch it; so may a node whose join is under way here. */
  isJoining(node: number, incarnation: number): boolean {
    return this.queue.isJoining(node, incarnation);
  }

  /**
   * The master's `join` handler. One proposal per joining incarnation: a
   * joiner that asks again waits on the same one. The wait is shorter than
   * the joiner's own timeout: in a join storm (hundreds of nodes started at
   * once) the queue is long, and a handler that outlives its caller only
   * holds a pool slot that the reports of the members need. The joiner
   * asks again ('queued').
   */
  async join(j: JoinRequest, caller: HandlerContext['caller']): Promise<JoinReply> {
    const { core, opts } = this.port;
    const node = caller.nodeNum;
    const retryAfterMs = this.port.timing.joinRetryMs;
    const screened = screenJoin({ isMaster: core.isMaster, node, linkIncarnation: caller.incarnation, join: j, allow: opts.allow, retryAfterMs });
    if (screened.type !== 'pass') return this.answer(screened, node);
    if (opts.admit) {
      const verdict = hookVerdict(await opts.admit({ node, incarnation: j.incarnation, address: j.address, meta: j.meta }));
      if (verdict.type !== 'pass') return this.answer(verdict, node);
    }
    const history = core.history;
    const occupied = history.nodesIn('ComingUp', 'Up', 'ShuttingDown', 'GoingDown').length;
    const placed = placeJoin({ node, incarnation: j.incarnation, held: history.member(node), occupied, maxNodes: opts.maxNodes, retryAfterMs });
    if (placed.type !== 'pass') return this.answer(placed, node);
    let committed = this.queue.underWay(node, j.incarnation);
    if (!committed) {
      committed = this.port.propose(() => comingUp(this.port.core.history.stateOf(node), node, j), node).catch(() => undefined);
      void committed.then(this.queue.begin(node, j.incarnation, committed));
    }
    if (!this.queue.mayWait()) return queued(retryAfterMs);
    const t = await within(this.port.clock, committed, this.port.timing.rpcTimeoutMs * 2).finally(() => this.queue.waitEnded());
    const a = waitedJoin(t === TIMED_OUT ? 'timed-out' : t ? 'committed' : 'failed', retryAfterMs);
    return a === 'member' ? { ok: true, snapshot: sharedSnapshot(this.port.core.history.snapshot()) } : a;
  }

  /** Carry out a screen's verdict other than `pass`. */
  private answer(a: Exclude<Admission, { type: 'pass' }>, node: number): JoinReply {
    const { core } = this.port;
    switch (a.type) {
      case 'answer':
        return a.answer;
      case 'member':
        return { ok: true, snapshot: sharedSnapshot(core.history.snapshot()) };
      case 'retire':
        this.port.step({ type: 'down', node: a.node, incarnation: a.incarnation, reason: 'restarted as a new incarnation', observers: { master: 'saw a new incarnation join' } });
        return a.answer;
      case 'refuse':
        this.port.record({ kind: 'refused-join', node, term: core.term, time: this.port.clock.wallNow(), rule: a.reason });
        return { ok: false, reason: a.reason };
    }
  }

  /**
   * A node dials in as another incarnation of `node` than the one our
   * history holds: a restart, or a second process given the same number.
   * The held incarnation is asked first (protocol/identity.ts); while it
   * answers, the newcomer is refused (it learns why and gives up) and the
   * refusal is recorded. ICS holds the newcomer's link until then.
   */
  admitIncarnation(node: number, incarnation: number): boolean | Promise<boolean> {
    const { core } = this.port;
    const held = core.history.member(node);
    if (!held || newcomerCheck(held, incarnation) === 'admit') return true;
    return this.port.ics().call(node, CLMS, 'alive', null, { timeoutMs: this.port.timing.rpcTimeoutMs }).then(
      (r) => (r as { incarnation?: unknown }).incarnation,
      () => undefined,
    ).then((answered) => {
      if (newcomerVerdict(held, typeof answered === 'number' ? answered : undefined) === 'admit') return true;
      this.port.record({ kind: 'refused-join', node, term: core.term, time: this.port.clock.wallNow(), rule: `incarnation ${incarnation} of node ${node} refused: node number in use by incarnation ${held.incarnation} at ${held.address ?? 'its address'}, which answers` });
      return false;
    });
  }

  /**
   * A node refused this incarnation's link because it applied this
   * incarnation's GoingDown or ShuttingDown: a committed fact, said by a
   * member of our history (or our master). A leaver is done; a member was
   * declared down and starts again as a new incarnation at once, instead of
   * waiting six failure timeouts without a master to find out.
   */
  refused(node: number, reason: 'incarnation-down' | 'newer-incarnation' | 'node-number-in-use'): void {
    const { core, nodeNum } = this.port;
    if (reason === 'node-number-in-use') return this.refusedAsDuplicate(node);
    if (reason !== 'incarnation-down' || node === nodeNum) return;
    const m = core.history.member(node);
    if (node !== core.master && m?.state !== 'Up' && m?.state !== 'ComingUp') return;
    const leaving = this.port.leaving();
    if (leaving) return leaving.resolve();
    if (core.phase !== 'member') return;
    const incarnation = this.port.ics().incarnation;
    void this.port.evicted({ number: core.history.last, term: core.term, kind: 'state', node: nodeNum, incarnation, from: 'Up', to: 'GoingDown', cause: `node ${node} refused this incarnation: it was declared down`, time: this.port.clock.wallNow() });
  }

  /** A member refused this incarnation: its node number is in use by another live process. A joining node gives up. */
  private refusedAsDuplicate(by: number): void {
    const phase = this.port.core.phase;
    if (phase !== 'joining' && phase !== 'rejoining') return;
    this.duplicate ??= new DuplicateNodeError(this.port.nodeNum, by);
    this.port.log.error({ refusedBy: by }, this.duplicate.message);
    void this.port.close();
  }
}

/** `p`, or TIMED_OUT when it has not settled within `ms` (p must not reject). */
function within<T>(clock: Clock, p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  return new Promise((resolve) => {
    const timer = clock.setTimeout(() => resolve(TIMED_OUT), ms);
    void p.then((v) => {
      timer.cancel();
      resolve(v);
    });
  });
}
