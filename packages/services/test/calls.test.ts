/**
 * Services by name over transport-mem under the virtual clock: announcement,
 * policies, retries when a node goes down mid-call, roles, nodes coming and
 * going, typed errors.
 */
import { defineService, isClusterInfraError, NodeDownError } from '@clusterinfra/core';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { isServicesError } from '../src/index.js';
import { range, type SvcCluster, svcCluster } from './harness.js';

const Inventory = defineService({
  name: 'inventory',
  subservice: 50,
  methods: {
    reserve: { kind: 'rpc', input: z.object({ sku: z.string(), hold: z.boolean().optional() }), output: z.object({ by: z.number(), sku: z.string() }) },
    count: { kind: 'rpc', input: z.object({ hold: z.boolean().optional() }), output: z.number(), idempotent: true },
  },
});

let c: SvcCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

const allReady = (cl: SvcCluster, ns: number[]): boolean => ns.every((n) => cl.ready(n));

/** Node `n` serves Inventory; `hold` makes a call wait until `release` is called (or the call is aborted). */
function inventoryOn(cl: SvcCluster, n: number, served: number[], holds: (() => void)[]) {
  let count = 0;
  return cl.svc(n).serve(Inventory, {
    reserve: async ({ sku, hold }, ctx) => {
      served.push(n);
      if (hold) await new Promise<void>((r) => (holds.push(r), ctx.signal.addEventListener('abort', () => r())));
      return { by: n, sku };
    },
    count: async ({ hold }, ctx) => {
      served.push(n);
      if (hold) await new Promise<void>((r) => (holds.push(r), ctx.signal.addEventListener('abort', () => r())));
      return ++count;
    },
  });
}

describe('services by name', () => {
  it('a served service is announced clusterwide; round-robin spreads calls over every node serving it', async () => {
    c = svcCluster(4);
    await c.until(() => allReady(c!, range(4)), 30_000, 'services started');
    const served: number[] = [];
    await c.settle(Promise.all([2, 3, 4].map((n) => inventoryOn(c!, n, served, []))));
    // Announced: every node sees the three providers (the registry acknowledged the writes on every replica).
    for (const n of range(4)) expect(c.svc(n).providers('inventory')).toEqual([2, 3, 4]);
    const inv = c.svc(1).client(Inventory);
    const results = [];
    for (let i = 0; i < 9; i++) results.push(await c.settle(inv.reserve({ sku: `a${i}` })));
    expect(results.map((r) => r.by)).toEqual([2, 3, 4, 2, 3, 4, 2, 3, 4]);
    expect(results[4]).toEqual({ by: 3, sku: 'a4' });
    // The untyped call goes the same way.
    expect(await c.settle(c.svc(1).call('inventory', 'reserve', { sku: 'x' }))).toMatchObject({ sku: 'x' });
  });

  it('prefer-local stays on this node when it serves the name; least-outstanding avoids a busy node', async () => {
    c = svcCluster(3);
    await c.until(() => allReady(c!, range(3)), 30_000, 'services started');
    const served: number[] = [];
    const holds: (() => void)[] = [];
    await c.settle(Promise.all([1, 2, 3].map((n) => inventoryOn(c!, n, served, holds))));
    for (let i = 0; i < 4; i++) expect((await c.settle(c.svc(2).call<{ by: number }>('inventory', 'reserve', { sku: 's' }, { policy: 'prefer-local' }))).by).toBe(2);
    // Three calls held open, each on the node least-outstanding chose: one per node, never two on one.
    served.length = 0;
    const held = [0, 1, 2].map(() => c!.svc(1).call('inventory', 'reserve', { sku: 'h', hold: true }, { policy: 'least-outstanding' }));
    await c.until(() => served.length === 3, 5000, 'three held calls');
    expect([...served].sort()).toEqual([1, 2, 3]);
    for (const r of holds.splice(0)) r();
    await c.settle(Promise.all(held));
  });

  it('a typed error when no node serves a name (or a role), or none announces the method', async () => {
    c = svcCluster(3, { roles: { 2: ['storage'] } });
    await c.until(() => allReady(c!, range(3)), 30_000, 'services started');
    const none = await c.settle(c.svc(1).call('nothing', 'x')).catch((e: unknown) => e);
    expect(isServicesError(none, 'SERVICES_ERR_NO_PROVIDER')).toBe(true);
    expect((none as Error & { retryable: boolean }).retryable).toBe(true);
    await c.settle(inventoryOn(c, 3, [], []));
    const wrongRole = await c.settle(c.svc(1).call('inventory', 'count', {}, { roles: ['storage'] })).catch((e: unknown) => e);
    expect(isServicesError(wrongRole, 'SERVICES_ERR_NO_PROVIDER')).toBe(true);
    const method = await c.settle(c.svc(1).call('inventory', 'nope')).catch((e: unknown) => e);
    expect(isServicesError(method, 'SERVICES_ERR_UNKNOWN_METHOD')).toBe(true);
    const bad = await c.settle(c.svc(1).call('', 'x')).catch((e: unknown) => e);
    expect(isServicesError(bad, 'SERVICES_ERR_INVALID_NAME')).toBe(true);
    expect(() => c!.svc(1).providers('inventory', { roles: [''] })).toThrow(expect.objectContaining({ code: 'SERVICES_ERR_INVALID_ROLES' }));
    const twice = await c.settle(inventoryOn(c, 3, [], [])).catch((e: unknown) => e);
    expect(isServicesError(twice, 'SERVICES_ERR_ALREADY_SERVED')).toBe(true);
    // Invalid arguments are refused at the serving edge, not retried elsewhere.
    const invalid = await c.settle(c.svc(1).call('inventory', 'reserve', { sku: 7 })).catch((e: unknown) => e);
    expect(isClusterInfraError(invalid, 'ICS_ERR_INVALID_ARGUMENT')).toBe(true);
  });

  it('a node that goes down mid-call: an idempotent call is retried on another node, a non-idempotent one fails (it may have run)', async () => {
    c = svcCluster(4);
    await c.until(() => allReady(c!, range(4)), 30_000, 'services started');
    const served: number[] = [];
    const holds: (() => void)[] = [];
    await c.settle(Promise.all([3, 4].map((n) => inventoryOn(c!, n, served, holds))));
    // Round-robin from node 1: the first call goes to node 3, where it is held.
    const idem = c.svc(1).client(Inventory).count({ hold: true });
    await c.until(() => served.includes(3), 5000, 'the call on node 3');
    const plain = c.svc(2).call('inventory', 'reserve', { sku: 'p', hold: true }).catch((e: unknown) => e);
    await c.until(() => served.filter((n) => n === 3).length === 2, 5000, 'the second call on node 3');
    c.kill(3);
    // The idempotent call goes to node 4 (held there too: released once it arrives).
    await c.until(() => served.includes(4), 30_000, 'the retry on node 4');
    holds.splice(0).forEach((r) => r());
    expect(await c.settle(idem)).toBe(1);
    // The link's reset (UnavailableError) or the nodedown, whichever node 2 sees first: both say it may have run.
    const err = await c.settle(plain);
    if (err instanceof NodeDownError) expect(err.sent).toBe('may-have-run');
    else expect(err).toMatchObject({ code: 'ICS_ERR_UNAVAILABLE', mayHaveRun: true });
    // Not retried: node 4 ran only the idempotent call.
    expect(served.filter((n) => n === 4)).toHaveLength(1);
    expect(c.svc(1).stats().retries).toBeGreaterThanOrEqual(1);
    // The registry removes node 3's announcement with its incarnation; it stays out of every choice.
    await c.until(() => [1, 2, 4].every((n) => c!.svc(n).providers('inventory').join() === '4'), 30_000, 'node 3 withdrawn');
    expect(c.svc(1).stats().pending).toBe(0);
  });

  it('nodes coming and going: a restarted node serves again as a new incarnation and calls reach it', async () => {
    c = svcCluster(3);
    await c.until(() => allReady(c!, range(3)), 30_000, 'services started');
    const served: number[] = [];
    await c.settle(Promise.all([2, 3].map((n) => inventoryOn(c!, n, served, []))));
    c.kill(2);
    await c.until(() => c!.svc(1).providers('inventory').join() === '3', 30_000, 'node 2 gone');
    for (let i = 0; i < 3; i++) expect((await c.settle(c.svc(1).call<{ by: number }>('inventory', 'reserve', { sku: 'k' }))).by).toBe(3);
    c.start(2);
    await c.until(() => c!.ready(2), 30_000, 'node 2 back');
    await c.settle(inventoryOn(c, 2, served, []));
    await c.until(() => c!.svc(1).providers('inventory').join() === '2,3', 30_000, 'node 2 announced again');
    const bys = [];
    for (let i = 0; i < 4; i++) bys.push((await c.settle(c.svc(1).call<{ by: number }>('inventory', 'reserve', { sku: 'k' }))).by);
    expect([...bys].sort()).toEqual([2, 2, 3, 3]);
    // Unregistering withdraws the announcement everywhere.
    const s3 = c.svc(3);
    await c.settle(s3.close());
    await c.until(() => c!.svc(1).providers('inventory').join() === '2', 30_000, 'node 3 withdrawn');
  });

  it('roles: a service restricted to a role is served only on nodes with it; calls can ask for a role', async () => {
    c = svcCluster(4, { roles: { 2: ['storage'], 3: ['storage', 'frontend'], 4: ['frontend'] } });
    await c.until(() => allReady(c!, range(4)), 30_000, 'services started');
    const served: number[] = [];
    const handles = await c.settle(Promise.all(range(4).map((n) => c!.svc(n).serve(Inventory, {
      reserve: ({ sku }) => (served.push(n), { by: n, sku }),
      count: () => n,
    }, { roles: ['storage'] }))));
    expect(handles.map((h) => h.active)).toEqual([false, true, true, false]);
    expect(c.svc(1).providers('inventory')).toEqual([2, 3]);
    // Every node sees every node's roles (member metadata).
    expect(c.svc(1).rolesOf(3)).toEqual(['storage', 'frontend']);
    expect(c.svc(4).nodesWithRole('frontend')).toEqual([3, 4]);
    expect(c.svc(1).roles).toEqual([]);
    for (let i = 0; i < 3; i++) expect(await c.settle(c.svc(1).client(Inventory).count({}, { roles: ['frontend'] }))).toBe(3);
  });
});
