/**
 * The round trip: the generated code type-checks under the repo's strict
 * settings, and a service generated from the fixture is served on one node
 * and called from another over transport-mem.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, createIcs, type Ics, InvalidArgumentError, serve } from '@clusterinfra/core';
import { createMemoryNetwork, memory } from '@clusterinfra/transport-mem';
import { plainData } from '../src/runtime.js';
import { generate, writeGenerated } from '../src/index.js';
import { type Doc, Store, Audit, type StoreImpl, type AuditImpl } from './golden/store.gen.js';
import { repoTempDir, TSC_CEILING_MS, typecheck } from './helpers.js';

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));

/** Code that uses the generated API; the @ts-expect-error lines fail if the types were loose. */
const USAGE = `
import { client, serve, type Ics } from '@clusterinfra/core';
import { Store, type StoreImpl, type StoreLoadArgs, type Doc, Doc as DocSchema } from './store.gen.js';
import { type Level } from './common.gen.js';

declare const ics: Ics;
const impl: StoreImpl = {
  load: ({ id }) => (id === '0' ? null : null),
  save: async () => {},
  count: () => 3,
  echo: ({ value }) => value,
  ratio: ({ a, b }) => a / b,
  touch: () => {},
};
serve(ics, Store, impl);
const store = client(ics, Store, 2);
export async function use(): Promise<void> {
  const doc: Doc | null = await store.load({ id: '12345678901234567890' });
  const none: null = await store.save({ doc: doc!, expectedRevision: 1 });
  const n: number = await store.count({});
  const level: Level = 'high';
  DocSchema.parse({});
  // @ts-expect-error bigint travels as a decimal string
  const bad: StoreLoadArgs = { id: 5n };
  // @ts-expect-error unknown enum value
  const badLevel: Level = 'medium';
  // @ts-expect-error a one-way message has no $request
  store.$request('touch', { id: '1' });
  void [none, n, level, bad, badLevel];
}
`;

describe('generated code type-checks under strict', () => {
  let dir: string;
  beforeAll(() => {
    dir = repoTempDir('.tmp-roundtrip-');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('tsc reports no diagnostics for the generated files and code using them', () => {
    const result = generate([here('./fixtures/store.ics')]);
    expect(result.errors).toEqual([]);
    const written = writeGenerated(dir, result.files);
    const usage = join(dir, 'usage.ts');
    writeFileSync(usage, USAGE);
    const diagnostics = typecheck([...written, usage]);
    expect(diagnostics).toEqual([]);
  }, TSC_CEILING_MS);
});

describe('served on one node, called from another (transport-mem)', () => {
  const channels = [{ name: 'audit-log', number: 40 }];
  let server: Ics;
  let caller: Ics;
  const records: { doc: Doc; level?: string }[] = [];
  let recorded: () => void = () => {};
  const saved: Doc[] = [];

  beforeAll(async () => {
    const network = createMemoryNetwork({ seed: 7 });
    const make = (n: number): Ics =>
      createIcs({ transport: memory({ network, address: `n${n}` }), clusterName: 'rt', nodeNum: n, peers: (x) => `n${x}`, channels });
    server = make(1);
    caller = make(2);
    await server.start();
    await caller.start();
    const store: StoreImpl = {
      load: ({ id }) => {
        // The server gets the bigint as a validated decimal string.
        const big = BigInt(id);
        return big === 0n ? null : { id: (big + 1n).toString(), author: { name: 'ada', node: 1 }, level: 'high', meta: { nested: [1, 'two', null, new Uint8Array([3])] }, scores: { a: 0.5, b: null }, history: null };
      },
      save: ({ doc }) => {
        saved.push(doc);
      },
      count: () => saved.length,
      echo: ({ value, blob, nothing }) => ({ value, size: blob.length, nothing: Object.keys(nothing).length }),
      ratio: ({ a, b }) => a / b,
      touch: () => {},
    };
    const audit: AuditImpl = {
      record: (args) => {
        records.push(args);
        recorded();
      },
      levels: () => ({ all: ['low', 'high'] }),
    };
    serve(server, Store, store);
    serve(server, Audit, audit);
  });
  afterAll(async () => {
    await caller?.close();
    await server?.close();
  });

  it('calls rpc methods with typed arguments and results', async () => {
    const store = client(caller, Store, 1);
    const doc = await store.load({ id: '18446744073709551615' });
    expect(doc).toEqual({
      id: '18446744073709551616',
      author: { name: 'ada', node: 1 },
      level: 'high',
      meta: { nested: [1, 'two', null, new Uint8Array([3])] },
      scores: { a: 0.5, b: null },
      history: null,
    });
    expect(await store.load({ id: '0' })).toBeNull();
    expect(await store.save({ doc: { ...doc!, parent: { ...doc!, history: [] } } })).toBeNull();
    expect(saved[0]?.parent?.history).toEqual([]);
    expect(await store.count({})).toBe(1);
    expect(await store.ratio({ a: 1, b: 4 })).toBe(0.25);
    expect(await store.echo({ value: [true, { k: 'v' }], blob: new Uint8Array(5), nothing: {} })).toEqual({ value: [true, { k: 'v' }], size: 5, nothing: 0 });
    expect(await store.$request('count', {}).result()).toBe(1);
  });

  it('uses the channel named in the IDL, and one-way messages arrive', async () => {
    const audit = client(caller, Audit, 1);
    expect(await audit.levels({})).toEqual({ all: ['low', 'high'] });
    const arrived = new Promise<void>((resolve) => (recorded = resolve));
    await audit.record({ doc: { id: '1', author: { name: 'b', node: 2 }, level: 'low', meta: null, scores: {}, history: [] }, level: 'low' });
    await arrived;
    expect(records).toHaveLength(1);
    expect(records[0]?.level).toBe('low');
  });

  it('rejects invalid arguments at the server with INVALID_ARGUMENT', async () => {
    const store = client(caller, Store, 1);
    const cases: [string, unknown, string][] = [
      ['load', { id: '12x' }, 'id'],
      ['load', { id: 12 }, 'id'],
      ['load', {}, 'id'],
      ['ratio', { a: 1, b: '2' }, 'b'],
      ['save', { doc: { id: '1', author: { name: 'a', node: -1 }, level: 'low', meta: null, scores: {}, history: null } }, 'doc.author.node'],
      ['save', { doc: { id: '1', author: { name: 'a', node: 1 }, level: 'medium', meta: null, scores: {}, history: null } }, 'doc.level'],
      ['save', { doc: { id: '1', author: { name: 'a', node: 1 }, level: 'low', meta: null, scores: {}, history: [{ at: 1.5 }] } }, 'doc.history.0.at'],
    ];
    for (const [method, args, path] of cases) {
      const call = caller.call(1, { channel: 'default', subservice: 7 }, method, args);
      const error = await call.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, `${method} ${JSON.stringify(args)}`).toBeInstanceOf(InvalidArgumentError);
      expect((error as InvalidArgumentError).code).toBe('ICS_ERR_INVALID_ARGUMENT');
      expect(((error as InvalidArgumentError).details as { path: string }[]).map((d) => d.path)).toContain(path);
    }
    expect(saved).toHaveLength(1);
  });
});

describe('runtime: the any type accepts plain data only', () => {
  it('accepts what the wire carries and refuses the rest', () => {
    const good: unknown[] = [null, true, 1.5, 'x', new Uint8Array(1), [1, [2]], { a: { b: [null] } }, Object.create(null)];
    good.forEach((v, i) => expect(plainData.safeParse(v).success, `good[${i}]`).toBe(true));
    const bad: unknown[] = [undefined, 1n, new Date(), new Map(), { d: new Date() }, [() => 1], Number.NaN, new (class X {})()];
    bad.forEach((v, i) => expect(plainData.safeParse(v).success, `bad[${i}]`).toBe(false));
  });
});
