/** Clusters of ClusterNodes, each with a registry, on a memory network under a virtual clock. */
import { ClusterNode, seededRandom, silentLogger, VirtualClock } from '@clusterinfra/core';
import { createMemoryNetwork, type LinkFaults, type MemoryNetwork, memory } from '@clusterinfra/transport-mem';
import { createRegistry, type Registry, type RegistryEvent, type RegistryOptions } from '../src/index.js';

export interface RegCluster {
  clock: VirtualClock;
  network: MemoryNetwork;
  node(n: number): ClusterNode;
  reg(n: number): Registry;
  /** Every event each node's replica delivered (by node, for the current incarnation). */
  events: Map<number, RegistryEvent[]>;
  /** Start node `n` (again: a new incarnation) and its registry. */
  start(n: number): void;
  /** Node `n`'s registry has started (it has the map). */
  ready(n: number): boolean;
  /** Kill node `n` like SIGKILL: network.crash, then its timers stop. */
  kill(n: number): void;
  until(pred: () => boolean, maxMs?: number, what?: string): Promise<void>;
  /** Await `p` while advancing virtual time. */
  settle<T>(p: Promise<T>, maxMs?: number): Promise<T>;
  close(): Promise<void>;
}

export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

export function regCluster(
  size: number,
  o: { candidates?: number[]; seed?: number; options?: Partial<RegistryOptions>; startOnly?: number[]; faults?: LinkFaults } = {},
): RegCluster {
  const clock = new VirtualClock();
  const network = createMemoryNetwork({ seed: o.seed ?? 1, clock, ...(o.faults ? { faults: o.faults } : {}) });
  const nodes = new Map<number, ClusterNode>();
  const regs = new Map<number, Registry>();
  const started = new Set<Registry>();
  const all: { node: ClusterNode; reg: Registry }[] = [];
  const events = new Map<number, RegistryEvent[]>();
  let incarnation = 0;
  const start = (n: number): void => {
    const node = new ClusterNode({
      nodeNum: n,
      clusterName: 'reg',
      transport: memory({ network, address: `node-${n}` }),
      candidates: o.candidates ?? [1, 2, 3].filter((c) => c <= size),
      seeds: range(size).filter((m) => m !== n).map((m) => `node-${m}`),
      preset: 'local',
      clock,
      random: seededRandom(`${o.seed ?? 1}/${n}/${incarnation++}`),
      logger: silentLogger,
    });
    const reg = createRegistry(node, { name: 'svc', subservice: 40, clock, pushTimeoutMs: 1000, checkIntervalMs: 200, ...o.options });
    const seen: RegistryEvent[] = [];
    events.set(n, seen);
    reg.on('change', (e) => seen.push(e));
    nodes.set(n, node);
    regs.set(n, reg);
    all.push({ node, reg });
    void node
      .start()
      .then(() => reg.start())
      .then(() => started.add(reg))
      .catch(() => {});
  };
  for (const n of o.startOnly ?? range(size)) start(n);
  const until = async (pred: () => boolean, maxMs = 30_000, what = 'condition'): Promise<void> => {
    if (!(await clock.advanceUntil(pred, maxMs))) throw new Error(`timed out (virtual ${maxMs} ms) waiting for ${what}`);
  };
  return {
    clock,
    network,
    node: (n) => nodes.get(n)!,
    reg: (n) => regs.get(n)!,
    events,
    start,
    ready: (n) => started.has(regs.get(n)!),
    kill: (n) => {
      network.crash(`node-${n}`);
      void regs.get(n)!.close();
      void nodes.get(n)!.close();
    },
    until,
    settle: async <T>(p: Promise<T>, maxMs = 30_000): Promise<T> => {
      let done = false;
      let failed = false;
      let value: T | undefined;
      let error: unknown;
      p.then(
        (v) => {
          done = true;
          value = v;
        },
        (e: unknown) => {
          done = true;
          failed = true;
          error = e;
        },
      );
      await until(() => done, maxMs, 'a promise to settle');
      if (failed) throw error;
      return value as T;
    },
    close: async () => {
      let done = false;
      const closing = Promise.all(all.map(async (x) => {
        await x.reg.close();
        await x.node.close();
      })).then(() => (done = true));
      await clock.advanceUntil(() => done, 60_000);
      await closing;
    },
  };
}

/** The map on node `n` as plain data (key → [value, version, owner node]). */
export function mapOf(c: RegCluster, n: number): Record<string, [unknown, number, number | null]> {
  const out: Record<string, [unknown, number, number | null]> = {};
  for (const e of c.reg(n).entries()) out[e.key] = [e.value, e.version, e.owner?.node ?? null];
  return out;
}

/** Every node in `ns` has the same map at the same revision. */
export function converged(c: RegCluster, ns: number[]): boolean {
  const first = JSON.stringify(mapOf(c, ns[0]!));
  return ns.every((n) => c.reg(n).synced && c.reg(n).revision === c.reg(ns[0]!).revision && JSON.stringify(mapOf(c, n)) === first);
}
