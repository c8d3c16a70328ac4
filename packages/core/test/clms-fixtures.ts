/**
 * A small cluster by hand for tests over the protocol core: transitions,
 * the history of nodes 1, 2, 3 formed under master 1 in term 1, and a
 * `Core` that is a member of it.
 */
import { Core } from '../src/clms/protocol/core.js';
import { History } from '../src/clms/protocol/history.js';
import type { NodeState, Transition } from '../src/clms/protocol/messages.js';

/** A state transition of `node` (incarnation node × 10). */
export const stateChange = (number: number, node: number, from: NodeState, to: NodeState, term = 1): Transition => ({ number, term, kind: 'state', node, incarnation: node * 10, from, to, cause: 'test', time: 0 });

/** Nodes 1, 2, 3 Up (#1–#7), master 1 in term 1. */
export function formedHistory(): History {
  const h = new History(1000);
  let n = 0;
  for (const node of [1, 2, 3]) {
    h.append(stateChange(++n, node, 'NeverUp', 'ComingUp'));
    h.append(stateChange(++n, node, 'ComingUp', 'Up'));
    if (node === 1) h.append({ ...stateChange(++n, 1, 'Up', 'Up'), kind: 'master' });
  }
  return h;
}

/** Node `self` with history `h`, a member that heard master 1 in term 1 (candidates 1, 2, 3). */
export function memberCore(self: number, h: History): Core {
  const c = new Core({ self, candidates: [1, 2, 3], quorum: 'majority', formation: 'majority', failureTimeoutMs: 1000, heartbeatIntervalMs: 100, rpcTimeoutMs: 500, electionStaggerMs: 200, random: { int: () => 0 } }, h);
  c.phase = 'member';
  c.everJoined = true;
  c.term = 1;
  c.master = 1;
  c.quorumOk = true;
  return c;
}
