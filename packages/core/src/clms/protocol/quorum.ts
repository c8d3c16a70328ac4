/**
 * Quorum: whether a set of nodes that acknowledged something is enough of
 * the voters to decide (docs/membership.md has each policy's failure case).
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */

/**
 * Quorum policies (docs/membership.md has each one's failure case):
 * - `majority` (default): more than half of the voting members;
 * - `none`: the master decides alone (the seeds' behaviour; for 1–2 nodes;
 *   both sides of a partition keep deciding: split brain);
 * - `{ size }`: at least `size` voters;
 * - `{ tieBreaker }`: a majority, or exactly half when it includes node `tieBreaker`.
 */
export type QuorumPolicy = 'majority' | 'none' | { size: number } | { tieBreaker: number };

/** Do the `acks` among `voters` make a quorum under `policy`? (Acks from non-voters do not count.) */
export function hasQuorum(policy: QuorumPolicy, acks: ReadonlySet<number>, voters: readonly number[]): boolean {
  const n = voters.length;
  let got = 0;
  for (const v of voters) if (acks.has(v)) got++;
  if (policy === 'none') return true;
  if (policy === 'majority') return got * 2 > n;
  if ('size' in policy) return got >= Math.min(policy.size, Math.max(n, 1));
  return got * 2 > n || (got * 2 === n && acks.has(policy.tieBreaker) && voters.includes(policy.tieBreaker));
}

/**
 * Who votes in elections and acknowledges for commits and leases:
 * - `members` (default): every Up member;
 * - `candidates`: the Up members among the candidates only. Other members
 *   still get every entry, but an Up of theirs changes no voter, so several
 *   go in one append round (replication.ts `batchOf`): a large cluster forms
 *   in far fewer rounds. The price: the cluster decides only while a quorum
 *   of the candidates is up and reachable (like a Raft cluster whose other
 *   members are learners).
 * Every node of a cluster must use the same rule.
 */
export type VoterRule = 'members' | 'candidates';

/** Whether `node`, once Up, votes under `rule`. */
export function isVoter(rule: VoterRule, candidates: readonly number[], node: number): boolean {
  return rule === 'members' || candidates.includes(node);
}

/** The voters, given the Up members: those `rule` lets vote, or every candidate when none of them is Up (a cluster being formed). */
export function votersOf(up: readonly number[], candidates: readonly number[], rule: VoterRule): number[] {
  const voters = rule === 'members' ? [...up] : up.filter((n) => candidates.includes(n));
  return voters.length > 0 ? voters : [...candidates];
}
