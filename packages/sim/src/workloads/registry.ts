/**
 * The replicated map (`@clusterinfra/registry`) as a simulator workload: a
 * registry on every node object as it starts (before it joins), started
 * once the node is Up, and writes from random synced nodes on the
 * simulator's steps, through every fault the seed draws. Checked after
 * every step and at the end:
 *
 * - RG1 on every node, `revision` only grows (unless the node reset its
 *   position because the cluster history started again: `resets`);
 * - RG2 two synced nodes whose maps are of one history (`reg.history`) at
 *   the same revision hold the same map;
 * - RG3 on every node, the versions of a key in its `write` events only
 *   grow (between resets);
 * - RG4 after healing and quiescence every node is synced and holds the
 *   same map at the same revision.
 *
 * That no acknowledged write is lost (RG5, under the documented
 * condition) is checked by the registry's crash workload
 * (packages/registry/test/workload.ts), where the condition can be kept.
 */
import type { ClusterNode } from '@clusterinfra/core';
import { __registryCanaries, createRegistry, type Registry, type RegistryCanaryName } from '@clusterinfra/registry';
import type { World } from '../sim.js';
import type { Workload } from './index.js';

export type RegistryWorkloadCanary = RegistryCanaryName;
/**
 * `ackBeforeReplicated` breaks RG5 and `stalestRebuild` needs a replica that
 * stopped following: the registry's own workload and scenario catch those.
 */
export const REGISTRY_CANARIES: readonly RegistryWorkloadCanary[] = ['applyOutOfOrder'];

const mapOf = (r: Registry): string => JSON.stringify(r.entries().map((e) => [e.key, e.value, e.version]));

export function registryWorkload(): Workload {
  const regs = new Map<ClusterNode, Registry>();
  const started = new Set<Registry>();
  const last = new Map<Registry, { revision: number; resets: number }>();
  const counts = { writes: 0, acked: 0, refused: 0 };
  let world: World | undefined;
  let rng: ReturnType<World['random']> | undefined;
  let pushTimeoutMs: number | undefined;
  const fail = (id: 'RG1' | 'RG2' | 'RG3' | 'RG4', detail: string): void => world?.checker.fail(id, detail);

  const running = (w: World): { n: number; node: ClusterNode; reg: Registry }[] =>
    w.slots.filter((s) => s.status === 'running' && s.node && regs.has(s.node)).map((s) => ({ n: s.n, node: s.node!, reg: regs.get(s.node!)! }));

  function nodeStarted(node: ClusterNode, w: World): void {
    world = w;
    rng ??= w.random('registry');
    // Each seed draws its push deadline: a short one drops slow replicas (they resync from a
    // snapshot), so replicas differ in how far they got when faults hit.
    pushTimeoutMs ??= 20 + rng.int(500);
    const reg = createRegistry(node, { name: 'sim', subservice: 60, pushTimeoutMs, checkIntervalMs: 500 });
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
      if (e.version <= (top.get(e.key) ?? 0)) fail('RG3', `node ${node.nodeNum}: ${e.key} at version ${e.version} after ${top.get(e.key)}`);
      top.set(e.key, e.version);
    });
  }

  function step(w: World): void {
    rng ??= w.random('registry');
    // Registries of node objects that are gone stop (their timers too).
    const now = running(w);
    const live = new Set(now.map((x) => x.reg));
    for (const reg of regs.values()) if (!live.has(reg)) void reg.close();
    for (const { node, reg } of now) {
      if (!started.has(reg) && node.info()?.state === 'Up') {
        started.add(reg);
        void reg.start({ timeoutMs: 120_000 }).catch(() => {});
      }
    }
    const ready = now.filter((x) => started.has(x.reg) && x.reg.synced);
    for (let i = rng.int(3); i > 0 && !w.isHealing && ready.length > 0; i--) {
      const { reg } = ready[rng.int(ready.length)]!;
      counts.writes++;
      reg.put(`k${rng.int(8)}`, counts.writes, { timeoutMs: 5000 }).then(
        () => void counts.acked++,
        () => void counts.refused++,
      );
    }
    for (const { n, reg } of ready) {
      // A reset (the cluster history started again) is the one time it may go down.
      const before = last.get(reg);
      if (before && before.resets === reg.resets && reg.revision < before.revision) fail('RG1', `node ${n}: revision went from ${before.revision} to ${reg.revision}`);
      last.set(reg, { revision: reg.revision, resets: reg.resets });
    }
    for (const a of ready) {
      for (const b of ready) {
        // Revisions are comparable within one history (`reg.history`: an evicted node keeps its old map until its first snapshot).
        if (a.n < b.n && a.reg.history === b.reg.history && a.reg.revision === b.reg.revision && mapOf(a.reg) !== mapOf(b.reg)) fail('RG2', `nodes ${a.n} and ${b.n} hold different maps at revision ${a.reg.revision}`);
      }
    }
  }

  function final(w: World): void {
    const now = running(w);
    const views = now.map(({ n, reg }) => ({ n, revision: reg.revision, synced: started.has(reg) && reg.synced, map: mapOf(reg) }));
    const first = views[0];
    if (!first) return;
    if (views.some((v) => !v.synced || v.revision !== first.revision || v.map !== first.map)) {
      fail('RG4', `not converged after healing: ${views.map((v) => `n${v.n} rev ${v.revision}${v.synced ? '' : ' (not synced)'}`).join(', ')}`);
    }
  }

  return {
    name: 'registry',
    canaries: REGISTRY_CANARIES,
    plant: (c, on) => void (__registryCanaries[c as RegistryCanaryName] = on),
    stats: () => ({ ...counts }),
    hooks: { nodeStarted, step, final },
    close: async () => {
      for (const reg of regs.values()) await reg.close();
    },
  };
}
