/**
 * Choosing a node among those that serve a name: a pure function of the
 * candidates and this node's counters, so each policy is tested by hand.
 */

import { ServicesError } from './errors.js';

/** How a by-name call chooses among the nodes serving a name. */
export type Policy = 'round-robin' | 'least-outstanding' | 'prefer-local';

export const POLICIES: readonly Policy[] = ['round-robin', 'least-outstanding', 'prefer-local'];

export interface PickInput {
  /** Live candidates, in ascending node order, at least one. */
  readonly candidates: readonly number[];
  /** This node. */
  readonly self: number;
  /** The name's rotation counter (round-robin position); the caller advances it. */
  readonly cursor: number;
  /** By-name calls this node has in flight to a node. */
  outstanding(node: number): number;
}

/**
 * - `round-robin`: the candidates in turn;
 * - `least-outstanding`: the candidate with the fewest calls in flight from
 *   this node, ties broken in turn (so equal load still spreads);
 * - `prefer-local`: this node when it serves the name, else in turn.
 */
export function pick(policy: Policy, input: PickInput): number {
  const { candidates, cursor } = input;
  const n = candidates.length;
  // Exported: an unknown policy ran as round-robin, and no candidates was a RangeError.
  if (!POLICIES.includes(policy)) throw new ServicesError('SERVICES_ERR_INVALID_ARGUMENT', `unknown policy ${JSON.stringify(policy)}: one of ${POLICIES.join(', ')}`);
  if (n === 0) throw new ServicesError('SERVICES_ERR_INVALID_ARGUMENT', 'pick needs at least one candidate');
  const turn = (i: number): number => candidates[(cursor + i) % n]!;
  if (policy === 'prefer-local' && candidates.includes(input.self)) return input.self;
  if (policy !== 'least-outstanding') return turn(0);
  let best = turn(0);
  let least = input.outstanding(best);
  for (let i = 1; i < n && least > 0; i++) {
    const c = turn(i);
    const o = input.outstanding(c);
    if (o < least) {
      best = c;
      least = o;
    }
  }
  return best;
}
