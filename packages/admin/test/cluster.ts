/**
 * A real-time cluster on the in-memory transport, for tests that talk HTTP
 * (which a virtual clock cannot drive): the `lan` timings, which tolerate a
 * loaded machine, and an echo service on every node to make RPC traffic.
 */
import { ClusterNode, type ClusterNodeOptions, silentLogger } from '@clusterinfra/core';
import { createMemoryNetwork, memory } from '@clusterinfra/transport-mem';

export const ECHO = { channel: 'default', subservice: 7 } as const;

export interface TestCluster {
  nodes: Map<number, ClusterNode>;
  node(n: number): ClusterNode;
  /** Every node sees every node Up, one master, the same history head. */
  settled(): boolean;
  close(): Promise<void>;
}

export interface ClusterSetup {
  clusterName?: string;
  /** A (non-critical) key service every node may host. */
  keyService?: string;
  /** ICS options of every node (e.g. a small flow-control window). */
  ics?: ClusterNodeOptions['ics'];
}

export async function startCluster(size: number, setup: ClusterSetup = {}): Promise<TestCluster> {
  const clusterName = setup.clusterName ?? 'admin-test';
  const network = createMemoryNetwork({ seed: 1 });
  const nums = Array.from({ length: size }, (_, i) => i + 1);
  const nodes = new Map<number, ClusterNode>();
  for (const n of nums) {
    nodes.set(
      n,
      new ClusterNode({
        nodeNum: n,
        clusterName,
        transport: memory({ network, address: `node-${n}` }),
        candidates: nums,
        seeds: nums.filter((m) => m !== n).map((m) => `node-${m}`),
        preset: 'lan',
        logger: silentLogger,
        meta: { role: n === 1 ? 'front "door"' : 'worker' },
        ...(setup.ics ? { ics: setup.ics } : {}),
      }),
    );
  }
  if (setup.keyService) {
    for (const node of nodes.values()) node.registerKeyService({ name: setup.keyService, subservice: 1, handlers: { where: () => node.nodeNum } });
  }
  await Promise.all([...nodes.values()].map((node) => node.start()));
  for (const node of nodes.values()) {
    node.communication.registerService({
      ...ECHO,
      name: 'echo',
      handlers: {
        echo: (args) => args,
        fail: () => {
          throw new Error('echo failed on purpose');
        },
      },
    });
  }
  const cluster: TestCluster = {
    nodes,
    node: (n) => nodes.get(n)!,
    settled: () => {
      const all = [...nodes.values()];
      const heads = all.map((x) => x.lastTransition);
      return all.every(
        (x) =>
          x.master !== undefined &&
          x.master === all[0]!.master &&
          x.lastTransition === heads[0] &&
          nums.every((m) => x.info(m)?.state === 'Up') &&
          (!setup.keyService || x.keyService(setup.keyService)?.ready === true),
      );
    },
    close: async () => {
      await Promise.all([...nodes.values()].map((x) => x.close()));
    },
  };
  await waitFor(() => cluster.settled(), 30_000, 'the cluster to form');
  return cluster;
}

/** Poll `pred` on real time until it holds; throws after `ms`. */
export async function waitFor(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export const TOKEN = 'test-token-0123456789abcdef';
