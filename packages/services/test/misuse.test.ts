/**
 * Misuse of the services API fails at once with a typed error
 * (SERVICES_ERR_INVALID_ARGUMENT, or the name and role codes), before
 * anything is served, announced, subscribed or sent: not as a TypeError from
 * inside, and not by doing something else (an unknown policy or delivery
 * used to be taken as another one).
 */
import { defineService } from '@clusterinfra/core';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createServices, type Services, withRoles } from '../src/index.js';
import { range, type SvcCluster, svcCluster } from './harness.js';

const Inv = defineService({ name: 'inv', subservice: 50, methods: { get: { kind: 'rpc', input: z.object({}), output: z.number() } } });

let c: SvcCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

/** The code `f` throws, or its promise rejects with, without time moving (undefined when it succeeds). */
async function codeOf(f: () => unknown): Promise<unknown> {
  let p: unknown;
  try {
    p = f();
  } catch (e) {
    return (e as { code?: unknown }).code ?? (e as Error).name;
  }
  if (!(p instanceof Promise)) return undefined;
  let settled = false;
  const out = p.then(
    () => undefined,
    (e: unknown) => (e as { code?: unknown }).code ?? (e as Error).name,
  );
  void out.then(() => (settled = true));
  for (let i = 0; i < 5 && !settled; i++) await new Promise((r) => setImmediate(r));
  expect(settled, 'a refusal is immediate').toBe(true);
  return out;
}

const BAD = 'SERVICES_ERR_INVALID_ARGUMENT';

describe('misuse', () => {
  it('each public method refuses what it cannot take with a typed error, and does nothing', async () => {
    c = svcCluster(2);
    await c.until(() => range(2).every((n) => c!.ready(n)), 30_000, 'services started');
    const s: Services = c.svc(1);
    await c.settle(c.svc(2).serve(Inv, { get: () => 2 }));
    const registry = (s as unknown as { registry: never }).registry;
    const bad = (x: unknown) => x as never;
    const cases: [string, () => unknown, unknown][] = [
      ['createServices(null)', () => createServices(bad(null), { registry, subservice: 60 }), BAD],
      ['a pool ICS would refuse', () => createServices(c!.node(1), { registry, subservice: 60, pool: { max: -1 } }), 'CONFIG_ERR_INVALID_OPTION'],
      ['start(null)', () => s.start(bad(null)), BAD],
      ['start({ signal: 5 })', () => s.start({ signal: bad(5) }), BAD],
      ['serve(null, impl)', () => s.serve(bad(null), bad({})), BAD],
      ['serve(descriptor, impl, null)', () => s.serve(Inv, { get: () => 1 }, bad(null)), BAD],
      ['register(null)', () => s.register(bad(null)), BAD],
      ['register without handlers', () => s.register({ name: 'r', subservice: 70, handlers: bad(null) }), BAD],
      ['register, idempotent a string', () => s.register({ name: 'r', subservice: 70, handlers: { count: () => 1 }, idempotent: bad('count') }), BAD],
      ['register, idempotent an unknown method', () => s.register({ name: 'r', subservice: 70, handlers: { count: () => 1 }, idempotent: ['nope'] }), BAD],
      ['call, method 5', () => s.call('inv', bad(5)), BAD],
      ['call, options null', () => s.call('inv', 'get', {}, bad(null)), BAD],
      ['call, unknown policy', () => s.call('inv', 'get', {}, { policy: bad('fastest') }), BAD],
      ['call, attempts "x"', () => s.call('inv', 'get', {}, { attempts: bad('x') }), BAD],
      ['call, attempts 0', () => s.call('inv', 'get', {}, { attempts: 0 }), BAD],
      ['call, idempotent "yes"', () => s.call('inv', 'get', {}, { idempotent: bad('yes') }), BAD],
      ['call, signal 5', () => s.call('inv', 'get', {}, { signal: bad(5) }), BAD],
      ['call, timeoutMs -1', () => s.call('inv', 'get', {}, { timeoutMs: -1 }), BAD],
      ['client(null)', () => s.client(bad(null)), BAD],
      ['client, unknown policy', () => s.client(Inv, { policy: bad('x') }), BAD],
      ['a client call, options null', () => s.client(Inv).get({}, bad(null)), BAD],
      ['providers(5)', () => s.providers(bad(5)), 'SERVICES_ERR_INVALID_NAME'],
      ['providers(name, null)', () => s.providers('inv', bad(null)), BAD],
      ['subscribe, handler null', () => s.subscribe('t', bad(null)), BAD],
      ['subscribe, options null', () => s.subscribe('t', () => {}, bad(null)), BAD],
      ['subscribe, signal 5', () => s.subscribe('t', () => {}, { signal: bad(5) }), BAD],
      ['subscribe, signal aborted', () => s.subscribe('t', () => {}, { signal: AbortSignal.abort() }), 'CORE_ERR_ABORTED'],
      ['publish, options null', () => s.publish('t', 1, bad(null)), BAD],
      ['publish, unknown delivery', () => s.publish('t', 1, { delivery: bad('all') }), BAD],
      ['publish, confirm "yes"', () => s.publish('t', 1, { confirm: bad('yes') }), BAD],
      ['publish, signal 5', () => s.publish('t', 1, { signal: bad(5) }), BAD],
      ['subscribers(5)', () => s.subscribers(bad(5)), 'SERVICES_ERR_INVALID_NAME'],
      ['rolesOf("2")', () => s.rolesOf(bad('2')), BAD],
      ['withRoles(roles, 5)', () => withRoles(['a'], bad(5)), BAD],
    ];
    for (const [what, f, code] of cases) expect(await codeOf(f), what).toBe(code);
    // Nothing was done: no subscription, nothing served or published, no call made.
    expect(s.stats()).toMatchObject({ calls: 0, published: 0 });
    expect((s as unknown as { subCount: number }).subCount).toBe(0);
    expect(s.providers('r')).toEqual([]);
    // The same calls, valid, work.
    expect(await c.settle(s.call('inv', 'get', {}, { policy: 'least-outstanding', attempts: 2, idempotent: true }))).toBe(2);
    expect(await c.settle(s.client(Inv, { policy: 'prefer-local' }).get({}))).toBe(2);
  });
});
