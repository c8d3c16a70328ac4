/**
 * single-node: when a cluster forms, starting with a cluster of one.
 *
 * - A new cluster is founded only when every node in `candidates` has
 *   started and they reach each other (`formation: 'all-candidates'`, the
 *   default). So a node that is its own only candidate (`candidates: [1]`)
 *   forms a cluster alone, at once: the way to try ClusterInfra with one
 *   process. Another node then joins it through `seeds`. With two nodes,
 *   `quorum: { tieBreaker: 1 }` lets node 1 carry on alone when node 2
 *   fails (under the default `majority`, one of two voters decides nothing).
 * - A candidate whose fellow candidates have not started waits: `start()`
 *   stays pending, the node keeps probing its seeds, and nothing is
 *   printed by the library. The application can say so itself, as here
 *   (a timer while `start()` is pending). Nodes 3 and 4 of a cluster with
 *   candidates 3, 4 and 5 wait, two of three being no cluster yet, until
 *   node 5 starts; then the three form it.
 *
 *   npx tsx examples/single-node.ts            # over TCP on 127.0.0.1
 *   npx tsx examples/single-node.ts --memory   # over the in-memory network
 */
import { pathToFileURL } from 'node:url';
import { ClusterNode, type QuorumPolicy, type Transition } from '@clusterinfra/core';
import { exampleNetwork, type TransportKind, transportFromArgs } from './lib/transports.js';
import { stopwatch, until } from './lib/wait.js';

export interface SingleNodeResult {
  /** Node 1's history when node 2 had joined: `node from → to (cause)`. */
  solo: string[];
  /** How often node 3 said it was still waiting, and whether a start() of nodes 3 and 4 had resolved, before node 5 started. */
  waitingLines: number;
  startedWithout5: boolean;
  /** The members of the three-candidate cluster at the end, as node 3 sees them. */
  trio: string[];
}

/** How often the application reports a pending start(). */
const WAITING_EVERY_MS = 200;

const describe = (t: Transition): string => `node ${t.node} ${t.from} → ${t.to} (${t.cause})`;

export async function main(transport: TransportKind, print: (line: string) => void = (l) => console.log(l)): Promise<SingleNodeResult> {
  const net = await exampleNetwork(transport, 5);
  const time = stopwatch();
  const nodes: ClusterNode[] = [];
  const make = (nodeNum: number, clusterName: string, candidates: number[], seeds: number[], quorum: QuorumPolicy = 'majority'): ClusterNode => {
    const node = new ClusterNode({
      nodeNum,
      clusterName,
      transport: net.transport(nodeNum),
      candidates,
      seeds: seeds.map((m) => net.address(m)),
      preset: 'local',
      quorum,
    });
    node.on('transition', (t) => print(`${time()} node ${nodeNum} sees #${t.number} ${describe(t)}`));
    nodes.push(node);
    return node;
  };
  const upEverywhere = (group: ClusterNode[]): boolean => group.every((a) => group.every((b) => a.info(b.nodeNum)?.state === 'Up'));
  let waiting: ReturnType<typeof setInterval> | undefined;

  try {
    // 1. A cluster of one: node 1 is the only candidate, so it founds the cluster alone.
    const one = make(1, 'solo', [1], [], { tieBreaker: 1 });
    await one.start();
    await until(() => upEverywhere([one]), 'node 1 Up');
    print(`${time()} node 1 formed cluster 'solo' on its own; master ${one.master}`);

    // 2. It grows: node 2 (not a candidate) finds the master through its seed and joins.
    const two = make(2, 'solo', [1], [1], { tieBreaker: 1 });
    await two.start();
    await until(() => upEverywhere([one, two]), 'nodes 1 and 2 Up');
    const solo = one.transitions().filter((t) => t.kind === 'state').map(describe);
    print(`${time()} node 2 joined: ${one.membership().members.map((m) => `node ${m.node} ${m.state}`).join(', ')}`);

    // 3. Three candidates, two started: nodes 3 and 4 wait for node 5, and only the application says so.
    const trioOf = (n: number): ClusterNode => make(n, 'trio', [3, 4, 5], [3, 4, 5].filter((m) => m !== n));
    const [three, four] = [trioOf(3), trioOf(4)];
    let startedWithout5 = false;
    let waitingLines = 0;
    waiting = setInterval(() => {
      waitingLines++;
      print(`${time()} node 3: start() still pending: waiting for candidate 5 (a new cluster needs every candidate)`);
    }, WAITING_EVERY_MS);
    const started = Promise.race([three.start(), four.start()]).then(() => {
      startedWithout5 = true;
      clearInterval(waiting);
    });
    await until(() => waitingLines >= 3, 'nodes 3 and 4 to wait a while');
    const before5 = startedWithout5;
    const five = trioOf(5);
    await Promise.all([started, five.start()]);
    await until(() => upEverywhere([three, four, five]), 'nodes 3, 4 and 5 Up');
    const trio = three.membership().members.map((m) => `node ${m.node} ${m.state}`);
    print(`${time()} node 5 started, and the three formed cluster 'trio': ${trio.join(', ')}`);
    return { solo, waitingLines, startedWithout5: before5, trio };
  } finally {
    clearInterval(waiting);
    await Promise.all(nodes.map((n) => n.close()));
    print('all nodes closed');
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(transportFromArgs()).then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
