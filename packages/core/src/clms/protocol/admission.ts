/**
 * Admission: what the master decides about a join request (docs/membership.md,
 * "Forming a cluster" and "Batching"; the cleanup barrier C1).
 *
 * A join passes two screens, with the application's `admit` hook (which may
 * take its time) in between, so the driver asks `screenJoin` first, then the
 * hook, then `placeJoin` against the history as it is after the hook. A join
 * that passes both is proposed as a ComingUp (`comingUp`, built when the
 * proposal is made); one proposal per joining incarnation (`JoinQueue`), and
 * at most `MAX_JOIN_WAITERS` handlers wait for their commit: the others are
 * answered `queued` at once and ask again, so joins, which anyone who knows
 * the secret can send under any node number, never fill the handler pool
 * that appends, heartbeats and reports are served from.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 * The driver (driver/admission.ts) runs the hook, records refusals, proposes
 * and waits.
 */
import type { MemberInfo, NodeState, Transition } from '../types.js';
import type { JoinRequest } from './messages.js';

/** Join handlers that may wait for their commit at once; later joins are answered 'queued' at once. */
export const MAX_JOIN_WAITERS = 64;

/** The answer to a join, but for the snapshot the driver adds to an admitted one. */
export interface JoinAnswer {
  readonly ok: boolean;
  readonly reason?: string;
  readonly retryAfterMs?: number;
  /** This incarnation went down: it may come back only as a new one (M8). */
  readonly evicted?: boolean;
  /** The join waits in the master's queue: ask the same master again. */
  readonly queued?: boolean;
}

/** What to do with a join, one screen at a time. */
export type Admission =
  /** Answer as is; nothing recorded (not the master, a confused link, an incarnation that went down, a cleanup to wait for). */
  | { readonly type: 'answer'; readonly answer: JoinAnswer }
  /** Refuse and keep a decision record saying why (a policy said no). */
  | { readonly type: 'refuse'; readonly reason: string }
  /** This incarnation is a member already (ComingUp or Up): answer with the history. */
  | { readonly type: 'member' }
  /** A former incarnation is still a member: it goes down (restarted), and the joiner waits for its cleanup. */
  | { readonly type: 'retire'; readonly node: number; readonly incarnation: number; readonly answer: JoinAnswer }
  /** Passed this screen: go on to the next step. */
  | { readonly type: 'pass' };

const PASS: Admission = { type: 'pass' };

/** The policy of who may join (the `allow` option). */
export interface AllowList {
  readonly nodes?: readonly number[] | undefined;
  readonly addresses?: readonly string[] | undefined;
}

/**
 * Before the `admit` hook: only a master admits; the request must come
 * from the incarnation of the link it came on; the allow-lists must name
 * the node and its address.
 */
export function screenJoin(q: {
  readonly isMaster: boolean;
  readonly node: number;
  /** The incarnation the link authenticated. */
  readonly linkIncarnation: number;
  readonly join: Pick<JoinRequest, 'incarnation' | 'address'>;
  readonly allow: AllowList | undefined;
  readonly retryAfterMs: number;
}): Admission {
  if (!q.isMaster) return { type: 'answer', answer: { ok: false, reason: 'not the master', retryAfterMs: q.retryAfterMs } };
  if (q.linkIncarnation !== q.join.incarnation) return { type: 'answer', answer: { ok: false, reason: 'incarnation does not match the link' } };
  if (q.allow?.nodes && !q.allow.nodes.includes(q.node)) return { type: 'refuse', reason: `node ${q.node} is not on the allow-list` };
  if (q.allow?.addresses && !q.allow.addresses.includes(q.join.address)) return { type: 'refuse', reason: `address ${q.join.address} is not on the allow-list` };
  return PASS;
}

/** The `admit` hook's verdict: true admits; a string is the reason of a refusal. */
export function hookVerdict(verdict: unknown): Admission {
  if (verdict === true) return PASS;
  return { type: 'refuse', reason: typeof verdict === 'string' ? verdict : 'refused by the admission policy' };
}

/**
 * After the hook, against the history: the node as the history holds it
 * (`held`), and how many nodes occupy a place (ComingUp, Up, ShuttingDown,
 * GoingDown). A former incarnation that is still a member or still being
 * cleaned up after keeps the newcomer out until its Down (C1).
 */
export function placeJoin(q: {
  readonly node: number;
  readonly incarnation: number;
  readonly held: Pick<MemberInfo, 'node' | 'incarnation' | 'state'> | undefined;
  readonly occupied: number;
  readonly maxNodes: number;
  readonly retryAfterMs: number;
}): Admission {
  const { node, incarnation, held } = q;
  if (held && held.incarnation === incarnation && (held.state === 'ComingUp' || held.state === 'Up')) return { type: 'member' };
  if (held && held.incarnation === incarnation) {
    return { type: 'answer', answer: { ok: false, reason: `incarnation ${incarnation} of node ${node} is ${held.state}: start again as a new incarnation`, evicted: true } };
  }
  if (held && held.state !== 'Down' && held.state !== 'NeverUp') {
    const answer = { ok: false, reason: `node ${node}'s former incarnation is ${held.state}: waiting for its cleanup`, retryAfterMs: q.retryAfterMs };
    // A former incarnation still Up or ComingUp was restarted: it goes down now.
    if (held.state === 'Up' || held.state === 'ComingUp') return { type: 'retire', node: held.node, incarnation: held.incarnation, answer };
    return { type: 'answer', answer };
  }
  if (q.occupied >= q.maxNodes) return { type: 'refuse', reason: 'the cluster has maxNodes members' };
  return PASS;
}

/**
 * The ComingUp a join proposes, built when the master makes the proposal:
 * none when the node is no longer NeverUp or Down by then (another
 * incarnation came first).
 */
export function comingUp(state: NodeState, node: number, join: JoinRequest): Omit<Transition, 'number' | 'term' | 'time'> | undefined {
  if (state !== 'NeverUp' && state !== 'Down') return undefined;
  return { kind: 'state', node, incarnation: join.incarnation, from: state, to: 'ComingUp', cause: 'joined', address: join.address, meta: join.meta, keyServices: join.keyServices };
}

/** The answer to a join whose handler waited: `committed`, `failed` (the proposal was dropped or failed), or `timed-out`. */
export function waitedJoin(outcome: 'committed' | 'failed' | 'timed-out', retryAfterMs: number): JoinAnswer | 'member' {
  if (outcome === 'timed-out') return queued(retryAfterMs);
  if (outcome === 'failed') return { ok: false, reason: 'could not commit the join', retryAfterMs };
  return 'member';
}

/** The answer to a join that waits in the queue: ask again after `retryAfterMs`. */
export function queued(retryAfterMs: number): JoinAnswer {
  return { ok: false, reason: 'the join is queued', queued: true, retryAfterMs };
}

/**
 * The joins under way at a master, one per joining node: a joiner that asks
 * again waits on the same proposal (`committed`, whatever the driver waits
 * on), and a new incarnation of the node replaces the entry. Bounded by the
 * node numbers that ask; an entry leaves when its proposal settles. Also
 * counts the handlers that wait, up to MAX_JOIN_WAITERS.
 */
export class JoinQueue<T> {
  private readonly byNode = new Map<number, { readonly incarnation: number; readonly committed: T }>();
  private waiters = 0;

  constructor(private readonly maxWaiters = MAX_JOIN_WAITERS) {}

  /** The proposal under way for this incarnation of `node`, if any. */
  underWay(node: number, incarnation: number): T | undefined {
    const e = this.byNode.get(node);
    return e && e.incarnation === incarnation ? e.committed : undefined;
  }

  /** A join of this incarnation is under way here (it may fetch the history before it is a member). */
  isJoining(node: number, incarnation: number): boolean {
    return this.byNode.get(node)?.incarnation === incarnation;
  }

  /** A new proposal for this incarnation of `node`; returns `settled`, to call when it settles. */
  begin(node: number, incarnation: number, committed: T): () => void {
    const entry = { incarnation, committed };
    this.byNode.set(node, entry);
    return () => {
      if (this.byNode.get(node) === entry) this.byNode.delete(node);
    };
  }

  /** A handler may wait for its commit (then call `waitEnded`), or not: the join is answered `queued`. */
  mayWait(): boolean {
    if (this.waiters >= this.maxWaiters) return false;
    this.waiters++;
    return true;
  }

  waitEnded(): void {
    this.waiters--;
  }
}
