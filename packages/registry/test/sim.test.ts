/**
 * The registry inside the cluster simulator (packages/sim, `ci` profile):
 * crashes, pauses, partitions, link faults, leaves, declared downs and
 * restarts, with the simulator's own membership and RPC invariants and,
 * after every step, the registry's:
 *
 * - RG1 on every node, `revision` only grows (unless the node reset its
 *   position because the cluster history started again: `resets`);
 * - RG2 two nodes at the same revision hold the same map;
 * - RG3 on every node, the versions of a key in its `write` events only grow;
 * - RG4 at the end (after healing and quiescence) every node holds the same
 *   map at the same revision.
 *
 * The workload runs through the simulator's hooks: a registry on every
 * node object as it starts (before it joins), started once the node is Up,
 * and writes from random nodes on the simulator's steps.
 */
import { expect, it } from 'vitest';
import { type ClusterNode, seededRandom } from '@clusterinfra/core';
import { runSeed, type World } from '@clusterinfra/sim';
import { createRegistry, type Registry } from '../src/index.js';

const mapKey = (r: Registry): string => JSON.stringify(r.entries().map((e) => [e.key, e.value, e.version]));

for (const seed of [1, 2, 3, 4, 5, 6]) {
  it(`sim seed ${seed}: the simulator's invariants and RG1–RG4 hold`, async () => {
    const rng = seededRandom(`registry-sim/${seed}`);
    const regs = new Map<ClusterNode, Registry>();
    const started = new Set<Registry>();
    const lastRevision = new Map<Registry, { revision: number; resets: number }>();
    const problems: string[] = [];
    let last: { n: number; revision: number; map: string; synced: boolean }[] = [];
    let writes = 0;
    let acked = 0;
    const running = (w: World): { n: number; node: ClusterNode; reg: Registry }[] =>
      w.slots.filter((s) => s.status === 'running' && s.node && regs.has(s.node)).map((s) => ({ n: s.n, node: s.node!, reg: regs.get(s.node!)! }));
    const r = await runSeed({
      seed,
      nodes: 5,
      profile: 'ci',
      hooks: {
        nodeStarted: (node, w) => {
          const reg = createRegistry(node, { name: 'sim', subservice: 60, clock: w.slot(node.nodeNum).clock!, pushTimeoutMs: 2000, checkIntervalMs: 500 });
          regs.set(node, reg);
          // RG3: the versions of a key in this node's stream of writes only grow (between resets).
          const top = new Map<string, number>();
          let resets = 0;
          reg.on('change', (e) => {
            if (reg.resets !== resets) {
              resets = reg.resets;
              top.clear();
            }
            if (e.type !== 'put' || e.cause !== 'write') return;
            if (e.version <= (top.get(e.key) ?? 0)) problems.push(`RG3 node ${node.nodeNum}: ${e.key} at version ${e.version} after ${top.get(e.key)}`);
            top.set(e.key, e.version);
          });
        },
        step: (w) => {
          // Registries of node objects that are gone stop (their timers too).
          const live = new Set(running(w).map((x) => x.reg));
          for (const reg of regs.values()) if (!live.has(reg)) void reg.close();
          const now = running(w);
          for (const { node, reg } of now) {
            if (!started.has(reg) && node.info()?.state === 'Up') {
              started.add(reg);
              void reg.start({ timeoutMs: 120_000 }).catch(() => {});
            }
          }
          const ready = now.filter((x) => started.has(x.reg) && x.reg.synced);
          if (ready.length > 0 && rng.next() < 0.3) {
            const { reg } = ready[rng.int(ready.length)]!;
            writes++;
            reg.put(`k${rng.int(8)}`, writes, { timeoutMs: 5000 }).then(
              () => void acked++,
              () => {},
            );
          }
          for (const { n, reg } of ready) {
            // A reset (the cluster history started again) is the one time it may go down.
            const before = lastRevision.get(reg);
            if (before && before.resets === reg.resets && reg.revision < before.revision) problems.push(`RG1 node ${n}: revision went from ${before.revision} to ${reg.revision}`);
            lastRevision.set(reg, { revision: reg.revision, resets: reg.resets });
          }
          for (const a of ready) {
            for (const b of ready) {
              if (a.n < b.n && a.reg.revision === b.reg.revision && mapKey(a.reg) !== mapKey(b.reg)) problems.push(`RG2 nodes ${a.n} and ${b.n} at revision ${a.reg.revision}`);
            }
          }
          last = now.map(({ n, reg }) => ({ n, revision: reg.revision, map: mapKey(reg), synced: started.has(reg) && reg.synced }));
        },
      },
    });
    for (const reg of regs.values()) await reg.close();
    if (process.env.REG_DEBUG && problems.length > 0) console.log(problems[0], r.tail.join('\n'));
    expect(r.violation, r.replay).toBeUndefined();
    expect(problems.slice(0, 5)).toEqual([]);
    // RG4: at the last step, after healing and quiescence.
    expect(last.length).toBe(5);
    expect(last.every((x) => x.synced && x.revision === last[0]!.revision && x.map === last[0]!.map), JSON.stringify(last.map((x) => [x.n, x.revision, x.synced]))).toBe(true);
    expect(acked).toBeGreaterThan(20);
    // REG_DEBUG=1 shows what a seed did.
    if (process.env.REG_DEBUG) console.log(seed, { writes, acked, revision: last[0]!.revision, simMs: r.simMs, realMs: Math.round(r.realMs) });
  }, 240_000);
}
