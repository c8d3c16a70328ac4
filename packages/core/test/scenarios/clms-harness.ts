/** Clusters of ClusterNodes on a memory network under a virtual clock. */
import { ClusterNode, type ClusterNodeOptions, seededRandom, silentLogger, VirtualClock } from '@clusterinfra/core';
import { createMemoryNetwork, memory, type MemoryNetwork } from '@clusterinfra/transport-mem';

export interface SimCluster {
  clock: VirtualClock;
  network: MemoryNetwork;
  nodes: Map<number, ClusterNode>;
  node(n: number): ClusterNode;
  /** Start node `n` (again: a new incarnation). */
  start(n: number, extra?: Partial<ClusterNodeOptions>): ClusterNode;
  /** Kill node `n` like SIGKILL: its links reset, its timers stop. */
  kill(n: number): void;
  /** Advance virtual time until `pred` holds; throws after `maxMs`. */
  until(pred: () => boolean, maxMs?: number, what?: string): Promise<void>;
  /** Nodes that agree on this history head and master. */
  converged(nodes: number[]): boolean;
  close(): Promise<void>;
}

export function simCluster(size: number, options: { candidates?: number[]; seed?: number; extra?: (n: number, clock: VirtualClock) => Partial<ClusterNodeOptions> } = {}): SimCluster {
  const clock = new VirtualClock();
  const network = createMemoryNetwork({ seed: options.seed ?? 1, clock });
  const candidates = options.candidates ?? Array.from({ length: Math.min(size, 3) }, (_, i) => i + 1);
  const nodes = new Map<number, ClusterNode>();
  const all: ClusterNode[] = [];
  let incarnation = 1000;
  const start = (n: number, extra: Partial<ClusterNodeOptions> = {}): ClusterNode => {
    const node = new ClusterNode({
      nodeNum: n,
      clusterName: 'sim',
      transport: memory({ network, address: `node-${n}` }),
      candidates,
      seeds: Array.from({ length: size }, (_, i) => `node-${i + 1}`).filter((a) => a !== `node-${n}`),
      preset: 'local',
      clock,
      // Seeded: a scenario replays exactly (set CLMS_SEED to explore others).
      random: seededRandom(`${options.seed ?? process.env.CLMS_SEED ?? 1}/${n}/${incarnation}`),
      logger: silentLogger,
      ics: {},
      ...options.extra?.(n, clock),
      ...extra,
    });
    void incarnation++;
    nodes.set(n, node);
    all.push(node);
    void node.start().catch(() => {});
    return node;
  };
  for (let i = 1; i <= size; i++) start(i);
  const until = async (pred: () => boolean, maxMs = 30_000, what = 'condition'): Promise<void> => {
    if (!(await clock.advanceUntil(pred, maxMs))) throw new Error(`timed out (virtual ${maxMs} ms) waiting for ${what}`);
  };
  return {
    clock,
    network,
    nodes,
    node: (n) => nodes.get(n)!,
    start,
    kill: (n) => {
      network.crash(`node-${n}`);
      void nodes.get(n)!.close();
    },
    until,
    converged: (ns) => {
      const heads = ns.map((n) => nodes.get(n)!.lastTransition);
      const masters = ns.map((n) => nodes.get(n)!.master);
      return heads.every((h) => h === heads[0]) && masters.every((m) => m !== undefined && m === masters[0]);
    },
    close: async () => {
      let done = false;
      const closing = Promise.all(all.map((n) => n.close())).then(() => (done = true));
      await clock.advanceUntil(() => done, 60_000);
      await closing;
    },
  };
}

/** 1..n: node numbers. */
export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

/** Every node in `ns` sees every node in `ns` Up. */
export const allUp = (s: SimCluster, ns: number[]): boolean => ns.every((n) => ns.every((m) => s.node(n).info(m)?.state === 'Up'));
