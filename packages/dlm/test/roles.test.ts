/**
 * The DLM directory restricted to roles (`masterRoles`): only members with
 * one of the roles master resources, re-mastering after a death stays among
 * them, and with none left a lock fails with DLM_ERR_NO_MASTER. Real
 * ClusterNodes over transport-mem with the virtual clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { isDlmError, type Lock, NoMasterError } from '../src/index.js';
import { type DlmCluster, dlmCluster } from './cluster.js';

let c: DlmCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

/** Settle `p` in virtual time (it needs the network), then give its value or throw its error. */
async function settled<T>(p: Promise<T>, what = 'the operation'): Promise<T> {
  const t: { done: boolean; value?: T; error?: unknown } = { done: false };
  p.then(
    (v) => Object.assign(t, { done: true, value: v }),
    (e: unknown) => Object.assign(t, { done: true, error: e }),
  );
  await c!.until(() => t.done, what);
  if ('error' in t) throw t.error;
  return t.value as T;
}

/** `size` nodes; those in `storage` carry the role `storage`; the DLM masters on `storage` only. */
async function formed(size: number, storage: number[]): Promise<DlmCluster> {
  c = dlmCluster(size, { dlm: { masterRoles: ['storage'] }, meta: (n) => (storage.includes(n) ? { roles: ['storage'] } : { roles: ['frontend'] }) });
  const ns = Array.from({ length: size }, (_, i) => i + 1);
  await c.until(() => c!.ready(ns), `${size} nodes Up with their lock managers`);
  return c;
}

const names = Array.from({ length: 40 }, (_, i) => `orders/${i}`);

describe('masterRoles', () => {
  it('masters resources only on nodes with the role; nodes without it lock through them', async () => {
    const c = await formed(4, [3, 4]);
    for (const n of [1, 2, 3, 4]) expect(c.dlm(n).stats().masters).toEqual([3, 4]);
    const locks: Lock[] = [];
    for (const [i, r] of names.entries()) locks.push(await settled(c.dlm(1 + (i % 2)).lock(r, 'EX'), `EX on ${r}`));
    for (const r of names) for (const n of [1, 2, 3, 4]) expect([3, 4]).toContain(c.dlm(n).masterOf(r));
    // Both role nodes got some (rendezvous hashing spreads them), the others none.
    const mastered = (n: number) => c.dlm(n).mastered().map((m) => m.resource);
    expect(mastered(1)).toEqual([]);
    expect(mastered(2)).toEqual([]);
    expect(mastered(3).length).toBeGreaterThan(0);
    expect(mastered(4).length).toBeGreaterThan(0);
    expect([...mastered(3), ...mastered(4)].sort()).toEqual([...names].sort());
    // The locks are real: a second EX does not get in.
    expect(await settled(c.dlm(2).tryLock(names[0]!, 'EX'))).toBeUndefined();
    for (const l of locks) await settled(l.unlock());
  });

  it('re-masters within the role when a role node dies; the survivors keep their locks', async () => {
    const c = await formed(5, [3, 4, 5]);
    const held = new Map<string, Lock>();
    for (const r of names) held.set(r, await settled(c.dlm(1).lock(r, 'EX'), `EX on ${r}`));
    const on5 = names.filter((r) => c.dlm(1).masterOf(r) === 5);
    expect(on5.length).toBeGreaterThan(0);
    c.kill(5);
    await c.until(() => c.ready([1, 2, 3, 4]), 'the round without node 5');
    for (const n of [1, 2, 3, 4]) {
      expect(c.dlm(n).stats().masters).toEqual([3, 4]);
      for (const r of names) expect([3, 4]).toContain(c.dlm(n).masterOf(r));
    }
    expect(c.dlm(1).mastered()).toEqual([]);
    expect(c.dlm(2).mastered()).toEqual([]);
    // Node 5's resources were rebuilt at 3 or 4 from node 1's report: still held, still exclusive.
    for (const r of on5) {
      expect(held.get(r)!.mode).toBe('EX');
      const m = c.dlm(1).masterOf(r)!;
      expect(c.dlm(m).mastered().find((x) => x.resource === r)?.granted).toEqual([[1, 'EX']]);
      expect(await settled(c.dlm(2).tryLock(r, 'EX'))).toBeUndefined();
    }
    const r = on5[0]!;
    const waiter = c.dlm(2).lock(r, 'EX');
    await settled(held.get(r)!.unlock());
    const next = await settled(waiter, 'the waiter granted after the release');
    expect(next.token).toBeGreaterThan(held.get(r)!.token);
  });

  it('with no member carrying the role, a lock fails with DLM_ERR_NO_MASTER; held locks stay until a role node is back', async () => {
    const c = await formed(3, [3]);
    const r = names[0]!;
    const held = await settled(c.dlm(1).lock(r, 'PW'));
    const waiting = c.dlm(2).lock(r, 'EX').catch((e: unknown) => e);
    c.kill(3);
    await c.until(() => c.ready([1, 2]), 'the round without node 3');
    expect(c.dlm(1).stats().masters).toEqual([]);
    expect(c.dlm(1).masterOf(r)).toBeUndefined();
    // The waiter's request ended with the round: nobody could grant it.
    const ended = await settled(waiting);
    expect(isDlmError(ended, 'DLM_ERR_NO_MASTER')).toBe(true);
    const err = await settled(c.dlm(2).lock('other', 'NL')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoMasterError);
    expect(err).toMatchObject({ code: 'DLM_ERR_NO_MASTER', retryable: true });
    await expect(settled(held.convert('EX'))).rejects.toMatchObject({ code: 'DLM_ERR_NO_MASTER' });
    expect(held.mode).toBe('PW');
    // A role node again: node 1's lock is reported to it and is still exclusive.
    c.start(3);
    await c.until(() => c.ready([1, 2, 3]), 'node 3 back with the role');
    expect(c.dlm(1).masterOf(r)).toBe(3);
    expect(c.dlm(3).mastered().find((x) => x.resource === r)?.granted).toEqual([[1, 'PW']]);
    expect(await settled(c.dlm(2).tryLock(r, 'EX'))).toBeUndefined();
    const other = await settled(c.dlm(2).lock('other', 'EX'));
    expect(other.token).toBeGreaterThan(0);
  });

  it('a release while masterless ends the lock at once', async () => {
    const c = await formed(3, [3]);
    const held = await settled(c.dlm(1).lock(names[1]!, 'EX'));
    c.kill(3);
    await c.until(() => c.ready([1, 2]), 'the round without node 3');
    await settled(held.unlock());
    expect(held.mode).toBeNull();
    expect(c.dlm(1).stats().locks).toBe(0);
    c.start(3);
    await c.until(() => c.ready([1, 2, 3]), 'node 3 back with the role');
    const again = await settled(c.dlm(2).tryLock(names[1]!, 'EX'));
    expect(again?.mode).toBe('EX');
  });

  it('a role given with setInfo makes the node a master in a new round', async () => {
    const c = await formed(3, [3]);
    expect(c.dlm(1).stats().masters).toEqual([3]);
    await settled(c.node(1).setInfo({ roles: ['storage'] }));
    await c.until(() => [1, 2, 3].every((n) => c.dlm(n).stats().masters.join() === '1,3' && c.ready([1, 2, 3])), 'a round with node 1 as a master');
    const mine = names.filter((r) => c.dlm(2).masterOf(r) === 1);
    expect(mine.length).toBeGreaterThan(0);
    const l = await settled(c.dlm(2).lock(mine[0]!, 'EX'));
    expect(c.dlm(1).mastered().map((m) => m.resource)).toEqual([mine[0]]);
    await settled(l.unlock());
  });

  it('rejects a bad masterRoles at once', async () => {
    expect(() => dlmCluster(1, { dlm: { masterRoles: [] } })).toThrow(/masterRoles/);
  });
});
