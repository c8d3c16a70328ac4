/** Clusters of ClusterNodes, each with a registry and the services layer, on a memory network under a virtual clock. */
import { ClusterNode, seededRandom, silentLogger, VirtualClock } from '@clusterinfra/core';
import { createRegistry } from '@clusterinfra/registry';
import { createMemoryNetwork, type MemoryNetwork, memory } from '@clusterinfra/transport-mem';
import { createServices, type Services, type ServicesOptions } from '../src/index.js';

export interface SvcCluster {
  clock: VirtualClock;
  network: MemoryNetwork;
  node(n: number): ClusterNode;
  svc(n: number): Services;
  /** Start node `n` (again: a new incarnation) with its registry and services. */
  start(n: number): void;
  ready(n: number): boolean;
  /** Kill node `n` like SIGKILL. */
  kill(n: number): void;
  until(pred: () => boolean, maxMs?: number, what?: string): Promise<void>;
  /** Await `p` while advancing virtual time. */
  settle<T>(p: Promise<T>, maxMs?: number): Promise<T>;
  close(): Promise<void>;
}

export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

export function svcCluster(
  size: number,
  o: { roles?: Record<number, string[]>; options?: Partial<Omit<ServicesOptions, 'registry'>>; startOnly?: number[]; seed?: number } = {},
): SvcCluster {
  const clock = new VirtualClock();
  const network = createMemoryNetwork({ seed: o.seed ?? 1, clock });
  const nodes = new Map<number, ClusterNode>();
  const svcs = new Map<number, Services>();
  const started = new Set<Services>();
  const all: { node: ClusterNode; svc: Services }[] = [];
  let incarnation = 0;
  const start = (n: number): void => {
    const node = new ClusterNode({
      nodeNum: n,
      clusterName: 'svc',
      transport: memory({ network, address: `node-${n}` }),
      candidates: [1, 2, 3].filter((c) => c <= size),
      seeds: range(size).filter((m) => m !== n).map((m) => `node-${m}`),
      preset: 'local',
      clock,
      random: seededRandom(`${o.seed ?? 1}/${n}/${incarnation++}`),
      logger: silentLogger,
      ...(o.roles?.[n] ? { meta: { roles: o.roles[n] } } : {}),
    });
    const registry = createRegistry(node, { name: 'services', subservice: 40, clock, pushTimeoutMs: 1000, checkIntervalMs: 200 });
    const svc = createServices(node, { registry, subservice: 41, announceIntervalMs: 200, ...o.options });
    nodes.set(n, node);
    svcs.set(n, svc);
    all.push({ node, svc });
    void node
      .start()
      .then(() => svc.start())
      .then(() => started.add(svc))
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
    svc: (n) => svcs.get(n)!,
    start,
    ready: (n) => started.has(svcs.get(n)!),
    kill: (n) => {
      network.crash(`node-${n}`);
      void svcs.get(n)!.close();
      void nodes.get(n)!.close();
    },
    until,
    settle: async <T>(p: Promise<T>, maxMs = 30_000): Promise<T> => {
      const box: { out?: PromiseSettledResult<T> } = {};
      void Promise.allSettled([p]).then(([r]) => (box.out = r));
      await until(() => box.out !== undefined, maxMs, 'a promise to settle');
      if (box.out!.status === 'rejected') throw box.out!.reason;
      return box.out!.value;
    },
    close: async () => {
      const closing = Promise.allSettled(all.map((x) => x.svc.close().finally(() => x.node.close())));
      const box: { done?: boolean } = {};
      void closing.then(() => (box.done = true));
      await clock.advanceUntil(() => box.done === true, 60_000);
    },
  };
}
