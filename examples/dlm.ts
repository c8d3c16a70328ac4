/**
 * dlm: the distributed lock manager (`@clusterinfra/dlm`) on three nodes.
 *
 * - Node 1 takes `ledger` in PW and writes a value block when it releases;
 *   node 2 waits for EX, node 1 gets a blocking notification, and node 2's
 *   grant carries the value and a higher fencing token.
 * - A toy store refuses writes with a token lower than the highest it has
 *   seen: what a lock holder that lost its lock would run into.
 * - Node 3 holds `ledger` in EX and crashes while node 1 waits: the
 *   survivors' recovery round releases node 3's lock (the value block,
 *   which node 3 may have been changing, comes back marked invalid) and
 *   node 1 is granted; node 3 restarts as a new incarnation holding nothing.
 *
 *   npx tsx examples/dlm.ts            # over TCP on 127.0.0.1
 *   npx tsx examples/dlm.ts --memory   # over the in-memory network
 */
import { pathToFileURL } from 'node:url';
import { ClusterNode } from '@clusterinfra/core';
import { createDlm, type Dlm } from '@clusterinfra/dlm';
import { exampleNetwork, type TransportKind, transportFromArgs } from './lib/transports.js';
import { stopwatch, until } from './lib/wait.js';

export interface DlmExampleResult {
  /** The blocking notification node 1 got while node 2 waited. */
  blocked: string[];
  /** The value block node 2 read, and the tokens of node 1's and node 2's grants. */
  valueRead: string;
  tokens: [number, number];
  /** Whether the store refused the write with node 1's old token. */
  staleWriteRefused: boolean;
  /** After node 3's crash: node 1's grant, whether its value block was valid, and node 3's locks after it came back. */
  afterCrash: { mode: string | null; valueValid: boolean; departed: string[] };
  rejoinedLocks: number;
}

/** A store that accepts a write only with a token at least as high as any it has seen. */
class FencedStore {
  private highest = 0;
  readonly writes: string[] = [];
  write(token: number, what: string): boolean {
    if (token < this.highest) return false;
    this.highest = token;
    this.writes.push(what);
    return true;
  }
}

export async function main(transport: TransportKind, print: (line: string) => void = (l) => console.log(l)): Promise<DlmExampleResult> {
  const net = await exampleNetwork(transport, 3);
  const time = stopwatch();
  const say = (line: string): void => print(`${time()} ${line}`);
  const nodes = new Map<number, ClusterNode>();
  const dlms = new Map<number, Dlm>();
  const start = async (n: number): Promise<void> => {
    const node = new ClusterNode({
      nodeNum: n,
      clusterName: 'dlm-demo',
      transport: net.transport(n),
      candidates: [1, 2, 3],
      seeds: [1, 2, 3].filter((m) => m !== n).map((m) => net.address(m)),
      preset: 'local',
    });
    // Every node runs a lock manager; created before start, it serves as soon as the node can.
    dlms.set(n, createDlm({ node }));
    nodes.set(n, node);
    await node.start();
  };
  const dlm = (n: number): Dlm => dlms.get(n)!;
  const ready = (): boolean =>
    [...dlms.values()].every((d) => {
      const s = d.stats();
      return s.members.length === 3 && s.completedRound === s.round;
    });
  try {
    await Promise.all([1, 2, 3].map(start));
    await until(ready, 'three lock managers in one round');
    // Any name works; this one is mastered by node 2, so node 3's crash below is a holder's, not the master's.
    let ledger = 'ledger';
    for (let i = 1; dlm(1).masterOf(ledger) !== 2; i++) ledger = `ledger-${i}`;
    say(`formed; ${ledger} is mastered by node ${dlm(1).masterOf(ledger)}`);

    const store = new FencedStore();
    const blocked: string[] = [];
    const first = await dlm(1).lock(ledger, 'PW', { onBlocking: (m) => blocked.push(m) });
    store.write(first.token, 'node 1: balance 100');
    say(`node 1 holds ${ledger} in PW, token ${first.token}`);
    const waiting = dlm(2).lock(ledger, 'EX');
    await until(() => blocked.length > 0, 'a blocking notification at node 1');
    say(`node 1 is told a waiter wants ${blocked[0]}; it releases, writing the value block`);
    await first.unlock({ value: new TextEncoder().encode('balance=100') });
    const second = await waiting;
    const valueRead = new TextDecoder().decode(second.value ?? new Uint8Array());
    say(`node 2 holds ${ledger} in EX, token ${second.token}, value block "${valueRead}" (version ${second.valueVersion})`);
    store.write(second.token, 'node 2: balance 90');
    const staleWriteRefused = !store.write(first.token, 'node 1 again, with its old token');
    say(`the store ${staleWriteRefused ? 'refuses' : 'accepts'} a write with node 1's old token ${first.token}`);
    await second.unlock();

    // A holder crashes.
    const departed: string[] = [];
    for (const d of dlms.values()) d.on('departed', (x) => departed.push(`node ${x.node}'s ${x.mode} on ${x.resource}`));
    const doomed = await dlm(3).lock(ledger, 'EX');
    say(`node 3 holds ${ledger} in EX (token ${doomed.token}) and crashes; node 1 waits for PR`);
    const afterCrashLock = dlm(1).lock(ledger, 'PR');
    await dlm(3).close();
    await nodes.get(3)!.close();
    const got = await afterCrashLock;
    const grantedMode = got.mode;
    say(`node 1 granted ${grantedMode}, token ${got.token}; value block valid: ${got.valueValid}; released at the master: ${departed.join(', ')}`);
    await got.unlock();

    say('node 3 restarts as a new incarnation');
    await start(3);
    await until(ready, 'node 3 back in the lock managers’ round');
    const rejoinedLocks = dlm(3).locks().length;
    say(`node 3 holds ${rejoinedLocks} locks`);
    return {
      blocked,
      valueRead,
      tokens: [first.token, second.token],
      staleWriteRefused,
      afterCrash: { mode: grantedMode, valueValid: got.valueValid, departed },
      rejoinedLocks,
    };
  } finally {
    await Promise.all([...dlms.values()].map((d) => d.close()));
    await Promise.all([...nodes.values()].map((x) => x.close()));
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
