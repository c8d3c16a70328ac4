/**
 * hello-rpc: a service written in the icsgen interface language
 * (hello.ics), its generated, committed stubs (hello.gen.ts), served on
 * every node of three and called from node 1: a synchronous RPC, an
 * asynchronous request, a one-way message, and invalid arguments refused
 * at the serving edge.
 *
 *   npx tsx examples/hello-rpc/main.ts            # over TCP on 127.0.0.1
 *   npx tsx examples/hello-rpc/main.ts --memory   # over the in-memory network
 *
 * After editing hello.ics, regenerate with
 *   npx tsx packages/icsgen/src/cli.ts examples/hello-rpc/hello.ics --out examples/hello-rpc
 * (`npm run gen:check` fails when hello.gen.ts is out of date).
 */
import { pathToFileURL } from 'node:url';
import { client, createIcs, type Ics, InvalidArgumentError, serve } from '@clusterinfra/core';
import { exampleNetwork, type TransportKind, transportFromArgs } from '../lib/transports.js';
import { Hello, type HelloImpl } from './hello.gen.js';

/** The channel hello.ics names, with its number: every node defines the same ones. */
const channels = [{ name: 'greetings', number: 32 }];

export interface HelloRpcResult {
  greetings: string[];
  /** What node 2 counted after the calls. */
  count: number;
  /** The code a call with an empty name got back. */
  invalidCode: string;
  /** The one-way messages node 2 received. */
  waves: string[];
}

/** One node's implementation: the generated HelloImpl type checks every handler. */
function helloOn(nodeNum: number, waves: string[], waved: () => void): HelloImpl {
  let count = 0;
  return {
    greet: ({ name }) => {
      // The IDL says `string`; the rule "at least one character" is the service's.
      if (name.length === 0) throw new InvalidArgumentError('name must not be empty');
      count++;
      return { text: `hello ${name}`, by: nodeNum };
    },
    count: () => count,
    wave: ({ from }) => {
      waves.push(`node ${nodeNum} saw a wave from ${from}`);
      waved();
    },
  };
}

export async function main(transport: TransportKind, print: (line: string) => void = (l) => console.log(l)): Promise<HelloRpcResult> {
  const net = await exampleNetwork(transport, 3);
  const nodes: Ics[] = [];
  const waves: string[] = [];
  let waved!: () => void;
  const waveArrived = new Promise<void>((r) => (waved = r));
  try {
    for (const n of [1, 2, 3]) {
      const ics = createIcs({ transport: net.transport(n), clusterName: 'hello', nodeNum: n, peers: (x) => net.address(x), channels });
      await ics.start();
      serve(ics, Hello, helloOn(n, waves, waved));
      nodes.push(ics);
      print(`node ${n} serves Hello at ${ics.address} (${transport})`);
    }
    const one = nodes[0]!;
    const greetings: string[] = [];

    // Synchronous RPC: the typed client validates the answer too.
    const toTwo = client(one, Hello, 2);
    const g = await toTwo.greet({ name: 'world' });
    greetings.push(g.text);
    print(`node 1 → node 2 greet: "${g.text}" (by node ${g.by})`);

    // Asynchronous request: sent now, awaited later.
    const pending = client(one, Hello, 3).$request('greet', { name: 'later' });
    print('node 1 → node 3: request sent, result awaited later');
    const later = await pending.result();
    greetings.push(later.text);
    print(`node 1 ← node 3: "${later.text}" (by node ${later.by})`);

    // One-way message: no answer; node 2 prints it when it arrives.
    await toTwo.wave({ from: 'node 1' });
    await waveArrived;
    print(waves[0]!);

    // Invalid arguments are refused on the serving node and come back typed.
    const invalidCode = await toTwo.greet({ name: '' }).then(
      () => 'no error',
      (e: { code?: string }) => String(e.code),
    );
    print(`greet with an empty name: ${invalidCode}`);

    const count = await toTwo.count({});
    print(`node 2 has greeted ${count} time(s)`);
    return { greetings, count, invalidCode, waves };
  } finally {
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
