/**
 * key-service-failover: a critical key service (a tiny lock manager) that
 * lives on one node, fails over with data pulled from the survivors when its
 * host crashes, and hands over with its data when its host leaves cleanly.
 *
 * - Each node remembers the locks it holds (as a lock manager's clients do);
 *   that is what `pullData` returns, so a new host rebuilds the lock table
 *   from the survivors.
 * - Every activation has an epoch; `acquire` answers it as a fencing token,
 *   and an external system would refuse writes with an older one.
 * - `owner` is marked idempotent: a call caught by the crash is retried once
 *   on the new host; `acquire` is not, and would not be.
 * - Node 1 is the master (the only candidate here) and a client; nodes 2
 *   and 3 may host `locks`: node 1 registers nothing and still calls it by name.
 *
 *   npx tsx examples/key-service-failover.ts           # on the in-memory network
 *   npx tsx examples/key-service-failover.ts --tcp     # over TCP on 127.0.0.1
 */
import { pathToFileURL } from 'node:url';
import { ClusterNode, type KeyServiceInfo } from '@clusterinfra/core';
import { exampleNetwork, type TransportKind } from './lib/transports.js';
import { stopwatch, until } from './lib/wait.js';

export interface KeyServiceFailoverResult {
  /** Where `locks` lived: after formation, after the crash, after the clean leave. */
  hosts: [number, number, number];
  epochs: [number, number, number];
  /** The fencing tokens `acquire` answered (one per lock taken). */
  tokens: number[];
  /** Who holds `b` according to the second and the third host. */
  ownerAfterCrash: number | null;
  ownerAfterLeave: number | null;
  /** Nodes whose pulled data the second host received (on the failover after the crash). */
  pulledFrom: number[];
  /** What the third host got from the second by hand-over. */
  handedOver: Record<string, number>;
}

export async function main(transport: TransportKind = 'memory', print: (line: string) => void = (l) => console.log(l)): Promise<KeyServiceFailoverResult> {
  const net = await exampleNetwork(transport, 3);
  const time = stopwatch();
  const say = (line: string): void => print(`${time()} ${line}`);
  const nodes = new Map<number, ClusterNode>();
  let pulledFrom: number[] = [];
  let handedOver: Record<string, number> = {};

  const make = (n: number): ClusterNode => {
    const node = new ClusterNode({
      nodeNum: n,
      clusterName: 'locks-demo',
      transport: net.transport(n),
      candidates: [1],
      seeds: [1, 2, 3].filter((m) => m !== n).map((m) => net.address(m)),
      preset: 'local',
    });
    nodes.set(n, node);
    // Only nodes 2 and 3 may host the key service (the seeds' boot entries).
    if (n === 1) return node;
    /** The lock table: only meaningful on the host. */
    let table: Record<string, number> = {};
    /** Locks this node holds (its own memory, pulled on failover). */
    const mine = new Set<string>();
    node.registerKeyService({
      name: 'locks',
      critical: true, // the cluster is not formed without it
      subservice: 1,
      idempotent: ['owner'],
      handlers: {
        acquire: (args, ctx) => {
          const key = String((args as { key: string }).key);
          const holder = table[key];
          if (holder !== undefined && holder !== ctx.caller.nodeNum) return { ok: false, holder, token: ctx.epoch };
          table[key] = ctx.caller.nodeNum;
          return { ok: true, holder: ctx.caller.nodeNum, token: ctx.epoch };
        },
        owner: (args) => table[String((args as { key: string }).key)] ?? null,
      },
      failover: (ctx) => {
        say(`node ${n}: taking over locks, epoch ${ctx.epoch}${ctx.previousHost ? ` (from node ${ctx.previousHost})` : ''}`);
        table = {};
      },
      pullData: () => [...mine],
      failoverData: ({ pulled, handover }) => {
        // A clean leave hands the whole table over; the survivors' pulls add what they hold.
        const handed = handover?.data;
        if (handed && typeof handed === 'object' && !Array.isArray(handed)) {
          table = { ...(handed as Record<string, number>) };
          handedOver = table;
        }
        for (const [from, keys] of pulled) if (Array.isArray(keys)) for (const k of keys) table[String(k)] = from;
        const from = [...pulled.keys()].sort((a, b) => a - b);
        if (!handover) pulledFrom = from;
        const handedNote = handover ? `node ${handover.from}'s hand-over and ` : '';
        say(`node ${n}: lock table rebuilt from ${handedNote}pulls from nodes ${from.join(', ')}: ${JSON.stringify(table)}`);
      },
      handover: () => {
        say(`node ${n}: handing the lock table over: ${JSON.stringify(table)}`);
        return table;
      },
    });
    (node as ClusterNode & { mine?: Set<string> }).mine = mine;
    return node;
  };

  const acquire = async (n: number, key: string): Promise<number> => {
    const node = nodes.get(n)!;
    const r = await node.callKeyService<{ ok: boolean; token: number }>('locks', 'acquire', { key }, { timeoutMs: 10_000 });
    if (r.ok) (node as ClusterNode & { mine?: Set<string> }).mine?.add(key);
    say(`node ${n}: acquire ${key} → ${r.ok ? 'granted' : 'refused'}, fencing token ${r.token}`);
    return r.token;
  };
  const where = (n: number): KeyServiceInfo | undefined => nodes.get(n)!.keyService('locks');
  const readyOn = (ns: number[], not?: number): boolean =>
    ns.every((n) => {
      const k = where(n);
      return k?.ready === true && k.host !== not && k.host === where(ns[0]!)?.host;
    });

  try {
    for (const n of [1, 2, 3]) make(n);
    nodes.get(1)!.on('formed', ({ formed }) => say(`node 1: cluster ${formed ? 'formed' : 'not formed'}`));
    await Promise.all([...nodes.values()].map((node) => node.start()));
    await until(() => [1, 2, 3].every((n) => nodes.get(n)!.formed) && readyOn([1, 2, 3]), 'formation with the locks key service ready');
    const first = where(1)!;
    say(`locks lives on node ${first.host}, epoch ${first.epoch}`);
    const clients = [1, 2, 3].filter((n) => n !== first.host);
    const other = clients.find((n) => n !== 1)!;
    // The host takes `a`, the other eligible node takes `b`.
    const tokens = [await acquire(first.host!, 'a'), await acquire(other, 'b')];

    // Crash the host (no goodbye): the others detect it, clean up, and the next eligible node takes over.
    say(`crashing node ${first.host}`);
    await nodes.get(first.host!)!.close();
    await until(() => readyOn(clients, first.host), 'failover');
    const second = where(clients[0]!)!;
    say(`locks moved to node ${second.host}, epoch ${second.epoch}`);
    const ownerAfterCrash = await nodes.get(1)!.callKeyService<number | null>('locks', 'owner', { key: 'b' });
    say(`owner of b after the crash: node ${ownerAfterCrash}`);

    // Bring the crashed node back (a new incarnation), then let the host leave cleanly: a hand-over, data included.
    const back = make(first.host!);
    await back.start();
    await until(() => [1, 2, 3].every((n) => nodes.get(n)!.info(first.host!)?.state === 'Up'), 'the crashed node back');
    say(`node ${second.host} leaves cleanly`);
    await nodes.get(second.host!)!.leave();
    const rest = [1, 2, 3].filter((n) => n !== second.host);
    await until(() => readyOn(rest, second.host), 'hand-over');
    const third = where(rest[0]!)!;
    say(`locks handed over to node ${third.host}, epoch ${third.epoch}`);
    const ownerAfterLeave = await nodes.get(1)!.callKeyService<number | null>('locks', 'owner', { key: 'b' });
    say(`owner of b after the hand-over: node ${ownerAfterLeave}`);
    return {
      hosts: [first.host!, second.host!, third.host!],
      epochs: [first.epoch, second.epoch, third.epoch],
      tokens,
      ownerAfterCrash,
      ownerAfterLeave,
      pulledFrom,
      handedOver,
    };
  } finally {
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
