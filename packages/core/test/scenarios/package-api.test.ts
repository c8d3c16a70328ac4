/**
 * What packages built on the public API need from a node (issue 18: the
 * DLM, the registry and run levels found these missing): the node's logger,
 * and the name of the history it follows, comparable across a re-formed
 * cluster.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { compareHistoryIds, InvalidArgumentError, type Logger } from '@clusterinfra/core';
import { allUp, range, type SimCluster, simCluster } from './clms-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

describe('node.logger', () => {
  it('is the logger the node was given, so a package logs through a child of it', () => {
    const lines: Array<{ bindings: Record<string, unknown>; msg: string }> = [];
    const make = (bindings: Record<string, unknown>): Logger => {
      const at = (first: unknown, ...rest: unknown[]): void => void lines.push({ bindings, msg: typeof first === 'string' ? first : String(rest[0]) });
      return { fatal: at, error: at, warn: at, info: at, debug: at, trace: at, child: (more) => make({ ...bindings, ...more }) };
    };
    const root = make({});
    sim = simCluster(1, { extra: () => ({ logger: root }) });
    expect(sim.node(1).logger).toBe(root);
    sim.node(1).logger.child({ component: 'dlm' }).info('hello');
    expect(lines.at(-1)).toEqual({ bindings: { component: 'dlm' }, msg: 'hello' });
  });

});

describe('node.historyId', () => {
  it('is the same on every member, a late joiner too; a cluster re-formed from nothing has a new one that compares higher', async () => {
    sim = simCluster(3, { candidates: [1, 2] });
    const before = sim.node(1).historyId;
    expect(before).toBeNull();
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const first = sim.node(1).historyId!;
    expect(first).toMatch(/^\d+\.\d+\.\d+/);
    expect(range(3).map((n) => sim!.node(n).historyId)).toEqual([first, first, first]);
    // A late joiner gets it with its snapshot.
    sim.kill(3);
    await sim.until(() => sim!.node(1).info(3)?.state === 'Down', 30_000, 'node 3 down');
    sim.start(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'node 3 back');
    expect(sim.node(3).historyId).toBe(first);
    expect(compareHistoryIds(first, sim.node(3).historyId!)).toBe(0);
    // Every node gone: the cluster that forms again follows another history, founded later.
    for (const n of range(3)) sim.kill(n);
    await sim.clock.advance(1_000);
    for (const n of range(3)) sim.start(n);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 're-formation');
    const second = sim.node(2).historyId!;
    expect(second).not.toBe(first);
    expect(range(3).map((n) => sim!.node(n).historyId)).toEqual([second, second, second]);
    expect(compareHistoryIds(second, first)).toBeGreaterThan(0);
    expect(compareHistoryIds(first, second)).toBeLessThan(0);
  });

  it('compareHistoryIds orders by founding time, then founder, then incarnation, and refuses what is not a history id', () => {
    expect(compareHistoryIds('2.5.100', '1.9.200')).toBeLessThan(0);
    expect(compareHistoryIds('2.5.100', '1.9.100')).toBeGreaterThan(0);
    expect(compareHistoryIds('1.6.100', '1.5.100')).toBeGreaterThan(0);
    expect(compareHistoryIds('1.5.100.5', '1.5.100')).toBeGreaterThan(0);
    // A typed error with a code (it was a TypeError).
    for (const bad of ['x', '1.5', null, 5, { toString: () => '1.5.100' }]) {
      expect(() => compareHistoryIds(bad as string, '1.5.100')).toThrow(expect.objectContaining({ code: 'ICS_ERR_INVALID_ARGUMENT' }));
      expect(() => compareHistoryIds('1.5.100', bad as string)).toThrow(InvalidArgumentError);
    }
  });
});
