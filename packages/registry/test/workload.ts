/**
 * A seeded workload under crashes (network.crash, as SIGKILL) and restarts,
 * with invariants checked after every step and at the end:
 *
 * - RG1 on every node, `revision` only grows (per incarnation);
 * - RG2 two nodes at the same revision hold the same map (every replica is a
 *   prefix of one history);
 * - RG3 on every node, the versions of one key in its `write` events only grow;
 * - RG4 at the end every live node holds the same map at the same revision;
 * - RG5 no acknowledged write is lost: for every key whose writes all had a
 *   known outcome, the map holds the acknowledged write with the highest
 *   version (absent if it was a delete, or an owned put whose owner crashed).
 *
 * The documented condition holds by construction: at most one node is down
 * at a time, and an acknowledged write was applied by the sequencer, the
 * writer and every replica that had not been dropped, so by at least one
 * node besides the sequencer whenever the writer is not the sequencer.
 */
import { expect } from 'vitest';
import { seededRandom } from '@clusterinfra/core';
import { isRegistryError, type Registry } from '../src/index.js';
import { converged, mapOf, range, regCluster } from './harness.js';

interface Op {
  key: string;
  kind: 'put' | 'delete';
  value?: number;
  owner?: string;
  status: 'pending' | 'acked' | 'refused' | 'unknown';
  version?: number;
  error?: string;
}

const KEYS = ['a', 'b', 'c', 'd', 'e', 'f'];
const SIZE = 5;

/** One seed of the workload; throws (an assertion) when an invariant fails. */
export async function workload(seed: number): Promise<void> {
  const rng = seededRandom(`registry-faults/${seed}`);
  // Each seed draws its own network: delays, reordering, duplicates; and a
  // push deadline short enough that some replicas miss it, are dropped,
  // and resync, so replicas differ when the sequencer dies.
  const faults = { latencyMs: rng.int(3), jitterMs: rng.int(30), reorderRate: rng.next() * 0.3, duplicateRate: rng.next() * 0.2 };
  const c = regCluster(SIZE, { seed, candidates: [1, 2, 3], faults, options: { pushTimeoutMs: 15 + rng.int(45) } });
  try {
    await c.until(() => range(SIZE).every((n) => c.ready(n)), 30_000, 'registries started');
    const ops: Op[] = [];
    const crashedIncarnations = new Set<string>();
    let down: { node: number; at: number } | undefined;
    const lastRevision = new Map<Registry, number>();
    const live = (): number[] => range(SIZE).filter((n) => n !== down?.node && c.ready(n));
    let value = 0;

    /** Issue a write from node `n`; resolves once its outcome is recorded. */
    const write = (n: number): Promise<void> => {
      const reg = c.reg(n);
      const key = KEYS[rng.int(KEYS.length)]!;
      const r = rng.next();
      const current = reg.get(key)?.version ?? 0;
      const cas = rng.next() < 0.3 ? { expectVersion: current } : {};
      const op: Op = r < 0.2 ? { key, kind: 'delete', status: 'pending' } : { key, kind: 'put', value: ++value, status: 'pending' };
      if (op.kind === 'put' && r > 0.75) op.owner = `${n}:${c.node(n).incarnation}`;
      ops.push(op);
      const p = op.kind === 'delete' ? reg.delete(key, cas).then((d) => d.version) : reg.put(key, op.value!, { ...cas, owned: op.owner !== undefined }).then((e) => e.version);
      return p.then(
        (version: number) => {
          op.status = 'acked';
          op.version = version;
        },
        (err: unknown) => {
          op.error = String(err);
          op.status = isRegistryError(err) && err.registryCode !== 'REGISTRY_ERR_CLOSED' && err.registryCode !== 'REGISTRY_ERR_NOT_SEQUENCER' ? 'refused' : 'unknown';
        },
      );
    };

    const check = (): void => {
      const ns = live();
      for (const n of ns) {
        const reg = c.reg(n);
        const before = lastRevision.get(reg) ?? 0;
        expect(reg.revision, `RG1 node ${n}`).toBeGreaterThanOrEqual(before);
        lastRevision.set(reg, reg.revision);
      }
      for (const n of ns) {
        for (const m of ns) {
          if (n < m && c.reg(n).revision === c.reg(m).revision) expect(mapOf(c!, m), `RG2 nodes ${n} and ${m}`).toEqual(mapOf(c!, n));
        }
      }
    };

    for (let step = 0; step < 400; step++) {
      const r = rng.next();
      const ns = live();
      if (r < 0.5 && ns.length > 0) void write(ns[rng.int(ns.length)]!);
      else if (r < 0.515 && !down) {
        // Half the crashes hit the sequencer's node.
        const host = c.node(ns[0]!).keyService('registry.svc')?.host;
        const victim = host !== undefined && rng.next() < 0.5 ? host : ns[rng.int(ns.length)]!;
        const crash = (): void => {
          crashedIncarnations.add(`${victim}:${c.node(victim).incarnation}`);
          c.kill(victim);
          down = { node: victim, at: c.clock.now() };
        };
        const writer = ns.find((n) => n !== victim);
        if (victim === host && writer !== undefined && rng.next() < 0.5) {
          // The sequencer dies the instant it acknowledged a write (before anything else runs).
          const acked = write(writer).then(crash);
          await c.settle(acked, 10_000);
        } else {
          // Writes in flight when it dies: their outcome may be unknown to their writers.
          for (let i = 0; i < 4; i++) void write(ns[rng.int(ns.length)]!);
          if (rng.next() < 0.5) await c.clock.advance(rng.int(3));
          crash();
        }
      } else if (down && c.clock.now() - down.at > 2000 && r < 0.6) {
        c.start(down.node);
        const n = down.node;
        down = undefined;
        await c.until(() => c.ready(n), 30_000, `node ${n} back`);
      }
      await c.clock.advance(rng.int(40));
      check();
    }

    // Quiesce: everyone back, every write settled, every node on the same map.
    if (down) {
      const n = down.node;
      c.start(n);
      await c.until(() => c.ready(n), 30_000, `node ${n} back`);
    }
    await c.until(() => ops.every((o) => o.status !== 'pending'), 30_000, 'every write to settle');
    await c.until(() => converged(c!, range(SIZE)), 30_000, 'RG4: convergence');
    check();

    // RG3: versions of a key only grow in each node's stream of writes.
    for (const n of range(SIZE)) {
      const top = new Map<string, number>();
      for (const e of c.events.get(n)!) {
        if (e.cause !== 'write' || e.type !== 'put') continue;
        expect(e.version, `RG3 node ${n} key ${e.key}`).toBeGreaterThan(top.get(e.key) ?? 0);
        top.set(e.key, e.version);
      }
    }

    // RG5: no acknowledged write lost. The acknowledged write with the
    // highest version decides each key, unless a write whose outcome its
    // writer never learnt (unknown) came after it.
    const map = mapOf(c, 1);
    const gone = (o: Op): boolean => o.owner !== undefined && crashedIncarnations.has(o.owner);
    let checked = 0;
    for (const key of KEYS) {
      const mine = ops.filter((o) => o.key === key);
      const last = mine.filter((o) => o.status === 'acked').sort((a, b) => a.version! - b.version!).at(-1);
      const unknown = mine.filter((o) => o.status === 'unknown');
      const entry = map[key];
      checked++;
      if (entry) {
        const [value, version] = entry;
        expect(version, `RG5 ${key}: an older write replaced an acknowledged one`).toBeGreaterThanOrEqual(last?.version ?? 0);
        if (last && version === last.version) expect(last.kind === 'put' && last.value === value, `RG5 ${key}`).toBe(true);
        else expect(unknown.some((o) => o.kind === 'put' && o.value === value), `RG5 ${key}: ${value} comes from no write`).toBe(true);
      } else {
        const explained = !last || last.kind === 'delete' || gone(last) || unknown.some((o) => o.kind === 'delete' || gone(o));
        expect(explained, `RG5 ${key}: acknowledged put ${last?.value} at ${last?.version} lost`).toBe(true);
      }
    }
    // REG_DEBUG=1 shows what a seed did.
    if (process.env.REG_DEBUG) console.log(seed, { crashes: crashedIncarnations.size, acked: ops.filter((o) => o.status === 'acked').length, refused: ops.filter((o) => o.status === 'refused').length, unknown: ops.filter((o) => o.status === 'unknown').length, checked, epoch: c.node(1).keyService('registry.svc')?.epoch });
    expect(checked).toBe(KEYS.length);
    expect(ops.filter((o) => o.status === 'acked').length).toBeGreaterThan(50);
    expect(crashedIncarnations.size).toBeGreaterThan(0);
  } finally {
    await c.close();
  }
}

/**
 * A replica that stopped following (it keeps a=1 and b, which its pullData
 * still reports) must not bring them back when the sequencer dies: the
 * rebuild takes the freshest replica. Throws when it does not.
 */
export async function staleReplicaRebuild(): Promise<void> {
  const c = regCluster(4, { candidates: [1, 2, 3] });
  try {
      await c.until(() => range(4).every((n) => c.ready(n)), 30_000, 'registries started');
      const host = c.node(1).keyService('registry.svc')!.host!;
      const [laggard, other] = range(4).filter((n) => n !== host);
      await c.settle(c.reg(other!).put('a', 1));
      await c.settle(c.reg(other!).put('b', 1));
      await c.until(() => converged(c!, range(4)), 10_000, 'convergence');
      // The laggard stops following (its replica service goes), keeping a=1 and b, which pullData still reports.
      await c.settle(c.reg(laggard!).close());
      const a2 = await c.settle(c.reg(other!).put('a', 2));
      expect((await c.settle(c.reg(other!).delete('b'))).existed).toBe(true);
      expect(c.reg(laggard!).get('a')?.value).toBe(1);
      c.kill(host);
      const rest = range(4).filter((n) => n !== host && n !== laggard);
      const epoch = (n: number): number => c.node(n).keyService('registry.svc')?.epoch ?? 0;
      await c.until(() => rest.every((n) => epoch(n) > 1 && c.node(n).keyService('registry.svc')!.ready), 30_000, 'failover');
      await c.until(() => converged(c!, rest), 10_000, 'convergence');
      // The laggard is the lowest survivor, so it became the sequencer: it rebuilt from the others' fresher data.
      expect(c.node(rest[0]!).keyService('registry.svc')!.host).toBe(laggard);
      expect(mapOf(c, rest[0]!)).toEqual({ a: [2, a2.version, null] });
  } finally {
    await c.close();
  }
}
