/**
 * runlevels: the cluster through ordered phases (@clusterinfra/runlevels).
 *
 * - Three nodes declare `starting → serving → draining`; each enters
 *   `starting`, then the cluster is moved to `serving` as a whole.
 * - A fourth node joins later: it walks up to `serving` before it counts as
 *   up for the application (its `serving` takes a while here).
 * - The cluster is moved to `draining`; then the fourth node leaves,
 *   walking back down.
 *
 *   npx tsx examples/runlevels.ts           # on the in-memory network
 *   npx tsx examples/runlevels.ts --tcp     # over TCP on 127.0.0.1
 */
import { pathToFileURL } from 'node:url';
import { ClusterNode } from '@clusterinfra/core';
import { createRegistry, type Registry } from '@clusterinfra/registry';
import { createRunLevels, type RunLevels } from '@clusterinfra/runlevels';
import { exampleNetwork, type TransportKind } from './lib/transports.js';
import { stopwatch, until } from './lib/wait.js';

export interface RunLevelsExampleResult {
  /** What `upNodes()` said while node 4 was still entering `serving`, and after. */
  upWhileJoining: number[];
  /** Node 4's membership state at that moment. */
  stateWhileJoining: string | undefined;
  upAfterJoining: number[];
  /** The callbacks node 4 ran, in order. */
  node4: string[];
  /** Phases by node after the move to `draining`. */
  draining: Record<number, string>;
}

export async function main(transport: TransportKind = 'memory', print: (line: string) => void = (l) => console.log(l)): Promise<RunLevelsExampleResult> {
  const net = await exampleNetwork(transport, 4);
  const time = stopwatch();
  const say = (line: string): void => print(`${time()} ${line}`);
  const nodes = new Map<number, ClusterNode>();
  const maps = new Map<number, Registry>();
  const levels = new Map<number, RunLevels>();
  const node4: string[] = [];

  const start = async (n: number, slowServing = false): Promise<RunLevels> => {
    const node = new ClusterNode({
      nodeNum: n,
      clusterName: 'runlevels-demo',
      transport: net.transport(n),
      candidates: [1, 2, 3],
      seeds: [1, 2, 3, 4].filter((m) => m !== n).map((m) => net.address(m)),
      preset: 'local',
    });
    const registry = createRegistry(node, { name: 'runlevels', subservice: 41, checkIntervalMs: 200 });
    nodes.set(n, node);
    maps.set(n, registry);
    await node.start();
    await registry.start();
    const rl = createRunLevels(node, registry, {
      phases: ['starting', 'serving', 'draining'],
      enter: async (phase) => {
        say(`node ${n}: entering ${phase}`);
        if (n === 4) node4.push(`enter ${phase}`);
        if (slowServing && phase === 'serving') await new Promise((r) => setTimeout(r, 300));
      },
      leave: (phase) => {
        say(`node ${n}: leaving ${phase}`);
        if (n === 4) node4.push(`leave ${phase}`);
      },
    });
    levels.set(n, rl);
    return rl.start();
  };
  const l1 = (): RunLevels => levels.get(1)!;

  try {
    await Promise.all([1, 2, 3].map((n) => start(n)));
    await until(() => l1().reached('starting'), 'every node starting');
    say('every node is starting; moving the cluster to serving');
    await l1().moveCluster('serving');
    await until(() => l1().reached('serving'), 'every node serving');
    say(`every node is serving; up for the application: ${l1().upNodes().join(', ')}`);

    const joining = start(4, true);
    await until(() => node4.includes('enter serving'), 'node 4 walking up to serving');
    const upWhileJoining = l1().upNodes();
    const stateWhileJoining = nodes.get(1)!.info(4)?.state;
    say(`node 4 is ${stateWhileJoining} in the membership but still entering serving; up for the application: ${upWhileJoining.join(', ')}`);
    await joining;
    await until(() => l1().upNodes().length === 4, 'node 4 serving');
    const upAfterJoining = l1().upNodes();
    say(`node 4 reached serving; up for the application: ${upAfterJoining.join(', ')}`);

    await levels.get(2)!.moveCluster('draining');
    await until(() => l1().reached('draining'), 'every node draining');
    const draining = Object.fromEntries(l1().phases());
    say(`every node is draining: ${JSON.stringify(draining)}`);
    say('node 4 leaves');
    await levels.get(4)!.leave();
    await nodes.get(4)!.leave();
    await until(() => !l1().phases().has(4), 'node 4 gone from the map');
    say(`phases now: ${JSON.stringify(Object.fromEntries(l1().phases()))}`);
    return { upWhileJoining, stateWhileJoining, upAfterJoining, node4, draining };
  } finally {
    for (const m of maps.values()) await m.close();
    await Promise.all([...nodes.values()].map((node) => node.close()));
    say('all nodes closed');
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.includes('--tcp') ? 'tcp' : 'memory').catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
