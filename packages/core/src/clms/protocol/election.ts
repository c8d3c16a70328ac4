/**
 * Elections (docs/membership.md, "Guarantees", M6): how a voter answers a vote
 * request, and the tally of one candidate's pre-vote and vote rounds.
 * Core (core.ts) holds the term, the vote and the master; these decide.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import { hasQuorum, type QuorumPolicy } from './quorum.js';
import type { VoteRequest } from './messages.js';

/** What a voter knows when a vote request comes in. */
export interface VoterView {
  self: number;
  candidates: readonly number[];
  term: number;
  /** The term this node voted in last. */
  votedIn: number;
  /** Whom it voted for then (itself, as a candidate), and when; undefined before any vote. */
  votedFor?: { node: number; at: number } | undefined;
  master: number | undefined;
  isMaster: boolean;
  quorumOk: boolean;
  /** Since when the master was last heard (monotonic ms). */
  heardMasterAt: number;
  now: number;
  failureTimeoutMs: number;
  /** Committed history: empty when `last` is 0. */
  last: number;
  lastTerm: number;
  /** The appended, not yet committed entry this node holds, if any. */
  pending: { number: number; term: number } | undefined;
  /** The history this node is in (or is acknowledging the founding entry of); null when none. */
  historyWanted: string | null;
}

/**
 * - `refuse`: no, and the term is left alone;
 * - `pre`: a pre-vote, granted when the candidate is up to date (the term is left alone);
 * - `vote`: a real vote in a term this node adopts; granted when up to date.
 */
export type VoteVerdict = { kind: 'refuse' } | { kind: 'pre'; granted: boolean } | { kind: 'vote'; granted: boolean };

/**
 * A voter's answer (M6 in docs/membership.md): only candidates stand; while a live master is
 * heard, or within the failure timeout of a vote this node gave (the master
 * in the making), nobody else may take over (stickiness), nor may a master that holds
 * its quorum be replaced; one vote per term; a bootstrap vote needs an empty
 * history on both sides; a candidate of another history gets nothing; the
 * vote goes only to a candidate whose last entry (committed or pending) is
 * at least as recent as ours, so every committed transition survives.
 */
export function judgeVote(v: VoterView, candidate: number, req: VoteRequest): VoteVerdict {
  const refuse = { kind: 'refuse' } as const;
  if (!v.candidates.includes(candidate)) return refuse;
  const masterAlive = v.master !== undefined && v.master !== candidate && v.now - v.heardMasterAt < v.failureTimeoutMs;
  if (masterAlive && !v.isMaster) return refuse;
  if (v.isMaster && v.quorumOk) return refuse;
  if (req.term < v.term || (!req.pre && v.votedIn >= req.term)) return refuse;
  // A vote just given is a master in the making, heard of as much as a
  // master heard: a pre-vote from any other candidate waits, as it would
  // for that master, until the failure timeout from the vote (the master
  // elected may still be sending its first append) or until a master of
  // that term is heard (core.ts forgets the vote then). Without it a candidate
  // whose pre-vote came too early stood again a moment later and won the
  // next term right after another had won this one: two elections for one
  // failover (4 in 10 at 16 processes on 2 cores, bench/clms.ts).
  if (req.pre && v.master === undefined && v.votedFor !== undefined && v.votedFor.node !== candidate && v.votedIn === v.term && v.now - v.votedFor.at < v.failureTimeoutMs) return refuse;
  // A bootstrap vote needs an empty history on both sides.
  if (req.bootstrap !== (v.last === 0 && v.pending === undefined) && v.last === 0) return refuse;
  // Numbers and terms of another cluster history say nothing about ours.
  if (v.historyWanted !== null && req.history !== v.historyWanted && !req.bootstrap) return refuse;
  const myLast = v.pending?.number ?? v.last;
  const myLastTerm = v.pending?.term ?? v.lastTerm;
  const upToDate = req.lastTerm > myLastTerm || (req.lastTerm === myLastTerm && req.lastNumber >= myLast);
  // A pre-vote answers without adopting the term: a node cut off from the
  // cluster cannot inflate terms and depose a healthy master when it returns.
  return { kind: req.pre ? 'pre' : 'vote', granted: upToDate };
}

export interface ElectionStart {
  self: number;
  bootstrap: boolean;
  voters: readonly number[];
  quorum: QuorumPolicy;
  /** Founding needs every candidate (not just a quorum of them). */
  allCandidates: boolean;
  lastNumber: number;
  lastTerm: number;
}

/**
 * One candidate's election: a pre-vote round (term + 1, nobody adopts it),
 * then, when that found enough, a vote round in the raised term. Each round
 * ends when every voter asked has answered or failed (a call that never
 * came back counts as no vote).
 */
export class Election {
  stage: 'pre' | 'vote' = 'pre';
  /** The term asked for in the current round. */
  term = 0;
  granted = new Set<number>();
  /** Calls of the current round not answered yet: call id → voter. */
  readonly waiting = new Map<number, number>();

  constructor(readonly start: ElectionStart) {}

  /** The voters to ask (all but this node). */
  targets(): number[] {
    return this.start.voters.filter((n) => n !== this.start.self);
  }

  beginRound(stage: 'pre' | 'vote', term: number): void {
    this.stage = stage;
    this.term = term;
    this.granted = new Set([this.start.self]);
    this.waiting.clear();
  }

  /** Do the grants of this round suffice? */
  enough(): boolean {
    const { allCandidates, voters, quorum } = this.start;
    return allCandidates ? voters.every((n) => this.granted.has(n)) : hasQuorum(quorum, this.granted, voters);
  }

  /** The vote request of this round, from a node now in history `history`. */
  request(history: string | null): VoteRequest {
    const s = this.start;
    return { term: this.term, history, lastNumber: s.lastNumber, lastTerm: s.lastTerm, bootstrap: s.bootstrap, pre: this.stage === 'pre' };
  }
}
