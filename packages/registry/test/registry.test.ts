/**
 * The registry over transport-mem under the virtual clock: convergence,
 * compare-and-set, owned entries, sequencer crash (network.crash), late
 * joiners, limits.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createRegistry, isRegistryError, type RegistryEvent } from '../src/index.js';
import { converged, mapOf, range, type RegCluster, regCluster } from './harness.js';
import { staleReplicaRebuild } from './workload.js';

let c: RegCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

const allReady = (cl: RegCluster, ns: number[]): boolean => ns.every((n) => cl.ready(n));
const hostOf = (cl: RegCluster, n: number): number => cl.node(n).keyService('registry.svc')!.host!;

/** Versions a node saw per key only grow, and deliveries are in revision order (per epoch of the stream). */
function checkVersionsGrow(events: RegistryEvent[]): void {
  const last = new Map<string, number>();
  for (const e of events) {
    if (e.type === 'put') {
      const before = last.get(e.key) ?? 0;
      expect(e.version, `version of ${e.key}`).toBeGreaterThan(before);
      last.set(e.key, e.version);
    } else {
      last.set(e.key, Math.max(last.get(e.key) ?? 0, e.version));
    }
  }
}

describe('replication', () => {
  it('every node converges to the same map; reads are local; versions only grow', async () => {
    c = regCluster(4);
    await c.until(() => allReady(c!, range(4)), 30_000, 'registries started');
    const writes = range(4).flatMap((n) => [0, 1, 2].map((i) => c!.reg(n).put(`k${i}`, { from: n, i })));
    const entries = await c.settle(Promise.all(writes));
    // Each write has its own version; writes to one key were ordered by the sequencer.
    expect(new Set(entries.map((e) => e.version)).size).toBe(12);
    await c.until(() => converged(c!, range(4)), 10_000, 'convergence');
    const map = mapOf(c, 1);
    expect(Object.keys(map).sort()).toEqual(['k0', 'k1', 'k2']);
    // The winner of each key is the write with the highest version.
    for (const k of ['k0', 'k1', 'k2']) {
      const top = entries.filter((e) => e.key === k).sort((a, b) => b.version - a.version)[0]!;
      expect(map[k]).toEqual([top.value, top.version, null]);
    }
    for (const n of range(4)) checkVersionsGrow(c.events.get(n)!);
    // The same events in the same order on every node.
    const seq = (n: number): string => JSON.stringify(c!.events.get(n)!.filter((e) => e.cause === 'write').map((e) => [e.key, e.version]));
    for (const n of range(4)) expect(seq(n)).toBe(seq(1));
    // Every map says which cluster history it is of: the nodes' own.
    for (const n of range(4)) expect(c.reg(n).history).toBe(c.node(n).historyId);
    expect(c.reg(1).history).not.toBeNull();
  });
});

describe('a sync that failed', () => {
  it('a replica whose sync answer came too late (the sequencer subscribed it all the same) syncs again once the link is back, with no write left to push', async () => {
    c = regCluster(3, { options: { pushTimeoutMs: 20, checkIntervalMs: 200 } });
    await c.until(() => allReady(c!, range(3)), 30_000, 'registries started');
    const host = hostOf(c, 1);
    const slow = range(3).find((n) => n !== host)!;
    // Slow both ways: the pushes to `slow` time out (it is dropped and told to resync), and so do its syncs (40 ms).
    const link = (faults: { latencyMs: number } | null): void => {
      c!.network.setLinkFaults(`node-${host}`, `node-${slow}`, faults);
      c!.network.setLinkFaults(`node-${slow}`, `node-${host}`, faults);
    };
    link({ latencyMs: 60 });
    for (let i = 0; i < 5; i++) await c.settle(c.reg(host).put(`k${i}`, i));
    await c.clock.advance(1_000);
    expect(c.reg(slow).revision).toBeLessThan(c.reg(host).revision);
    link(null);
    // No write comes any more: only the replica's check loop can bring it up to date.
    await c.until(() => converged(c!, range(3)), 10_000, 'the slow replica caught up');
  });
});

describe('compare-and-set and delete', () => {
  it('a put with expectVersion applies only at that version; a conflict says what the sequencer has', async () => {
    c = regCluster(3);
    await c.until(() => allReady(c!, range(3)), 30_000, 'registries started');
    const created = await c.settle(c.reg(2).put('leader', 'node-2', { expectVersion: 0 }));
    // A second create of the same key conflicts, and the error carries the current entry.
    const err = await c.settle(c.reg(3).put('leader', 'node-3', { expectVersion: 0 })).catch((e: unknown) => e);
    expect(isRegistryError(err, 'REGISTRY_ERR_CONFLICT')).toBe(true);
    expect((err as { current: unknown }).current).toMatchObject({ key: 'leader', value: 'node-2', version: created.version });
    // With the version it read, the update applies; a stale version conflicts.
    const updated = await c.settle(c.reg(3).put('leader', 'node-3', { expectVersion: created.version }));
    expect(updated.version).toBeGreaterThan(created.version);
    const stale = await c.settle(c.reg(1).put('leader', 'node-1', { expectVersion: created.version })).catch((e: unknown) => e);
    expect(isRegistryError(stale, 'REGISTRY_ERR_CONFLICT')).toBe(true);
    const badDelete = await c.settle(c.reg(1).delete('leader', { expectVersion: created.version })).catch((e: unknown) => e);
    expect(isRegistryError(badDelete, 'REGISTRY_ERR_CONFLICT')).toBe(true);
    expect(await c.settle(c.reg(1).delete('leader', { expectVersion: updated.version }))).toMatchObject({ existed: true });
    const none = await c.settle(c.reg(1).delete('leader'));
    // Deleting an absent key is still a sequenced write, with its own revision.
    expect(none.existed).toBe(false);
    expect(none.version).toBeGreaterThan(updated.version);
    await c.until(() => converged(c!, range(3)), 10_000, 'convergence');
    for (const n of range(3)) expect(c.reg(n).get('leader')).toBeUndefined();
    // The write acknowledged to node 3 was on node 3 when put() resolved (it is a subscriber): read your writes.
    const e = await c.settle(c.reg(3).put('x', 1));
    expect(c.reg(3).get('x')?.version).toBe(e.version);
  });
});

describe('owned entries', () => {
  it('an owned entry vanishes on every node when its owner goes down (SIGKILL), by a sequenced owner-down delete', async () => {
    c = regCluster(4, { candidates: [1, 2] });
    await c.until(() => allReady(c!, range(4)), 30_000, 'registries started');
    const host = hostOf(c, 1);
    const victim = range(4).filter((n) => n !== host && n !== 1)[0]!;
    await c.settle(c.reg(victim).put('presence/victim', { up: true }, { owned: true }));
    await c.settle(c.reg(1).put('presence/plain', { up: true }));
    const rest = range(4).filter((n) => n !== victim);
    await c.until(() => converged(c!, range(4)), 10_000, 'convergence');
    expect(c.reg(1).get('presence/victim')?.owner).toEqual({ node: victim, incarnation: c.node(victim).incarnation });
    const watched: RegistryEvent[] = [];
    const ac = new AbortController();
    void (async () => {
      for await (const e of c!.reg(1).watch('presence/', { signal: ac.signal, initial: false })) watched.push(e);
    })();
    c.kill(victim);
    await c.until(() => rest.every((n) => !c!.reg(n).has('presence/victim')), 30_000, 'the owned entry to vanish');
    await c.until(() => converged(c!, rest), 10_000, 'convergence');
    // The plain entry stays; the owned one went by an owner-down delete, seen by the watcher.
    expect(c.reg(2).get('presence/plain')?.value).toEqual({ up: true });
    expect(watched).toEqual([expect.objectContaining({ type: 'delete', key: 'presence/victim', cause: 'owner-down' })]);
    ac.abort();
  });
});

describe('sequencer failover', () => {
  it('acknowledged writes survive a SIGKILL of the sequencer; the new one rebuilds from the survivors before it takes writes; versions keep growing', async () => {
    c = regCluster(4, { candidates: [1, 2, 3] });
    await c.until(() => allReady(c!, range(4)), 30_000, 'registries started');
    const host = hostOf(c, 1);
    const epoch = c.node(1).keyService('registry.svc')!.epoch;
    const writer = range(4).find((n) => n !== host)!;
    const acked = await c.settle(Promise.all(range(20).map((i) => c!.reg(((writer + i) % 4) + 1 === host ? writer : ((writer + i) % 4) + 1).put(`k${i % 7}`, i))));
    // The sequencer's own owned entry goes with it.
    await c.settle(c.reg(host).put('owned-by-host', true, { owned: true }));
    const rest = range(4).filter((n) => n !== host);
    await c.until(() => converged(c!, range(4)), 10_000, 'convergence before the crash');
    const before = mapOf(c, writer);
    c.kill(host);
    await c.until(() => rest.every((n) => (c!.node(n).keyService('registry.svc')?.epoch ?? 0) > epoch && c!.node(n).keyService('registry.svc')!.ready), 30_000, 'failover');
    await c.until(() => converged(c!, rest), 10_000, 'convergence after the failover');
    // Every acknowledged write is there, at its version (the last write to each key wins).
    const after = mapOf(c, rest[0]!);
    for (let k = 0; k < 7; k++) {
      const top = acked.filter((e) => e.key === `k${k}`).sort((a, b) => b.version - a.version)[0]!;
      expect(after[`k${k}`]).toEqual([top.value, top.version, null]);
    }
    expect(after['owned-by-host']).toBeUndefined();
    const { ['owned-by-host']: _gone, ...expected } = before;
    expect(after).toEqual(expected);
    // New writes get versions above every version of the old sequencer.
    const next = await c.settle(c.reg(rest[0]!).put('k0', 'after'));
    expect(next.version).toBeGreaterThan(Math.max(...acked.map((e) => e.version)));
    await c.until(() => converged(c!, rest), 10_000, 'convergence after a new write');
    for (const n of rest) checkVersionsGrow(c.events.get(n)!);
  });

  it('the rebuild takes the freshest replica: a replica that stopped following cannot bring back an old value or a deleted key', async () => {
    await staleReplicaRebuild();
  });

  it('a clean leave of the sequencer hands the map over: every write stays, the entries the leaver owned go', async () => {
    c = regCluster(4, { candidates: [1, 2, 3] });
    await c.until(() => allReady(c!, range(4)), 30_000, 'registries started');
    const host = hostOf(c, 1);
    const epoch = c.node(1).keyService('registry.svc')!.epoch;
    const other = range(4).find((n) => n !== host)!;
    const kept = await c.settle(Promise.all([c.reg(other).put('a', 1), c.reg(host).put('b', 2)]));
    await c.settle(c.reg(host).put('mine', true, { owned: true }));
    const rest = range(4).filter((n) => n !== host);
    await c.settle(c.node(host).leave());
    await c.until(() => rest.every((n) => (c!.node(n).keyService('registry.svc')?.epoch ?? 0) > epoch && c!.node(n).keyService('registry.svc')!.ready), 30_000, 'hand-over');
    await c.until(() => converged(c!, rest) && !c!.reg(rest[0]!).has('mine'), 10_000, 'convergence');
    expect(mapOf(c, rest[0]!)).toEqual({ a: [1, kept[0].version, null], b: [2, kept[1].version, null] });
    expect(c.events.get(rest[0]!)!.some((e) => e.type === 'delete' && e.key === 'mine' && e.cause === 'owner-down')).toBe(true);
  });
});

describe('eviction', () => {
  it('a node declared down rejoins as a new incarnation in the same history: its revision never goes down, no reset, its old map until the snapshot', async () => {
    c = regCluster(4, { candidates: [1, 2, 3] });
    await c.until(() => allReady(c!, range(4)), 30_000, 'registries started');
    await c.settle(Promise.all([c.reg(1).put('a', 1), c.reg(2).put('b', 2)]));
    await c.until(() => converged(c!, range(4)), 10_000, 'convergence');
    const reg = c.reg(4);
    const incarnation = c.node(4).incarnation;
    const seen = { low: reg.revision, unsynced: false, empty: false };
    const watch = (): void => {
      seen.low = Math.min(seen.low, reg.revision);
      if (!reg.synced) seen.unsynced = true;
      if (reg.size === 0) seen.empty = true;
    };
    const before = reg.revision;
    void c.node(1).declareDown(4, 'test').catch(() => {});
    await c.until(() => (watch(), c!.node(4).incarnation !== incarnation && c!.node(1).info(4)?.state === 'Up'), 30_000, 'node 4 back as a new incarnation');
    const late = await c.settle(c.reg(1).put('c', 3));
    await c.until(() => (watch(), converged(c!, range(4))), 10_000, 'convergence after the rejoin');
    expect(seen).toEqual({ low: before, unsynced: false, empty: false });
    expect(reg.resets).toBe(0);
    expect(reg.get('c')?.version).toBe(late.version);
  });
});

describe('late joiner', () => {
  it('a node that joins later gets a snapshot, then the stream; its watcher sees the entries first, then the changes', async () => {
    c = regCluster(4, { startOnly: [1, 2, 3] });
    await c.until(() => allReady(c!, range(3)), 30_000, 'registries started');
    await c.settle(Promise.all([0, 1, 2, 3, 4].map((i) => c!.reg(2).put(`svc/${i}`, { port: 8000 + i }))));
    expect((await c.settle(c.reg(2).delete('svc/0'))).existed).toBe(true);
    c.start(4);
    await c.until(() => c!.ready(4), 30_000, 'the late joiner');
    expect(c.reg(4).entries('svc/').map((e) => e.key)).toEqual(['svc/1', 'svc/2', 'svc/3', 'svc/4']);
    const seen: RegistryEvent[] = [];
    const ac = new AbortController();
    void (async () => {
      for await (const e of c!.reg(4).watch('svc/', { signal: ac.signal })) seen.push(e);
    })();
    await c.settle(c.reg(1).put('svc/5', { port: 8005 }));
    await c.settle(c.reg(3).put('other', 1));
    await c.until(() => converged(c!, range(4)), 10_000, 'convergence');
    await c.until(() => seen.length === 5, 1000, 'watch events');
    expect(seen.map((e) => [e.key, e.cause])).toEqual([
      ['svc/1', 'initial'],
      ['svc/2', 'initial'],
      ['svc/3', 'initial'],
      ['svc/4', 'initial'],
      ['svc/5', 'write'],
    ]);
    ac.abort();
  });
});

describe('limits', () => {
  it('bad input and full maps get typed errors; watchers are bounded and a slow one is ended with an overflow', async () => {
    c = regCluster(2, { options: { maxEntries: 3, maxEntryBytes: 64, maxWatchers: 2, maxWatchQueue: 3 } });
    await c.until(() => allReady(c!, range(2)), 30_000, 'registries started');
    const r = c.reg(2);
    const code = async (p: () => Promise<unknown>): Promise<string | undefined> => {
      try {
        await c!.settle(p());
        return undefined;
      } catch (err) {
        return isRegistryError(err) ? err.registryCode : String(err);
      }
    };
    expect(await code(() => r.put('', 1))).toBe('REGISTRY_ERR_INVALID_KEY');
    expect(await code(() => r.put('k', { when: new Date() } as never))).toBe('REGISTRY_ERR_INVALID_VALUE');
    expect(await code(() => r.put('k', Number.NaN))).toBe('REGISTRY_ERR_INVALID_VALUE');
    expect(await code(() => r.put('k', 'x'.repeat(100)))).toBe('REGISTRY_ERR_ENTRY_TOO_LARGE');
    for (const k of ['a', 'b', 'c']) await c.settle(r.put(k, 1));
    // Refused by the sequencer, whichever node it is on; the code travels back as data.
    expect(await code(() => r.put('d', 1))).toBe('REGISTRY_ERR_FULL');
    expect(await code(() => c!.reg(1).put('d', 1))).toBe('REGISTRY_ERR_FULL');
    const ac = new AbortController();
    const slow = r.watch('', { signal: ac.signal });
    r.watch('', { signal: ac.signal });
    expect(() => r.watch('')).toThrow(expect.objectContaining({ registryCode: 'REGISTRY_ERR_TOO_MANY_WATCHERS' }));
    // The slow watcher read nothing: 3 initial entries fill its queue, the next change overflows it.
    await c.settle(r.put('a', 2));
    const got: string[] = [];
    const err = await (async () => {
      for await (const e of slow) got.push(e.key);
    })().catch((e: unknown) => e);
    expect(got).toEqual(['a', 'b', 'c']);
    expect(isRegistryError(err, 'REGISTRY_ERR_WATCH_OVERFLOW')).toBe(true);
    // Its slot is free again.
    expect(() => r.watch('', { signal: ac.signal })).not.toThrow();
    ac.abort();
    await r.close();
    expect(await code(() => r.put('e', 1))).toBe('REGISTRY_ERR_CLOSED');
  });
});

describe('misuse', () => {
  it('a caller mistake fails at once with REGISTRY_ERR_INVALID_ARGUMENT, and nothing is written', async () => {
    c = regCluster(2);
    await c.until(() => allReady(c!, range(2)), 30_000, 'registries started');
    const r = c.reg(2);
    const code = async (f: () => unknown): Promise<string> => {
      try {
        await c!.settle(Promise.resolve().then(f), 20_000);
        return 'resolved';
      } catch (err) {
        return isRegistryError(err) ? err.registryCode : `${(err as Error).name}: ${(err as Error).message}`;
      }
    };
    const invalid = 'REGISTRY_ERR_INVALID_ARGUMENT';
    // Each was a TypeError, a ZodError, or taken: an owned of "yes" wrote an unowned entry, a prefix of 5 watched "5…".
    expect(await code(() => createRegistry(null as never, { name: 'x', subservice: 41 }))).toBe(invalid);
    expect(await code(() => createRegistry({} as never, { name: 'x', subservice: 41 }))).toBe(invalid);
    for (const options of [null, 5, [], { expectVersion: -1 }, { expectVersion: 1.5 }, { expectVersion: '3' }, { expectVersion: Number.NaN }, { owned: 'yes' }, { timeoutMs: -1 }, { signal: 5 }]) {
      expect(await code(() => r.put('k', 1, options as never)), JSON.stringify(options)).toBe(invalid);
    }
    for (const options of [null, 5, { expectVersion: -1 }, { signal: {} }]) {
      expect(await code(() => r.delete('k', options as never)), JSON.stringify(options)).toBe(invalid);
    }
    for (const options of [null, { signal: {} }, { initial: 'no' }]) expect(await code(() => r.watch('', options as never))).toBe(invalid);
    expect(await code(() => r.watch(5 as never))).toBe(invalid);
    expect(await code(() => r.entries(5 as never))).toBe(invalid);
    for (const options of [null, { timeoutMs: -1 }, { signal: 5 }]) expect(await code(() => r.start(options as never))).toBe(invalid);
    expect(r.size).toBe(0);
    // A peer that skips the checks: the sequencer's schema refuses the write, and the caller gets
    // ICS_ERR_INVALID_ARGUMENT whether the sequencer is another node or this one (not an internal error).
    for (const n of [1, 2]) {
      for (const args of [5, { kind: 'put', key: 'k', value: 1, expectVersion: -1 }]) {
        const err = await c.settle(c.node(n).callKeyService('registry.svc', 'write', args)).catch((e: unknown) => e);
        expect((err as { code?: string }).code, `node ${n}: ${String(err)}`).toBe('ICS_ERR_INVALID_ARGUMENT');
      }
    }
    expect(r.size).toBe(0);
    // Still usable.
    expect((await c.settle(r.put('k', 1, { expectVersion: 0 }))).value).toBe(1);
  });
});

describe('two cluster histories', () => {
  it('a node still in the old history neither writes to nor follows the sequencer of a re-formed cluster (core refuses its calls: CLMS_ERR_KEYSERVICE_OTHER_HISTORY)', async () => {
    // Node 1 is the only candidate: killed and started again, it founds a new history alone
    // while nodes 2 and 3 still follow the old one, where node 1 (its former incarnation)
    // hosts the key service at epoch 1, the epoch the new history's sequencer has too.
    c = regCluster(3, { candidates: [1] });
    await c.until(() => allReady(c!, range(3)), 30_000, 'registries started');
    for (let i = 0; i < 6; i++) await c.settle(c.reg(2).put(`old${i}`, i));
    await c.until(() => converged(c!, range(3)), 10_000, 'convergence before the crash');
    const old = c.node(2).historyId;
    expect(hostOf(c, 2)).toBe(1);
    c.kill(1);
    c.start(1);
    await c.until(() => c!.ready(1) && c!.node(1).historyId !== old, 30_000, 'node 1 founds a new history');
    expect(c.node(1).keyService('registry.svc')?.epoch).toBe(c.node(2).keyService('registry.svc')?.epoch);
    // A map labelled with the old history holds only what the old history wrote.
    const mixed = new Set<string>();
    const watch = (): void => {
      for (const n of [2, 3]) {
        const r = c!.reg(n);
        if (r.history === old && r.entries().some((e) => e.key.startsWith('new'))) mixed.add(`node ${n} at revision ${r.revision}`);
      }
    };
    const refused: string[] = [];
    for (let i = 0; i < 10; i++) {
      await c.settle(c.reg(1).put(`new${i}`, i));
      // A write from the old history while it still follows it must not reach the new sequencer.
      if (c.node(2).historyId === old) {
        await c.settle(c.reg(2).put(`new-from-2-${i}`, i, { timeoutMs: 500 })).then(
          () => undefined,
          (err: unknown) => void refused.push(isRegistryError(err) ? err.registryCode : ((err as { code?: string }).code ?? String(err))),
        );
        if (c.node(2).historyId === old && refused.length <= i) mixed.add(`node 2's write ${i} was taken by the new history's sequencer`);
      }
      watch();
      await c.until(() => (watch(), false), 100).catch(() => {});
    }
    await c.until(() => (watch(), range(3).every((n) => c!.node(n).historyId === c!.node(1).historyId) && converged(c!, range(3))), 60_000, 'everyone in the new history');
    expect([...mixed]).toEqual([]);
    // The window was there: node 2 wrote from the old history, and was refused.
    expect(refused.length).toBeGreaterThan(0);
    expect(new Set(refused)).toEqual(new Set(['CLMS_ERR_KEYSERVICE_OTHER_HISTORY']));
    expect(Object.keys(mapOf(c, 2)).some((k) => k.startsWith('old'))).toBe(false);
  });
});
