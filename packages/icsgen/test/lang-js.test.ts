/**
 * `--lang js`: the emitted JavaScript (test/golden-js/*.gen.js) is plain
 * JavaScript that Node parses and that runs: loaded here, its descriptors
 * serve and call a service over transport-mem and a key service on a
 * two-node cluster. Its declarations (*.gen.d.ts) type-check under the
 * repo's strict settings, and code using them gets the same types as from
 * the TypeScript output (the @ts-expect-error lines fail if they were loose).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ClusterNode,
  client,
  createIcs,
  InvalidArgumentError,
  keyServiceClient,
  serve,
  serveKeyService,
  silentLogger,
  VirtualClock,
} from '@clusterinfra/core';
import { createMemoryNetwork, memory } from '@clusterinfra/transport-mem';
import { Ledger, type LedgerImpl } from './golden-js/ledger.gen.js';
import { Store, type StoreImpl } from './golden-js/store.gen.js';
import { repoTempDir, TSC_CEILING_MS, typecheck } from './helpers.js';

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));
const GOLDEN_JS = ['common', 'store', 'ledger'];

const USAGE = `
import { client, keyServiceClient, serve, serveKeyService, type ClusterNode, type Ics } from '@clusterinfra/core';
import { Store, type StoreImpl, type StoreLoadArgs } from './store.gen.js';
import { Ledger, Clock, type LedgerImpl, type ClockImpl, type LedgerDepositArgs } from './ledger.gen.js';
import { type Level } from './common.gen.js';

declare const ics: Ics;
declare const node: ClusterNode;
const impl: StoreImpl = {
  load: () => null,
  save: async () => {},
  count: () => 3,
  echo: ({ value }) => value,
  ratio: ({ a, b }) => a / b,
  touch: () => {},
};
serve(ics, Store, impl);
const ledgerImpl: LedgerImpl = {
  handlers: {
    deposit: ({ account, cents }, ctx) => ({ account, cents: String(cents + ctx.epoch) }),
    balance: () => null,
    reset: () => {},
  },
  pullData: () => ({ a: 1 }),
  handover: () => [{ account: 'a', cents: '1' }],
  failoverData: ({ pulled, handover, rejected }) => {
    const n: number | undefined = pulled.get(2)?.['a'];
    const cents: string | undefined = handover?.data[0]?.cents;
    const why: string | undefined = rejected.get(3);
    void [n, cents, why];
  },
};
serveKeyService(node, Ledger, ledgerImpl, { critical: true });
// A key service that declares no data takes no pullData.
// @ts-expect-error Clock pulls nothing
const clockImpl: ClockImpl = { handlers: { now: () => 1 }, pullData: () => 1 };
export async function use(): Promise<void> {
  const n: number = await client(ics, Store, 2).count({});
  const balance = await keyServiceClient(node, Ledger).balance({ account: 'a' });
  const cents: string | undefined = balance?.cents;
  const level: Level = 'high';
  // @ts-expect-error bigint travels as a decimal string
  const bad: StoreLoadArgs = { id: 5n };
  // @ts-expect-error cents is an int
  const badDeposit: LedgerDepositArgs = { account: 'a', cents: '5' };
  // @ts-expect-error unknown method
  await keyServiceClient(node, Ledger).withdraw({});
  // @ts-expect-error unknown enum value
  const badLevel: Level = 'medium';
  void [n, cents, level, bad, badDeposit, badLevel, clockImpl];
}
`;

describe('--lang js output', () => {
  it('is JavaScript that node parses (no TypeScript syntax left)', () => {
    for (const name of GOLDEN_JS) {
      const r = spawnSync(process.execPath, ['--check', here(`./golden-js/${name}.gen.js`)], { encoding: 'utf8' });
      expect(r.stderr, name).toBe('');
      expect(r.status, name).toBe(0);
    }
  });

  describe('declarations type-check under strict, with code that uses them', () => {
    let dir: string;
    beforeAll(() => {
      dir = repoTempDir('.tmp-lang-js-');
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('tsc reports no diagnostics', () => {
      // As .ts files: skipLibCheck would not look inside a .d.ts, and `declare` is valid in a .ts too.
      const files = GOLDEN_JS.map((name) => {
        const path = join(dir, `${name}.gen.ts`);
        writeFileSync(path, readFileSync(here(`./golden-js/${name}.gen.d.ts`), 'utf8'));
        return path;
      });
      const usage = join(dir, 'usage.ts');
      writeFileSync(usage, USAGE);
      const diagnostics = typecheck([...files, usage]);
      expect(diagnostics).toEqual([]);
    }, TSC_CEILING_MS);
  });

  it('loaded, its service descriptor serves and calls over transport-mem, refusing bad arguments', async () => {
    const network = createMemoryNetwork({ seed: 3 });
    const make = (n: number) => createIcs({ transport: memory({ network, address: `js${n}` }), clusterName: 'js', nodeNum: n, peers: (x) => `js${x}`, channels: [] });
    const server = make(1);
    const caller = make(2);
    await server.start();
    await caller.start();
    try {
      let loads = 0;
      const impl: StoreImpl = {
        load: ({ id }) => {
          loads++;
          return { id, author: { name: 'js', node: 1 }, level: 'low', meta: null, scores: {}, history: null };
        },
        save: () => {},
        count: () => 0,
        echo: ({ value }) => value,
        ratio: ({ a, b }) => a / b,
        touch: () => {},
      };
      serve(server, Store, impl);
      const store = client(caller, Store, 1);
      expect((await store.load({ id: '42' }))?.author).toEqual({ name: 'js', node: 1 });
      const err = await store.load({ id: 'forty-two' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect(loads).toBe(1);
    } finally {
      await caller.close();
      await server.close();
    }
  });

  it('loaded, its key-service descriptor is hosted on one node and called by name from another', async () => {
    const clock = new VirtualClock();
    const network = createMemoryNetwork({ seed: 4, clock });
    const nodes = [1, 2].map(
      (n) =>
        new ClusterNode({
          nodeNum: n,
          clusterName: 'js-ks',
          transport: memory({ network, address: `ks${n}` }),
          candidates: [1],
          seeds: [`ks${3 - n}`],
          preset: 'local',
          clock,
          logger: silentLogger,
        }),
    );
    const balances: Record<string, bigint> = {};
    const impl: LedgerImpl = {
      handlers: {
        deposit: ({ account, cents }) => {
          balances[account] = (balances[account] ?? 0n) + BigInt(cents);
          return { account, cents: String(balances[account]) };
        },
        balance: ({ account }) => (balances[account] === undefined ? null : { account, cents: String(balances[account]) }),
        reset: () => {},
      },
      pullData: () => ({}),
      handover: () => [],
    };
    serveKeyService(nodes[1]!, Ledger, impl, { critical: true });
    try {
      for (const n of nodes) void n.start().catch(() => {});
      expect(await clock.advanceUntil(() => nodes.every((n) => n.keyService('Ledger')?.ready === true), 30_000)).toBe(true);
      const ledger = keyServiceClient(nodes[0]!, Ledger);
      let out: unknown;
      void ledger.deposit({ account: 'a', cents: 250 }).then((v) => (out = v));
      expect(await clock.advanceUntil(() => out !== undefined, 10_000)).toBe(true);
      expect(out).toEqual({ account: 'a', cents: '250' });
      let refused: unknown;
      void ledger.deposit({ account: 'a', cents: 2.5 }).catch((e: unknown) => (refused = e));
      expect(await clock.advanceUntil(() => refused !== undefined, 10_000)).toBe(true);
      expect(refused).toBeInstanceOf(InvalidArgumentError);
      expect(balances).toEqual({ a: 250n });
    } finally {
      // Closing waits on timers of the virtual clock.
      let closed = false;
      const closing = Promise.all(nodes.map((n) => n.close())).then(() => (closed = true));
      await clock.advanceUntil(() => closed, 60_000);
      await closing;
    }
  });
});
