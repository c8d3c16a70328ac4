/**
 * The smallest useful ClusterInfra program: three nodes, a typed service,
 * synchronous and asynchronous calls, a multicast, and what happens to calls
 * when a node goes down.
 *
 *   npm run example:hello             # over TCP on 127.0.0.1
 *   npx tsx examples/hello-cluster.ts --memory   # over the in-memory network
 */
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { client, createIcs, defineService, type Ics, NodeDownError, serve, type TransportFactory } from '@clusterinfra/core';
import { createMemoryNetwork, memory } from '@clusterinfra/transport-mem';
import { tcp } from '@clusterinfra/transport-tcp';

/** The interface: plain data that icsgen will generate from an IDL. */
export const Greeter = defineService({
  name: 'demo.Greeter',
  subservice: 1,
  methods: {
    greet: { kind: 'rpc', input: z.object({ name: z.string().min(1) }), output: z.object({ text: z.string(), by: z.number() }) },
    slow: { kind: 'rpc', input: z.object({ ms: z.number().int().min(0).max(60_000) }), output: z.object({ waited: z.number() }) },
  },
});

export interface DemoOptions {
  transport: 'tcp' | 'memory';
  /** Where lines go. @default console.log */
  print?: (line: string) => void;
}

export async function main(options: DemoOptions): Promise<{ greetings: string[]; nodedownError: string }> {
  const print = options.print ?? ((line: string) => console.log(line));
  const t0 = performance.now();
  const log = (line: string): void => print(`[${(performance.now() - t0).toFixed(1).padStart(7)} ms] ${line}`);
  const network = options.transport === 'memory' ? createMemoryNetwork({ seed: 1 }) : undefined;
  const secret = 'demo secret: use a long random one';
  const addresses = new Map<number, string>();
  const transportFor = (n: number): TransportFactory =>
    network ? memory({ network, address: `node-${n}`, secret }) : tcp({ host: '127.0.0.1', port: 0, secret });

  const nodes: Ics[] = [];
  for (const n of [1, 2, 3]) {
    const ics = createIcs({ transport: transportFor(n), clusterName: 'demo', nodeNum: n, peers: (x) => addresses.get(x) });
    await ics.start();
    addresses.set(n, ics.address!);
    ics.on('link', (e) => log(`node ${n}: link to node ${e.node} ${e.state}${e.reason ? ` (${e.reason})` : ''}`));
    serve(ics, Greeter, {
      greet: ({ name }) => ({ text: `hello ${name}`, by: n }),
      slow: async ({ ms }, ctx) => {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, ms);
          ctx.signal.addEventListener('abort', () => (clearTimeout(t), reject(ctx.signal.reason)));
        });
        return { waited: ms };
      },
    });
    nodes.push(ics);
    log(`node ${n} listening on ${ics.address} (incarnation ${ics.incarnation})`);
  }
  const [one, two, three] = nodes as [Ics, Ics, Ics];

  const greetings: string[] = [];
  const toTwo = client(one, Greeter, 2);
  const r = await toTwo.greet({ name: 'world' });
  greetings.push(r.text);
  log(`node 1 → node 2 greet: "${r.text}" (answered by node ${r.by})`);

  const handle = client(one, Greeter, 3).$request('greet', { name: 'later' });
  log('node 1 → node 3: asynchronous request sent, doing other work');
  const later = await handle.result();
  greetings.push(later.text);
  log(`node 1 ← node 3: "${later.text}"`);

  const all = await one.multicast<{ text: string; by: number }>([2, 3], { channel: 'default', subservice: 1 }, 'greet', { name: 'everyone' });
  for (const [node, res] of all.results) if (res.ok) log(`multicast: node ${node} said "${res.value.text}"`);

  const bad = await toTwo.greet({ name: '' }).catch((e: { code: string }) => e.code);
  log(`invalid arguments are refused at the serving edge: ${String(bad)}`);

  log('node 1 → node 3: a slow call (5 s) is in flight; node 3 is now declared down');
  const slow = client(one, Greeter, 3).slow({ ms: 5000 });
  await new Promise((r2) => setTimeout(r2, 50));
  // CLMS will make this call when it detects the failure; here we say it.
  await one.nodeDown(3);
  const err = await slow.catch((e: unknown) => e);
  await three.close();
  const nodedownError = err instanceof NodeDownError ? `${err.code} (${err.sent})` : String(err);
  log(`the pending call settled at once: ${nodedownError}`);

  await Promise.all([one.close(), two.close()]);
  log('all nodes closed');
  return { greetings, nodedownError };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main({ transport: process.argv.includes('--memory') ? 'memory' : 'tcp' }).then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
