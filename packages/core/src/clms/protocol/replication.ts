/**
 * Replication (M3, M4 in docs/membership.md; docs/protocol.md, "Why a
 * minority can never commit"): the master's tally of the one transition it is replicating, and its appends to each member. Core
 * (core.ts) drives them; these hold the counting.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import type { History } from './history.js';
import type { Transition } from './messages.js';
import { hasQuorum, type QuorumPolicy } from './quorum.js';

/** An append sends at most this many times to one member (each time with more of what it misses). */
export const APPEND_ROUNDS = 3;

/**
 * The transition in flight (M4: one change at a time). It commits once a
 * quorum of `voters` (the voters before the change) acknowledged it. Sent
 * in rounds: each round appends to every member that has not acknowledged
 * yet, and ends when all answered or a quorum has it; a round without a
 * quorum is tried again a heartbeat later, until the failure timeout says
 * the quorum is lost.
 */
export class Replication {
  readonly acks: Set<number>;
  /** Answers the current round still waits for; `open` until the round ends. */
  left = 0;
  open = false;
  /** Asleep between rounds until then. */
  wakeAt: number | undefined;

  constructor(
    readonly proposal: number,
    readonly t: Transition,
    /** The term of the master that made `t`: a master of another term never commits it. */
    readonly term: number,
    readonly voters: readonly number[],
    readonly started: number,
    private readonly quorum: QuorumPolicy,
    self: number,
  ) {
    this.acks = new Set([self]);
  }

  get committed(): boolean {
    return hasQuorum(this.quorum, this.acks, this.voters);
  }

  /** Members to append to in the next round: every member and voter that has not acknowledged. */
  targets(history: History, self: number): number[] {
    const all = new Set([...history.nodesIn('Up', 'ComingUp', 'ShuttingDown'), ...this.voters]);
    return [...all].filter((n) => n !== self && !this.acks.has(n));
  }
}

/** One member's append of `t` under `term`, resent with what it misses (up to APPEND_ROUNDS times). */
export interface AppendChain {
  to: number;
  t: Transition;
  term: number;
  round: number;
  entries: Transition[];
  sentAt: number;
  /** The replication it answers for (a member found behind by a heartbeat has none). */
  replication: Replication | undefined;
}

/**
 * A member answered that it holds only up to `last`: what it misses, then
 * `t` (from the snapshot's end when it is behind even that). A committed
 * `t` is among what it misses already, and goes once.
 */
export function missing(history: History, last: number, t: Transition): Transition[] {
  const committed = history.since(last < history.first - 1 ? history.first - 1 : last);
  return t.number > history.last ? [...committed, t] : committed;
}
