/**
 * registry: a replicated map on three nodes (@clusterinfra/registry).
 *
 * - Each node registers its API endpoint as an *owned* entry (it vanishes
 *   when that node goes down): service registration and presence.
 * - The three nodes race to create `leader` with compare-and-set
 *   (`expectVersion: 0`), owned too: exactly one wins, the others get
 *   REGISTRY_ERR_CONFLICT with the winner's entry.
 * - A watcher on another node sees every change, in order.
 * - The node hosting the map's sequencer crashes (no goodbye). The next
 *   host rebuilds the map from the survivors before it takes writes: the
 *   acknowledged writes are all there, the crashed node's owned entries are
 *   gone (its endpoint, and `leader` if it led), and versions keep growing.
 *
 *   npx tsx examples/registry.ts           # on the in-memory network
 *   npx tsx examples/registry.ts --tcp     # over TCP on 127.0.0.1
 */
import { pathToFileURL } from 'node:url';
import { ClusterNode } from '@clusterinfra/core';
import { createRegistry, isRegistryError, type Registry } from '@clusterinfra/registry';
import { exampleNetwork, type TransportKind } from './lib/transports.js';
import { stopwatch, until } from './lib/wait.js';

export interface RegistryExampleResult {
  /** Nodes whose create of `leader` (owned) won, and the ones that got a conflict. */
  leaders: number[];
  conflicts: number[];
  /** The node that hosted the sequencer and crashed, and the key-service epochs before and after. */
  crashed: number;
  epochs: [number, number];
  /** The keys every survivor has after the failover, and the value of `config/color` there. */
  keysAfter: string[];
  colorAfter: unknown;
  /** The version of `config/color` before the crash, and of the first write after it. */
  versions: [number, number];
  /** What the watcher saw: `type key (cause)`. */
  watched: string[];
}

export async function main(transport: TransportKind = 'memory', print: (line: string) => void = (l) => console.log(l)): Promise<RegistryExampleResult> {
  const net = await exampleNetwork(transport, 3);
  const time = stopwatch();
  const say = (line: string): void => print(`${time()} ${line}`);
  const nodes = new Map<number, ClusterNode>();
  const maps = new Map<number, Registry>();
  const ac = new AbortController();

  for (const n of [1, 2, 3]) {
    const node = new ClusterNode({
      nodeNum: n,
      clusterName: 'registry-demo',
      transport: net.transport(n),
      candidates: [1, 2, 3],
      seeds: [1, 2, 3].filter((m) => m !== n).map((m) => net.address(m)),
      preset: 'local',
    });
    nodes.set(n, node);
    // Before node.start(): the map's key service is registered before the node joins.
    maps.set(n, createRegistry(node, { name: 'services', subservice: 40, pushTimeoutMs: 1000, checkIntervalMs: 200 }));
  }
  const map = (n: number): Registry => maps.get(n)!;

  try {
    await Promise.all([...nodes.values()].map((node) => node.start()));
    await Promise.all([...maps.values()].map((m) => m.start()));
    const first = nodes.get(1)!.keyService('registry.services')!;
    say(`the map's sequencer is on node ${first.host}, epoch ${first.epoch}`);

    // A watcher on a node that is not the sequencer's.
    const watcherNode = [1, 2, 3].find((n) => n !== first.host)!;
    const watched: string[] = [];
    void (async () => {
      for await (const e of map(watcherNode).watch('', { signal: ac.signal, initial: false })) {
        const line = `${e.type} ${e.key} (${e.cause})`;
        watched.push(line);
        say(`node ${watcherNode} watch: ${line}${e.type === 'put' ? ` = ${JSON.stringify(e.value)}, version ${e.version}` : ''}`);
      }
    })();

    // Service registration: owned entries, one per node.
    for (const n of [1, 2, 3]) await map(n).put(`svc/api/${n}`, { host: `10.0.0.${n}`, port: 8080 }, { owned: true });

    // A race to create `leader`: compare-and-set on version 0 (absent).
    const leaders: number[] = [];
    const conflicts: number[] = [];
    await Promise.all(
      [1, 2, 3].map(async (n) => {
        try {
          await map(n).put('leader', n, { expectVersion: 0, owned: true });
          leaders.push(n);
          say(`node ${n}: I am the leader`);
        } catch (err) {
          if (!isRegistryError(err, 'REGISTRY_ERR_CONFLICT')) throw err;
          conflicts.push(n);
          say(`node ${n}: conflict, the leader is node ${JSON.stringify(err.current?.value)}`);
        }
      }),
    );
    const color = await map(watcherNode).put('config/color', 'blue');
    say(`node ${watcherNode}: config/color = blue acknowledged at version ${color.version}`);
    await until(() => [1, 2, 3].every((n) => map(n).revision === map(watcherNode).revision), 'every node at the same revision');
    say(`every node has ${map(1).size} entries at revision ${map(1).revision}`);

    // Crash the sequencer's node (no goodbye).
    const crashed = first.host!;
    say(`crashing node ${crashed}`);
    await map(crashed).close();
    await nodes.get(crashed)!.close();
    const rest = [1, 2, 3].filter((n) => n !== crashed);
    await until(() => rest.every((n) => {
      const k = nodes.get(n)!.keyService('registry.services');
      return k?.ready === true && k.epoch > first.epoch && k.host !== crashed;
    }), 'the failover');
    await until(() => rest.every((n) => !map(n).has(`svc/api/${crashed}`) && map(n).revision === map(rest[0]!).revision), 'the survivors to converge');
    const second = nodes.get(rest[0]!)!.keyService('registry.services')!;
    say(`the sequencer moved to node ${second.host}, epoch ${second.epoch}`);
    const keysAfter = map(rest[0]!).entries().map((e) => e.key);
    const colorAfter = map(rest[0]!).get('config/color')?.value;
    say(`node ${rest[0]}: ${keysAfter.join(', ')}; config/color = ${JSON.stringify(colorAfter)}`);
    const after = await map(rest[1]!).put('config/color', 'green', { expectVersion: color.version });
    say(`node ${rest[1]}: config/color = green (compare-and-set on ${color.version}) at version ${after.version}`);
    await until(() => watched.filter((l) => l === 'put config/color (write)').length === 2, 'the watcher to see the new write');
    return {
      leaders,
      conflicts: conflicts.sort(),
      crashed,
      epochs: [first.epoch, second.epoch],
      keysAfter,
      colorAfter,
      versions: [color.version, after.version],
      watched,
    };
  } finally {
    ac.abort();
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
