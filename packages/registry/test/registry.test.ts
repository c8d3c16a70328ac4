/**
 * The registry over transport-mem under the virtual clock: convergence,
 * compare-and-set, owned entries, sequencer crash (network.crash), late
 * joiners, limits.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { isRegistryError, type RegistryEvent } from '../src/index.js';
import { converged, mapOf, range, type RegCluster, regCluster } from './harness.js';

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
  });
});
