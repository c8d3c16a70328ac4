/** A killed master (clms/protocol/failover.ts): the line of candidates without it, and the report members send the next master. */
import { describe, expect, it } from 'vitest';
import { lostMasterReport, standingRank } from '../src/clms/protocol/failover.js';

describe('standingRank', () => {
  it('is the index among the candidates, the lost master taken out of the line before us', () => {
    expect(standingRank([1, 2, 3], 2, undefined)).toBe(1);
    expect(standingRank([1, 2, 3], 2, 1)).toBe(0);
    expect(standingRank([1, 2, 3], 3, 1)).toBe(1);
    // A lost master after us changes nothing; neither does one that is no candidate.
    expect(standingRank([1, 2, 3], 1, 2)).toBe(0);
    expect(standingRank([1, 2, 3], 3, 2)).toBe(1);
    expect(standingRank([1, 2, 3], 3, 9)).toBe(2);
    expect(standingRank([1, 2, 3], 4, 1)).toBe(-1);
  });
});

describe('lostMasterReport', () => {
  it('reports the lost master as link lost to a new master, and nothing when it is that master again or nothing was lost', () => {
    expect(lostMasterReport({ node: 1, incarnation: 7 }, 2)).toEqual({ kind: 'suspect', node: 1, incarnation: 7, reason: 'link lost' });
    expect(lostMasterReport({ node: 1, incarnation: 7 }, 1)).toBeUndefined();
    expect(lostMasterReport(undefined, 2)).toBeUndefined();
  });
});
