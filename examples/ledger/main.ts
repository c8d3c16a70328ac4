/**
 * ledger: a typed key service. ledger.ics declares it (`keyservice Ledger`),
 * icsgen generates ledger.gen.ts, and this program hosts it with
 * `serveKeyService` and calls it with `keyServiceClient`: handlers, pulled
 * data and hand-over data are all typed, and checked on arrival.
 *
 * - Nodes 2 and 3 may host the ledger; node 1 (the master) only calls it.
 * - Each node remembers what it deposited itself: its `pullData`. When the
 *   host crashes, the new host rebuilds the balances from the survivors.
 * - When the host leaves cleanly, it hands the whole table over;
 *   `failoverData` gets that apart from the pulled data, so nothing is
 *   counted twice.
 * - A call with bad arguments is refused on arrival (ICS_ERR_INVALID_ARGUMENT);
 *   a call to a misspelt key service fails at once (CLMS_ERR_KEYSERVICE_UNKNOWN).
 *
 *   npx tsx examples/ledger/main.ts            # on the in-memory network
 *   npx tsx examples/ledger/main.ts --tcp      # over TCP on 127.0.0.1
 *
 * After editing ledger.ics, regenerate with
 *   npx tsx packages/icsgen/src/cli.ts examples/ledger/ledger.ics --out examples/ledger
 */
import { pathToFileURL } from 'node:url';
import { ClusterNode, isClusterInfraError, keyServiceClient, type KeyServiceInfo, serveKeyService } from '@clusterinfra/core';
import { exampleNetwork, type TransportKind } from '../lib/transports.js';
import { stopwatch, until } from '../lib/wait.js';
import { Ledger, type LedgerDepositArgs, type LedgerImpl } from './ledger.gen.js';

export interface LedgerExampleResult {
  /** Where the ledger lived: after formation, after the crash, after the clean leave. */
  hosts: [number, number, number];
  /** alice's balance as node 1 read it at each of those times. */
  balances: [number, number, number];
  /** The codes of a call with bad arguments and of a call to a misspelt key service. */
  invalidCode: string;
  unknownCode: string;
  /** What the last host's failoverData got: the hand-over and the pulled nodes, apart. */
  handover: { from: number; accounts: number } | undefined;
  pulledOnLeave: number[];
}

/** The ledger on one node: the table (meaningful on the host) and what this node deposited itself. */
function ledgerOn(n: number, say: (line: string) => void, seen: (h: LedgerExampleResult['handover'], pulled: number[]) => void): { impl: LedgerImpl; mine: Record<string, number> } {
  let table = new Map<string, number>();
  const mine: Record<string, number> = {};
  const impl: LedgerImpl = {
    handlers: {
      // `cents` is an integer here: anything else was refused before this ran.
      deposit: ({ account, cents }) => {
        const now = (table.get(account) ?? 0) + cents;
        table.set(account, now);
        return { account, cents: now };
      },
      balance: ({ account }) => ({ account, cents: table.get(account) ?? 0 }),
    },
    failover: (ctx) => {
      say(`node ${n}: taking over the ledger, epoch ${ctx.epoch}${ctx.previousHost ? ` (from node ${ctx.previousHost})` : ''}`);
      table = new Map();
    },
    pullData: () => mine,
    handover: () => {
      say(`node ${n}: handing the ledger over: ${table.size} account(s)`);
      return [...table].map(([account, cents]) => ({ account, cents }));
    },
    failoverData: ({ pulled, handover, rejected }) => {
      const from = [...pulled.keys()].sort((a, b) => a - b);
      if (handover) {
        // The hand-over is the whole table; the pulls say again what the survivors deposited: not added.
        for (const b of handover.data) table.set(b.account, b.cents);
        say(`node ${n}: ledger from node ${handover.from}'s hand-over; pulls from nodes ${from.join(', ')} kept apart`);
      } else {
        for (const deposits of pulled.values()) for (const [account, cents] of Object.entries(deposits)) table.set(account, (table.get(account) ?? 0) + cents);
        say(`node ${n}: ledger rebuilt from what nodes ${from.join(', ')} deposited: ${JSON.stringify(Object.fromEntries(table))}`);
      }
      for (const [node, why] of rejected) say(`node ${n}: data from node ${node} refused: ${why}`);
      seen(handover && { from: handover.from, accounts: handover.data.length }, from);
    },
  };
  return { impl, mine };
}

export async function main(transport: TransportKind = 'memory', print: (line: string) => void = (l) => console.log(l)): Promise<LedgerExampleResult> {
  const net = await exampleNetwork(transport, 3);
  const time = stopwatch();
  const say = (line: string): void => print(`${time()} ${line}`);
  const nodes = new Map<number, ClusterNode>();
  const deposits = new Map<number, Record<string, number>>();
  let handover: LedgerExampleResult['handover'];
  let pulledOnLeave: number[] = [];

  const make = (n: number): ClusterNode => {
    const node = new ClusterNode({
      nodeNum: n,
      clusterName: 'ledger-demo',
      transport: net.transport(n),
      candidates: [1],
      seeds: [1, 2, 3].filter((m) => m !== n).map((m) => net.address(m)),
      preset: 'local',
    });
    nodes.set(n, node);
    if (n !== 1) {
      const { impl, mine } = ledgerOn(n, say, (h, pulled) => {
        handover = h;
        pulledOnLeave = pulled;
      });
      serveKeyService(node, Ledger, impl, { critical: true });
      deposits.set(n, mine);
    }
    return node;
  };

  const deposit = async (n: number, account: string, cents: number): Promise<void> => {
    const b = await keyServiceClient(nodes.get(n)!, Ledger).deposit({ account, cents }, { timeoutMs: 10_000 });
    // Counted as ours only once the host confirmed it.
    const mine = deposits.get(n);
    if (mine) mine[account] = (mine[account] ?? 0) + cents;
    say(`node ${n}: deposit ${cents} to ${account} → ${b.cents}`);
  };
  const balance = async (): Promise<number> => (await keyServiceClient(nodes.get(1)!, Ledger).balance({ account: 'alice' }, { timeoutMs: 10_000 })).cents;
  const where = (n: number): KeyServiceInfo | undefined => nodes.get(n)!.keyService('Ledger');
  const readyOn = (ns: number[], not?: number): boolean =>
    ns.every((n) => {
      const k = where(n);
      return k?.ready === true && k.host !== not && k.host === where(ns[0]!)?.host;
    });
  const codeOf = (e: unknown): string => (isClusterInfraError(e) ? e.code : String(e));

  try {
    for (const n of [1, 2, 3]) make(n);
    await Promise.all([...nodes.values()].map((node) => node.start()));
    await until(() => [1, 2, 3].every((n) => nodes.get(n)!.formed) && readyOn([1, 2, 3]), 'formation with the ledger ready');
    const first = where(1)!.host!;
    const other = first === 2 ? 3 : 2;
    say(`the ledger lives on node ${first}`);
    await deposit(first, 'alice', 100);
    await deposit(other, 'alice', 50);
    const b0 = await balance();
    say(`alice: ${b0}`);

    // What a peer on another version (or a bug) might send: refused on arrival, the handler never runs.
    const invalidCode = await keyServiceClient(nodes.get(1)!, Ledger)
      .deposit({ account: 'alice', cents: 2.5 } satisfies LedgerDepositArgs)
      .then(() => 'no error', codeOf);
    say(`deposit of 2.5 cents: ${invalidCode}`);
    // A misspelt name fails at once instead of waiting for a host that will never come.
    const unknownCode = await nodes.get(1)!.callKeyService('ledgr', 'balance', { account: 'alice' }, { timeoutMs: 60_000 }).then(() => 'no error', codeOf);
    say(`a call to 'ledgr': ${unknownCode}`);

    // Crash the host: node `other` takes over with what the survivors deposited (the crashed node's own deposit is gone).
    say(`crashing node ${first}`);
    await nodes.get(first)!.close();
    await until(() => readyOn([1, other], first), 'failover');
    const b1 = await balance();
    say(`alice after the crash: ${b1}`);

    // Bring the crashed node back, let it deposit again, then let the host leave cleanly: a hand-over.
    await make(first).start();
    await until(() => [1, 2, 3].every((n) => nodes.get(n)!.info(first)?.state === 'Up'), 'the crashed node back');
    await deposit(first, 'alice', 10);
    say(`node ${other} leaves cleanly`);
    await nodes.get(other)!.leave();
    await until(() => readyOn([1, first], other), 'hand-over');
    const b2 = await balance();
    say(`alice after the hand-over: ${b2}`);
    return { hosts: [first, other, where(1)!.host!], balances: [b0, b1, b2], invalidCode, unknownCode, handover, pulledOnLeave };
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
