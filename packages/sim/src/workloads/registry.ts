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
 * - RG5 after healing, no acknowledged write is lost under the documented
 *   condition (docs/registry.md, Guarantees): a write is lost only if every
 *   node that had applied it failed, or did not answer the new sequencer's
 *   `pullData`, before the rebuild. Each acknowledged put gets witnesses:
 *   its writer (a replica the acknowledgment waited for, unless the
 *   sequencer dropped it) and every node that held the key at that version
 *   or newer when the acknowledgment arrived. A witness stays one while its
 *   registry runs and breaks no link: no reset, no drop by the sequencer, no
 *   snapshot installed from a sequencer whose rebuild did not include its
 *   replica (`rebuilt` names the nodes whose answers it took). If a witness
 *   is left, the converged map must hold the key at that version (with that
 *   value) or newer. Writes of a history that ended are not checked.
 */
import type { ClusterNode } from '@clusterinfra/core';
import { __registryCanaries, createRegistry, type Registry, type RegistryCanaryName } from '@clusterinfra/registry';
import type { World } from '../sim.js';
import type { Workload } from './index.js';

export type RegistryWorkloadCanary = RegistryCanaryName;
/** Its planted bugs (packages/registry/src/canaries.ts) that these invariants must catch (workloads.json). */
export const REGISTRY_CANARIES: readonly RegistryWorkloadCanary[] = ['applyOutOfOrder', 'ackBeforeReplicated', 'stalestRebuild'];

/** RG5: what a registry did that ends its being a witness (see above). */
interface Link {
  breaks: number;
  /** Installed a snapshot and not dropped since. */
  following: boolean;
  /** The sequencer's map when it last dropped this replica. */
  dropped?: { history: string | null; revision: number };
  /** Epochs whose rebuild took its replica. */
  rebuiltFrom: Set<number>;
  /** The epoch and node incarnation of its last snapshot. */
  epoch: number;
  incarnation: number;
}
/** RG5: a registry that had an acknowledged write, as it was then. */
interface Witness {
  reg: Registry;
  breaks: number;
  resets: number;
  history: string | null;
}
interface Acked {
  key: string;
  value: number;
  version: number;
  history: string | null;
  witnesses: Witness[];
}

const mapOf = (r: Registry): string => JSON.stringify(r.entries().map((e) => [e.key, e.value, e.version]));

export function registryWorkload(): Workload {
  const regs = new Map<ClusterNode, Registry>();
  const started = new Set<Registry>();
  const last = new Map<Registry, { revision: number; resets: number }>();
  const counts = { writes: 0, acked: 0, refused: 0, rg5Checked: 0 };
  let world: World | undefined;
  let rng: ReturnType<World['random']> | undefined;
  let pushTimeoutMs: number | undefined;
  const fail = (id: 'RG1' | 'RG2' | 'RG3' | 'RG4' | 'RG5', detail: string): void => world?.checker.fail(id, detail);
  const links = new Map<Registry, Link>();
  const acked: Acked[] = [];
  /** A replica the sequencer dropped is no witness until it resynced (`following` again). */
  const witness = (reg: Registry): Witness => {
    const link = links.get(reg)!;
    return { reg, breaks: link.following ? link.breaks : -1, resets: reg.resets, history: reg.history };
  };
  const holds = (w: Witness): boolean => w.history !== null && links.get(w.reg)?.breaks === w.breaks && w.reg.resets === w.resets && w.reg.history === w.history;
  const regOf = (w: World, n: number, incarnation?: number): Registry | undefined =>
    running(w).find((x) => x.n === n && (incarnation === undefined || x.node.incarnation === incarnation))?.reg;

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
    const link: Link = { breaks: 0, following: false, rebuiltFrom: new Set<number>(), epoch: 0, incarnation: -1 };
    links.set(reg, link);
    reg.on('synced', ({ epoch }) => {
      if (!link.rebuiltFrom.has(epoch)) link.breaks++;
      // A snapshot sent before the drop can arrive after it: only a newer one (a resync) follows again.
      if (reg.history !== link.dropped?.history || reg.revision > link.dropped.revision) link.following = true;
      link.epoch = epoch;
      link.incarnation = node.incarnation;
    });
    reg.on('rebuilt', ({ epoch, from }) => {
      for (const n of from) {
        const r = regOf(w, n);
        if (r) links.get(r)!.rebuiltFrom.add(epoch);
      }
    });
    reg.on('dropped', ({ node: n, incarnation }) => {
      const other = regOf(w, n, incarnation);
      if (!other) return;
      const l = links.get(other)!;
      l.breaks++;
      l.following = false;
      l.dropped = { history: reg.history, revision: reg.revision };
    });
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
      const { n, node, reg } = ready[rng.int(ready.length)]!;
      counts.writes++;
      const writer = witness(reg);
      const value = counts.writes;
      reg.put(`k${rng.int(8)}`, value, { timeoutMs: 5000 }).then(
        (e) => {
          counts.acked++;
          // The history the write went into: its sequencer's (a call can reach a host of another history).
          const ks = node.keyService('registry.sim');
          const host = ks?.epoch === Math.floor(e.version / 2 ** 32) ? running(w).find((x) => x.n === ks.host) : undefined;
          const history = host?.reg.history ?? null;
          if (history === null) return;
          // The writer follows the write's epoch (a snapshot of it installed in this incarnation) and
          // broke no link since it wrote: the acknowledgment waited for it, so it has the write.
          const link = links.get(reg)!;
          const mine = writer.history === history && holds(writer);
          if (mine && link.epoch === Math.floor(e.version / 2 ** 32) && link.incarnation === node.incarnation && (reg.get(e.key)?.version ?? 0) < e.version) {
            fail('RG5', `node ${n}: put ${e.key}=${value} acknowledged at version ${e.version} before its writer (a replica it waited for) had it (it has ${reg.get(e.key)?.version ?? 'none'})`);
          }
          const holders = running(w).filter((x) => x.reg !== reg && x.reg.synced && x.reg.history === history && (x.reg.get(e.key)?.version ?? 0) >= e.version);
          acked.push({ key: e.key, value, version: e.version, history, witnesses: [...(mine ? [writer] : []), ...holders.map((x) => witness(x.reg))] });
        },
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
      return;
    }
    const map = now[0]!.reg;
    const alive = new Set(now.map((x) => x.reg));
    for (const a of acked) {
      if (a.history !== map.history) continue; // that history ended: versions restarted
      const kept = a.witnesses.filter((x) => alive.has(x.reg) && holds(x));
      if (kept.length === 0) continue;
      counts.rg5Checked++;
      const e = map.get(a.key);
      if (!e || e.version < a.version || (e.version === a.version && e.value !== a.value)) {
        const who = kept.map((x) => running(w).find((r) => r.reg === x.reg)?.n).join(', ');
        fail('RG5', `acknowledged put ${a.key}=${a.value} at version ${a.version} lost (map has ${e ? `${String(e.value)} at ${e.version}` : 'none'}); nodes ${who} had it and answered every rebuild`);
        return;
      }
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
