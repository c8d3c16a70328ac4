/**
 * A killed master (issue 16, fault 5). Its process closes its sockets, so
 * every member sees the link break at once and asks it `alive`; a member it
 * does not answer knows the master is gone (`lostMaster` in detection.ts). Two
 * things then make its GoingDown as fast as a killed member's:
 * - the candidates stand in order without waiting a stagger for a master
 *   they found gone (the first candidate after it stands at once);
 * - that evidence reaches the new master: its own (it suspects the old
 *   master as soon as it is elected) and each member's, reported to the new
 *   master when it is heard, so the decision record says `link lost`.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import type { Report } from './messages.js';

/** A master this member lost its link to and that did not answer then. */
export interface LostMaster {
  readonly node: number;
  readonly incarnation: number;
}

/**
 * `self`'s place in the line of candidates standing for election: its index
 * in `candidates`, not counting `lost` (the master it found gone). An
 * election stands after `rank` staggers.
 */
export function standingRank(candidates: readonly number[], self: number, lost: number | undefined): number {
  const index = candidates.indexOf(self);
  if (index < 0 || lost === undefined) return index;
  const lostAt = candidates.indexOf(lost);
  return lostAt >= 0 && lostAt < index ? index - 1 : index;
}

/** What a member tells `newMaster` about the master it lost (nothing when that master is back as the new one). */
export function lostMasterReport(lost: LostMaster | undefined, newMaster: number): Report | undefined {
  if (!lost || lost.node === newMaster) return undefined;
  return { kind: 'suspect', node: lost.node, incarnation: lost.incarnation, reason: 'link lost' };
}
