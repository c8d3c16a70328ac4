/**
 * Replication (M3, M4 in docs/membership.md; docs/protocol.md, "Why a
 * minority can never commit"): the master's tally of the one transition it is replicating, and its appends to each member. Core
 * (core.ts) drives them; these hold the counting.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import { FOLLOWER_STATES, type History } from './history.js';
import type { Transition } from './messages.js';
import { hasQuorum, type QuorumPolicy } from './quorum.js';

/** An append sends at most this many times to one member (each time with more of what it misses). */
export const APPEND_ROUNDS = 3;

/**
 * At most this many transitions share one append round: every member
 * reports on each join of a round at once, and the bound keeps that burst
 * well inside the master's pool and queue for the reports.
 */
export const MAX_BATCH = 8;

/**
 * The bound with `voters: 'candidates'`: the members that vote on nothing
 * carry their reports in the answer to their one append (docs/protocol.md,
 * "Reports in the append's answer"), and the voters are few, so a round's
 * burst of reports is one answer per learner and one `clms.reports` call
 * per voter, whatever the round's size. Fewer, larger rounds mean fewer
 * appends to every learner: 256 nodes forming in one process sent 22 k
 * frames instead of 35 k, and formed in about three quarters of the time.
 */
export const MAX_BATCH_LEARNERS = 32;

/** A proposal's entry in the round that replicates it. */
export interface Batched {
  readonly proposal: number;
  readonly t: Transition;
}

/**
 * The transitions in flight (M4: one change at a time): consecutive
 * entries that commit together once a quorum of `voters` (the voters
 * before the first of them) acknowledged the last. `batchOf` lets only
 * the last of them change the voters, so each still commits with a quorum
 * of the voters before it, as it would alone. Sent in rounds: each round
 * appends to every member that has not acknowledged yet, and ends when
 * all answered or a quorum has it; a round without a quorum is tried again
 * a heartbeat later, until the failure timeout says the quorum is lost.
 */
export class Replication {
  readonly acks: Set<number>;
  readonly entries: readonly Transition[];
  /** Answers the current round still waits for; `open` until the round ends. */
  left = 0;
  open = false;
  /** Asleep between rounds until then. */
  wakeAt: number | undefined;

  constructor(
    readonly batch: readonly Batched[],
    /** The term of the master that made the entries: a master of another term never commits them. */
    readonly term: number,
    readonly voters: readonly number[],
    readonly started: number,
    private readonly quorum: QuorumPolicy,
    self: number,
  ) {
    this.acks = new Set([self]);
    this.entries = batch.map((b) => b.t);
  }

  /** The last entry: the one a quorum must hold. */
  get t(): Transition {
    return this.entries.at(-1)!;
  }

  get committed(): boolean {
    return hasQuorum(this.quorum, this.acks, this.voters);
  }

  /**
   * Members to append to in the next round: every member and voter that
   * has not acknowledged; only the voters when `learners` hear the entries
   * once committed (`learnersOf`).
   */
  targets(history: History, self: number, learners: boolean): number[] {
    const all = learners ? new Set(this.voters) : new Set([...history.nodesIn(...FOLLOWER_STATES), ...this.voters]);
    return [...all].filter((n) => n !== self && !this.acks.has(n));
  }

  /**
   * The members that vote on none of these entries (`voters: 'candidates'`):
   * they are sent them only once committed, in an append whose answer
   * carries the barrier reports they make the member owe (docs/protocol.md,
   * "Reports in the append's answer"). Read before the entries are applied:
   * the members the round would have appended to.
   */
  learnersOf(history: History, self: number): number[] {
    const voters = new Set(this.voters);
    return history.nodesIn(...FOLLOWER_STATES).filter((n) => n !== self && !voters.has(n));
  }
}

/** Whether `t` adds a voter (an Up member that `votes`) or takes one away, applied to `history`. */
export function changesVoters(history: History, t: Transition, votes: (node: number) => boolean = () => true): boolean {
  return t.kind === 'state' && votes(t.node) && (history.stateOf(t.node) === 'Up') !== (t.to === 'Up');
}

/**
 * Fill a round that starts with `batch[0]` from the proposals queued
 * behind it, in order: while each is a change of its own node (`node`), of
 * a node no earlier entry of the round touches (its build reads the
 * history, which does not hold the earlier ones yet), and no earlier entry
 * changes the voters (`votes`: whether a node votes once Up; every node
 * when absent), up to `max` entries (MAX_BATCH, or MAX_BATCH_LEARNERS with `voters: 'candidates'`). `build` makes the entry of
 * a proposal at a number, or settles it (undefined) when it no longer
 * applies.
 */
export function batchOf<P extends { id: number; node?: number | undefined }>(
  batch: Batched[],
  queue: P[],
  history: History,
  build: (p: P, number: number) => Transition | undefined,
  votes?: (node: number) => boolean,
  max = MAX_BATCH,
): void {
  const nodes = new Set(batch.map((b) => b.t.node));
  while (batch.length < max && !changesVoters(history, batch.at(-1)!.t, votes)) {
    const next = queue[0];
    if (next?.node === undefined || nodes.has(next.node)) return;
    queue.shift();
    const t = build(next, batch.at(-1)!.t.number + 1);
    if (!t) continue;
    batch.push({ proposal: next.id, t });
    nodes.add(t.node);
  }
}

/** The same entry: a master makes one entry per number in its term. */
export function sameEntry(a: Transition | undefined, b: Transition): boolean {
  return a !== undefined && a.number === b.number && a.term === b.term && a.node === b.node && a.kind === b.kind && a.to === b.to && a.incarnation === b.incarnation;
}

/** One member's append of `batch` under `term`, resent with what it misses (up to APPEND_ROUNDS times). */
export interface AppendChain {
  to: number;
  /** What is replicated: the round's entries (a member found behind by a heartbeat: the last transition). */
  batch: readonly Transition[];
  term: number;
  round: number;
  entries: Transition[];
  sentAt: number;
  /** The replication it answers for (a member found behind by a heartbeat has none). */
  replication: Replication | undefined;
  /** Committed entries sent to a learner: it answers with the barrier reports they make it owe. */
  withReports?: boolean;
}

/**
 * A member answered that it holds only up to `last`: what it misses, then
 * the uncommitted entries of `batch` (from the snapshot's end when it is
 * behind even that). Committed entries of `batch` are among what it misses
 * already, and go once.
 */
export function missing(history: History, last: number, batch: readonly Transition[]): Transition[] {
  const committed = history.since(last < history.first - 1 ? history.first - 1 : last);
  return [...committed, ...batch.filter((t) => t.number > history.last)];
}

/**
 * What the master of a term has on its way to each member (etcd raft's
 * per-follower Progress, optimistic): the highest entry number sent to it,
 * and how many appends to it are under way. A round's append then carries
 * everything after what was sent, so a member a round behind (slower than
 * the quorum that committed the last entry) catches up with the next
 * append instead of refusing it: an append that went out before the
 * resend of what it missed would arrive first, be refused too, and keep
 * the member one round behind for good, at twice the appends. And a
 * heartbeat finding it behind appends only when nothing is under way to it.
 * Bounded by the members; forgotten with the term.
 */
export class MemberProgress {
  private term = 0;
  private readonly sent = new Map<number, number>();
  private readonly inFlight = new Map<number, number>();
  /** Per learner: the `seq` of the last answer with carried reports heard from it (an append's `heard`). */
  private readonly heard = new Map<number, number>();

  /** The `seq` of the last answer with carried reports heard from `n` in `term`. */
  heardFrom(term: number, n: number): number | undefined {
    return term === this.term ? this.heard.get(n) : undefined;
  }

  /** `n` answered an append of `term` with reports, in its answer numbered `seq`. */
  heardAnswer(term: number, n: number, seq: number): void {
    if (term === this.term) this.heard.set(n, seq);
  }

  /** The highest entry number sent to `n` in `term` (undefined: none, or not known). */
  sentUpTo(term: number, n: number): number | undefined {
    return term === this.term ? this.sent.get(n) : undefined;
  }

  /** Whether an append to `n` of `term` is under way. */
  busy(term: number, n: number): boolean {
    return term === this.term && (this.inFlight.get(n) ?? 0) > 0;
  }

  /** An append of `term` carrying entries up to `last` (0: none) goes to `n`. */
  sending(term: number, n: number, last: number): void {
    this.forTerm(term);
    if (last > (this.sent.get(n) ?? 0)) this.sent.set(n, last);
    this.inFlight.set(n, (this.inFlight.get(n) ?? 0) + 1);
  }

  /**
   * An append of `term` to `n` ended: `holds` is what the member said it
   * holds when it refused (what was sent after it is not known to be
   * there), undefined when it failed (nothing is known), and nothing is
   * changed when it was accepted.
   */
  ended(term: number, n: number, outcome: 'ok' | 'failed' | { holds: number }): void {
    if (term !== this.term) return;
    const left = (this.inFlight.get(n) ?? 1) - 1;
    if (left > 0) this.inFlight.set(n, left);
    else this.inFlight.delete(n);
    if (outcome === 'failed') this.sent.delete(n);
    else if (outcome !== 'ok') this.sent.set(n, outcome.holds);
  }

  /** Appends under way are forgotten (a restart): nothing is known of any member. */
  clear(): void {
    this.term = 0;
    this.sent.clear();
    this.inFlight.clear();
    this.heard.clear();
  }

  private forTerm(term: number): void {
    if (term === this.term) return;
    this.clear();
    this.term = term;
  }
}
