/**
 * subsystem: set up for a node that comes up, clean up after one that goes
 * down (the seeds' register_clms_subsys).
 *
 * - Subsystems run in bands: on every surviving node, lower bands first,
 *   then in registration order. Here `locks` (band 0) releases the dead
 *   node's locks before `sessions` (band 10) drops its sessions, and
 *   `audit` (band 20) flushes last, slowly.
 * - The rejoin barrier: a node that went down may not join again before
 *   every node finished its nodedown callbacks for it. Node 3 crashes and
 *   restarts at once; its join waits for node 2's slow `audit` callback.
 *
 *   npx tsx examples/subsystem.ts            # over TCP on 127.0.0.1
 *   npx tsx examples/subsystem.ts --memory   # over the in-memory network
 */
import { pathToFileURL } from 'node:url';
import { ClusterNode } from '@clusterinfra/core';
import { exampleNetwork, type TransportKind, transportFromArgs } from './lib/transports.js';
import { stopwatch, until } from './lib/wait.js';

export interface SubsystemResult {
  /** Nodedown callbacks for node 3's first incarnation, per survivor, in the order they ran. */
  cleanupOrder: Record<number, string[]>;
  /** Step numbers (one counter for the whole run): when node 2's slow cleanup ended, when node 3 was Up again at node 1. */
  auditDone: number;
  rejoinedUp: number;
  /** Node 3's incarnations: before the crash, after the restart. */
  incarnations: [number, number];
}

/** How long node 2's `audit` cleanup takes: long enough to see node 3 wait. */
const AUDIT_MS = 500;

export async function main(transport: TransportKind, print: (line: string) => void = (l) => console.log(l)): Promise<SubsystemResult> {
  const net = await exampleNetwork(transport, 3);
  const time = stopwatch();
  let step = 0;
  const say = (line: string): number => {
    print(`${time()} ${line}`);
    return ++step;
  };
  const nodes = new Map<number, ClusterNode>();
  const cleanupOrder: Record<number, string[]> = { 1: [], 2: [] };
  let auditDone = 0;
  let firstThree = 0;

  const make = (n: number): ClusterNode => {
    const node = new ClusterNode({
      nodeNum: n,
      clusterName: 'subsys',
      transport: net.transport(n),
      candidates: [1, 2, 3],
      seeds: [1, 2, 3].filter((m) => m !== n).map((m) => net.address(m)),
      preset: 'local',
    });
    // Each node's own state about its peers: what the callbacks set up and clean up.
    const locks = new Map<number, string[]>();
    const sessions = new Map<number, number>();
    const record = (peer: number, incarnation: number, what: string): void => {
      if (peer === 3 && incarnation === firstThree && n !== 3) cleanupOrder[n]?.push(what);
    };
    // Registered in this order on purpose: the bands, not the order, decide who runs first.
    node.registerSubsystem({
      name: 'audit',
      band: 20,
      nodedown: async ({ node: peer, incarnation, signal }) => {
        if (n === 2) {
          say(`node 2 audit: flushing the log of node ${peer} (${AUDIT_MS} ms)…`);
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, AUDIT_MS);
            signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
          });
          if (peer === 3 && incarnation === firstThree) auditDone = say(`node 2 audit: done for node ${peer}`);
        }
        record(peer, incarnation, 'audit');
      },
    });
    node.registerSubsystem({
      name: 'sessions',
      band: 10,
      nodeup: ({ node: peer }) => void sessions.set(peer, 1),
      nodedown: ({ node: peer, incarnation }) => {
        sessions.delete(peer);
        record(peer, incarnation, 'sessions');
      },
    });
    node.registerSubsystem({
      name: 'locks',
      band: 0,
      nodeup: ({ node: peer }) => void locks.set(peer, [`lock-of-${peer}`]),
      nodedown: ({ node: peer, incarnation }) => {
        const released = locks.get(peer) ?? [];
        locks.delete(peer);
        if (n !== 3) say(`node ${n} locks: released ${released.join(', ') || 'nothing'} held by node ${peer}`);
        record(peer, incarnation, 'locks');
      },
    });
    nodes.set(n, node);
    return node;
  };

  const everyoneUp = (): boolean => [...nodes.values()].every((a) => [1, 2, 3].every((m) => a.info(m)?.state === 'Up'));
  let rejoinedUp = 0;
  try {
    for (const n of [1, 2, 3]) make(n);
    await Promise.all([...nodes.values()].map((x) => x.start()));
    await until(everyoneUp, 'three nodes Up everywhere');
    firstThree = nodes.get(3)!.incarnation;
    say(`formed; node 3 is incarnation ${firstThree}`);

    const one = nodes.get(1)!;
    one.on('transition', (t) => {
      if (t.node === 3 && t.kind === 'state') {
        const s = say(`node 1 sees #${t.number}: node 3 ${t.from} → ${t.to} (${t.cause})`);
        if (t.to === 'Up' && t.incarnation !== firstThree) rejoinedUp = s;
      }
    });

    // A crash: no goodbye, the others find out from the broken links.
    say('node 3 crashes and restarts at once');
    await nodes.get(3)!.close();
    const again = make(3);
    // Its join is refused until every survivor finished cleaning up after the old incarnation.
    await again.start();
    await until(everyoneUp, 'node 3 Up again everywhere');
    say(`node 3 is back as incarnation ${again.incarnation}`);
    return { cleanupOrder, auditDone, rejoinedUp, incarnations: [firstThree, again.incarnation] };
  } finally {
    await Promise.all([...nodes.values()].map((x) => x.close()));
    print(`${time()} all nodes closed`);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(transportFromArgs()).then(
    (r) => {
      console.log(`cleanup order on node 1: ${r.cleanupOrder[1]?.join(' → ')}; on node 2: ${r.cleanupOrder[2]?.join(' → ')}`);
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
