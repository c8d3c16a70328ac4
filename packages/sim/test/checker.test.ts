/**
 * The checker on bounded histories: the huge profile runs the nodes with
 * the default historyLimit, so a node's history may no longer hold
 * transition 1 (it compacted, or it joined from a snapshot that did not).
 * Such a node is still compared with the others, known by its history's
 * name. Node objects are stand-ins with the few members the checker reads.
 */
import { describe, expect, it } from 'vitest';
import type { ClusterNode, Transition } from '@clusterinfra/core';
import { Checker } from '@clusterinfra/sim';

const HISTORY = '1.100.0';

function transition(number: number, cause = 'joined'): Transition {
  return { number, term: 1, kind: 'state', node: number, incarnation: 100 + number, from: 'NeverUp', to: 'ComingUp', cause, time: number };
}

/** A node whose history holds `held` (numbers in order, maybe not from 1; replaced in place to install a snapshot). */
function node(nodeNum: number, held: Transition[]): ClusterNode {
  const stand = {
    nodeNum,
    incarnation: 1000 + nodeNum,
    currentTerm: 1,
    isMaster: false,
    master: undefined,
    hasQuorum: true,
    historyId: held.length > 0 ? HISTORY : null,
    get lastTransition(): number {
      return held.at(-1)?.number ?? 0;
    },
    get firstTransition(): number {
      return held[0]?.number ?? 1;
    },
    transition: (n: number) => held.find((t) => t.number === n),
    transitions: (after = 0) => held.filter((t) => t.number > after),
  };
  return stand as unknown as ClusterNode;
}

function checker(nodes: ClusterNode[]): Checker {
  return new Checker([1], () => 0, () => {}, () => nodes, () => false);
}

describe('checker: a history that no longer holds transition 1', () => {
  const full = [1, 2, 3, 4, 5].map((n) => transition(n));

  it('is compared with the others by its name: a different transition is M2', () => {
    const bounded = node(2, [transition(4), transition(5, 'something else')]);
    const c = checker([node(1, full), bounded]);
    c.step();
    expect(c.violation?.invariant).toBe('M2');
    expect(c.violation?.detail).toContain('node 2 has #5');
  });

  it('passes when what it holds is what the others hold', () => {
    const c = checker([node(1, full), node(2, [transition(4), transition(5)])]);
    c.step();
    expect(c.violation).toBeUndefined();
    expect(c.committed).toBe(5);
  });

  it('a transition past what anyone was seen to hold is M1', () => {
    const c = checker([node(1, full), node(2, [transition(4), transition(5), transition(7)])]);
    c.step();
    expect(c.violation?.invariant).toBe('M1');
  });
});

describe('checker: transition events across an installed snapshot', () => {
  /** Node 1 holds the whole history (as the master does), so every number was seen. */
  const master = node(1, [1, 2, 3, 4, 5, 6, 7].map((n) => transition(n)));
  it('a node that announced #1-#2, then installed a snapshot whose history starts at #6, may go on from #6', () => {
    const held = [transition(1), transition(2)];
    const n = node(2, held);
    const c = checker([master, n]);
    c.step();
    c.onTransition(n, held[0]!);
    c.onTransition(n, held[1]!);
    held.splice(0, held.length, transition(6), transition(7));
    c.onTransition(n, held[0]!);
    c.onTransition(n, held[1]!);
    expect(c.violation).toBeUndefined();
  });

  it('a jump while the node still holds what it skipped is M1', () => {
    const held = [transition(1), transition(2)];
    const n = node(2, held);
    const c = checker([master, n]);
    c.step();
    c.onTransition(n, held[0]!);
    held.push(transition(3), transition(4));
    c.onTransition(n, held[3]!);
    expect(c.violation?.invariant).toBe('M1');
    expect(c.violation?.detail).toContain('got transition 4 after 1');
  });

  it('a jump to a transition past the first one held is M1', () => {
    const held = [transition(1)];
    const n = node(2, held);
    const c = checker([master, n]);
    c.step();
    c.onTransition(n, held[0]!);
    held.splice(0, held.length, transition(6), transition(7));
    c.onTransition(n, held[1]!);
    expect(c.violation?.invariant).toBe('M1');
  });
});
