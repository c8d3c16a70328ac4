/**
 * One node number, one live process (issue 16, fault 3). A node that dials
 * in as a new incarnation of a number is either that node restarted (the
 * former incarnation is gone) or a second process given the same number
 * (the former one still runs, at another address). Only the former
 * incarnation can tell: a member whose history holds a live incarnation of
 * the number asks it (`alive`) before it lets the newcomer in, and refuses
 * the newcomer when it answers as itself. Without that check the two
 * evicted each other for ever, each time as "restarted".
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import type { NodeState } from '../types.js';

/** What the history holds for the number: its incarnation and state. */
export interface HeldIncarnation {
  readonly incarnation: number;
  readonly state: NodeState;
}

/**
 * A link from `incarnation` of a number whose history entry is `held`:
 * `admit` at once, or `ask` the held incarnation first. Asked only when the
 * held one is a member that has not begun to leave (ComingUp, Up) and is
 * older: a node on its way down or out is no rival, and an older
 * incarnation than the held one is refused by ICS anyway.
 */
export function newcomerCheck(held: HeldIncarnation | undefined, incarnation: number): 'admit' | 'ask' {
  if (!held || held.incarnation >= incarnation) return 'admit';
  return held.state === 'Up' || held.state === 'ComingUp' ? 'ask' : 'admit';
}

/**
 * The held incarnation was asked: `answered` is the incarnation that
 * answered `alive` (undefined: no answer, or the call failed). The
 * newcomer is refused only when the held incarnation itself answered; an
 * answer from another incarnation (the newcomer, now at the held one's
 * address) means the held one is gone.
 */
export function newcomerVerdict(held: HeldIncarnation, answered: number | undefined): 'admit' | 'refuse' {
  return answered === held.incarnation ? 'refuse' : 'admit';
}
