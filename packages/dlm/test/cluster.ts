/** Clusters of ClusterNodes, each with a lock manager, on a memory network under a virtual clock. */
import { ClusterNode, type ClusterNodeOptions, seededRandom, silentLogger, VirtualClock } from '@clusterinfra/core';
import { createMemoryNetwork, type MemoryNetwork } from '@clusterinfra/transport-mem';
import { memory } from '@clusterinfra/transport-mem';
import { createDlm, type Dlm, type DlmOptions } from '../src/index.js';

export interface DlmCluster {
  clock: VirtualClock;
  network: MemoryNetwork;
  node(n: number): ClusterNode;
  dlm(n: number): Dlm;
  /** Start node `n` (again: a new incarnation) with a fresh lock manager. */
  start(n: number): void;
  /** Kill node `n` like SIGKILL. */
  kill(n: number): void;
  /** Advance virtual time until `pred` holds; throws after `maxMs`. */
  until(pred: () => boolean, what: string, maxMs?: number): Promise<void>;
  /** Every node in `ns` sees every node in `ns` Up, and its lock manager finished a round with all of them. */
  ready(ns: number[]): boolean;
  close(): Promise<void>;
}

export function dlmCluster(
  size: number,
  options: { seed?: number; dlm?: Partial<DlmOptions>; node?: Partial<ClusterNodeOptions>; /** Member metadata per node. */ meta?: (n: number) => Record<string, unknown> } = {},
): DlmCluster {
  const clock = new VirtualClock();
  const network = createMemoryNetwork({ seed: options.seed ?? 1, clock });
  const nodes = new Map<number, ClusterNode>();
  const dlms = new Map<number, Dlm>();
  const all: Array<{ node: ClusterNode; dlm: Dlm }> = [];
  let incarnation = 1;
  const start = (n: number): void => {
    const node = new ClusterNode({
      nodeNum: n,
      clusterName: 'dlm',
      transport: memory({ network, address: `node-${n}` }),
      candidates: [1, 2, 3].filter((c) => c <= size),
      seeds: Array.from({ length: size }, (_, i) => `node-${i + 1}`).filter((a) => a !== `node-${n}`),
      preset: 'local',
      clock,
      random: seededRandom(`${options.seed ?? 1}/${n}/${incarnation++}`),
      logger: silentLogger,
      ...options.node,
      ...(options.meta ? { meta: options.meta(n) } : {}),
    });
    // Created before start: the service is served as soon as the node has its ICS.
    const dlm = createDlm({ node, clock, ...options.dlm });
    nodes.set(n, node);
    dlms.set(n, dlm);
    all.push({ node, dlm });
    void node.start().catch(() => {});
  };
  for (let i = 1; i <= size; i++) start(i);
  const until = async (pred: () => boolean, what: string, maxMs = 30_000): Promise<void> => {
    if (!(await clock.advanceUntil(pred, maxMs))) throw new Error(`timed out (virtual ${maxMs} ms) waiting for ${what}`);
  };
  return {
    clock,
    network,
    node: (n) => nodes.get(n)!,
    dlm: (n) => dlms.get(n)!,
    start,
    kill: (n) => {
      network.crash(`node-${n}`);
      void dlms.get(n)!.close();
      void nodes.get(n)!.close();
    },
    until,
    ready: (ns) =>
      ns.every((n) => {
        const s = dlms.get(n)!.stats();
        return ns.every((m) => nodes.get(n)!.info(m)?.state === 'Up') && s.completedRound === s.round && s.round > 0 && ns.every((m) => s.members.includes(m)) && s.members.length === ns.length;
      }),
    close: async () => {
      let done = false;
      const closing = Promise.all(all.map(async (x) => (await x.dlm.close(), await x.node.close()))).then(() => (done = true));
      await clock.advanceUntil(() => done, 60_000);
      await closing;
    },
  };
}

/** A resource name mastered by `node` (as the lock manager of `on` computes it now). */
export function resourceMasteredBy(dlm: Dlm, node: number, prefix = 'res'): string {
  for (let i = 0; i < 10_000; i++) if (dlm.masterOf(`${prefix}${i}`) === node) return `${prefix}${i}`;
  throw new Error(`no resource name mastered by ${node}`);
}
