/**
 * membership-watch: how an application follows cluster membership.
 *
 * - Events: `transition` (every committed change, in number order, once),
 *   `nodeup`, `nodedown` and `master` on a ClusterNode.
 * - `watch({ since })`: an async iterator that first replays the history
 *   from transition `since` (as far as the bounded history holds it), then
 *   follows live changes, without gaps or repeats. A consumer that stored
 *   the last number it handled resumes from the next one.
 *
 * Three nodes form a cluster; a watcher on node 1 replays from transition 1
 * and stays live while node 3 leaves cleanly and comes back as a new
 * incarnation; a second watcher resumes from where the first stopped.
 *
 *   npx tsx examples/membership-watch.ts            # over TCP on 127.0.0.1
 *   npx tsx examples/membership-watch.ts --memory   # over the in-memory network
 */
import { pathToFileURL } from 'node:url';
import { ClusterNode, type Transition, type WatchEvent } from '@clusterinfra/core';
import { exampleNetwork, type TransportKind, transportFromArgs } from './lib/transports.js';
import { stopwatch, until } from './lib/wait.js';

export interface WatchResult {
  /** Transition numbers the first watcher saw (replayed, then live). */
  watched: number[];
  /** How many of them were replayed from history. */
  replayed: number;
  /** Transition numbers the resumed watcher saw. */
  resumed: number[];
  /** Node 1's `transition` events. */
  events: number[];
  /** Node 1's history at the end. */
  history: number[];
}

/** A transition in words: `#7 node 3 Up → ShuttingDown (left)`. */
export function describe(t: Transition): string {
  if (t.kind === 'master') return `#${t.number} master is node ${t.node} (term ${t.term})`;
  if (t.kind === 'keyservice') return `#${t.number} key service ${t.keyService?.name} ${t.keyService?.phase} on node ${t.node}`;
  return `#${t.number} node ${t.node} ${t.from} → ${t.to} (${t.cause})`;
}

export async function main(transport: TransportKind, print: (line: string) => void = (l) => console.log(l)): Promise<WatchResult> {
  const net = await exampleNetwork(transport, 3);
  const time = stopwatch();
  const nodes = new Map<number, ClusterNode>();
  const make = (n: number): ClusterNode =>
    new ClusterNode({
      nodeNum: n,
      clusterName: 'watch',
      transport: net.transport(n),
      candidates: [1, 2, 3],
      seeds: [1, 2, 3].filter((m) => m !== n).map((m) => net.address(m)),
      preset: 'local',
    });
  for (const n of [1, 2, 3]) nodes.set(n, make(n));
  const one = nodes.get(1)!;

  // Events: registered before start(), so nothing is missed.
  const events: number[] = [];
  one.on('transition', (t) => events.push(t.number));
  one.on('nodeup', (m) => print(`${time()} node 1 event: nodeup node ${m.node}`));
  one.on('nodedown', (m) => print(`${time()} node 1 event: nodedown node ${m.node} (${m.state})`));
  one.on('master', (m) => print(`${time()} node 1 event: master ${m.master ?? 'unknown'} (term ${m.term})`));

  const everyoneUp = (ns: ClusterNode[]): boolean => ns.every((a) => ns.every((b) => a.info(b.nodeNum)?.state === 'Up'));
  try {
    await Promise.all([...nodes.values()].map((n) => n.start()));
    await until(() => everyoneUp([...nodes.values()]), 'three nodes Up everywhere');
    print(`${time()} formed: ${one.membership().members.map((m) => `node ${m.node} ${m.state}`).join(', ')}`);

    // A watcher that replays from transition 1, then follows live.
    const stopFirst = new AbortController();
    const watched: number[] = [];
    const head = one.lastTransition;
    const first = (async () => {
      for await (const e of one.watch({ since: 1, signal: stopFirst.signal })) {
        if (e.type !== 'transition') {
          // Master and quorum changes (and key-service news) come interleaved, as they happen.
          print(`${time()} watch: ${e.type} ${JSON.stringify({ ...e, type: undefined })}`);
          continue;
        }
        watched.push(e.transition.number);
        print(`${time()} watch: ${e.transition.number <= head ? 'replayed' : 'live'} ${describe(e.transition)}`);
      }
    })();
    await until(() => watched.length >= head, 'the replay');

    // Live: node 3 leaves cleanly, then starts again (a new incarnation).
    print(`${time()} node 3 leaves`);
    await nodes.get(3)!.leave();
    await until(() => one.info(3)?.state === 'Down', 'node 3 Down at node 1');
    print(`${time()} node 3 starts again`);
    const again = make(3);
    nodes.set(3, again);
    await again.start();
    await until(() => everyoneUp([...nodes.values()]), 'node 3 Up again everywhere');
    await until(() => watched.at(-1) === one.lastTransition, 'the watcher to catch up');
    stopFirst.abort();
    await first;

    // Resume: a consumer that stored the last number it handled asks for the next one.
    const from = watched[Math.floor(watched.length / 2)]! + 1;
    const resumed: number[] = [];
    const stopSecond = new AbortController();
    for await (const e of one.watch({ since: from, signal: stopSecond.signal }) as AsyncGenerator<WatchEvent>) {
      if (e.type !== 'transition') continue;
      resumed.push(e.transition.number);
      if (e.transition.number === one.lastTransition) stopSecond.abort();
    }
    print(`${time()} a watcher resumed from #${from} got #${resumed[0]}..#${resumed.at(-1)} (${resumed.length} transitions)`);
    return { watched, replayed: head, resumed, events, history: one.transitions().map((t) => t.number) };
  } finally {
    await Promise.all([...nodes.values()].map((n) => n.close()));
    print(`${time()} all nodes closed`);
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
