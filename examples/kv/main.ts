/**
 * The kv example: a service written in the icsgen IDL (kv.ics), its
 * generated descriptor (kv.gen.ts), served on one node and called from
 * another over the in-memory network.
 *
 *   npx tsx examples/kv/main.ts
 *
 * After editing kv.ics, regenerate with
 *   npx tsx packages/icsgen/src/cli.ts examples/kv/kv.ics --out examples/kv
 * (CI runs `npm run gen:check`, which fails when kv.gen.ts is out of date).
 */
import { pathToFileURL } from 'node:url';
import { client, createIcs, InvalidArgumentError, serve } from '@clusterinfra/core';
import { createMemoryNetwork, memory } from '@clusterinfra/transport-mem';
import { type Entry, Kv, type KvImpl } from './kv.gen.js';

/** The application's user channels: every node defines the same ones. */
const channels = [{ name: 'app', number: 32 }];

/** A plain in-memory implementation: each handler gets validated arguments. */
function kvStore(): { impl: KvImpl; invalidated: string[] } {
  const entries = new Map<string, Entry>();
  const invalidated: string[] = [];
  const impl: KvImpl = {
    get: ({ key }) => entries.get(key) ?? null,
    put: ({ entry }) => {
      entries.set(entry.key, entry);
    },
    scan: ({ prefix, limit }) =>
      [...entries.values()]
        .filter((e) => e.key.startsWith(prefix))
        .sort((a, b) => a.key.localeCompare(b.key))
        .slice(0, limit ?? Number.MAX_SAFE_INTEGER),
    size: () => entries.size,
    invalidate: ({ keys }) => {
      invalidated.push(...keys);
    },
  };
  return { impl, invalidated };
}

export interface KvDemoResult {
  got: Entry | null;
  missing: Entry | null;
  scanned: string[];
  size: number;
  /** The error code a call with invalid arguments got back. */
  invalidCode: string;
}

export async function main(print: (line: string) => void = (l) => console.log(l)): Promise<KvDemoResult> {
  const network = createMemoryNetwork({ seed: 1 });
  const address = (n: number): string => `kv-${n}`;
  const node = (nodeNum: number) =>
    createIcs({ transport: memory({ network, address: address(nodeNum) }), clusterName: 'kv', nodeNum, peers: address, channels });
  const server = node(1);
  const caller = node(2);
  await server.start();
  await caller.start();
  try {
    const store = kvStore();
    serve(server, Kv, store.impl);
    const kv = client(caller, Kv, 1);

    const bytes = new TextEncoder().encode('hello');
    await kv.put({ entry: { key: 'greeting', value: bytes, tags: { lang: 'en' }, children: [], color: 'green' } });
    await kv.put({
      entry: {
        key: 'tree',
        value: new Uint8Array(0),
        ttlMs: 60_000,
        tags: {},
        children: [{ key: 'leaf', value: new Uint8Array([1]), tags: {}, children: [], color: null }],
        color: null,
      },
    });
    const got = await kv.get({ key: 'greeting' });
    print(`get greeting → ${got ? new TextDecoder().decode(got.value) : 'null'} (${got?.color})`);
    const missing = await kv.get({ key: 'nope' });
    print(`get nope → ${JSON.stringify(missing)}`);
    // The asynchronous form: the call runs now, the result waits until asked for.
    const pending = kv.$request('scan', { prefix: '', limit: 10 });
    const scanned = (await pending.result()).map((e) => e.key);
    print(`scan → ${scanned.join(', ')}`);
    const size = await kv.size({});
    print(`size → ${size}`);
    await kv.invalidate({ keys: ['greeting'] });

    // What a peer built from another version (or a bug) might send: refused at the server.
    let invalidCode = 'none';
    try {
      await kv.scan({ prefix: 'x', limit: -1 });
    } catch (e) {
      if (!(e instanceof InvalidArgumentError)) throw e;
      invalidCode = e.code;
      print(`scan with limit -1 → ${e.code}: ${e.message}`);
    }
    return { got, missing, scanned, size, invalidCode };
  } finally {
    await caller.close();
    await server.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  });
}
