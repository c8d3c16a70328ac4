/**
 * The key-service API used wrongly: registrations, names, typed
 * descriptors, implementations and clients it cannot take. Each fails at
 * once with a typed error and a stable code, never a TypeError from deep
 * inside, a `start()` that never ends, a takeover that fails later, or a
 * value read as something else; and the cluster goes on. Memory network,
 * virtual clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ClusterNode, defineKeyService, keyServiceClient, type KeyServiceRegistration, serveKeyService, silentLogger, VirtualClock } from '@clusterinfra/core';
import { createMemoryNetwork, memory } from '@clusterinfra/transport-mem';
import { allUp, range, type SimCluster, simCluster } from './clms-harness.js';
import { settle } from './keyservices-harness.js';
import { failure, thrown } from './refusals.js';

const invalidArgument = { name: 'InvalidArgumentError', code: 'ICS_ERR_INVALID_ARGUMENT' };
const invalidOption = { name: 'InvalidOptionError', code: 'CONFIG_ERR_INVALID_OPTION' };

/** A node that has not started: registrations are taken, nothing runs. */
const lone = (): ClusterNode => {
  const network = createMemoryNetwork({ seed: 1, clock: new VirtualClock() });
  return new ClusterNode({ nodeNum: 4, clusterName: 'sim', transport: memory({ network, address: 'node-4' }), candidates: [1], seeds: ['node-1'], logger: silentLogger });
};

const good = { name: 'k', subservice: 3, handlers: { ping: () => 'pong' } };

const Echo = defineKeyService({ name: 'echo', subservice: 9, methods: { echo: { kind: 'rpc', input: z.string(), output: z.string() } } });

let s: SimCluster | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

describe('registerKeyService', () => {
  it('refuses a registration it cannot take with InvalidArgumentError, at once', () => {
    const bad: unknown[] = [
      null,
      undefined,
      5,
      { ...good, name: 5 },
      // Served as the ICS service `keyservice.<name>` (1–200 characters): a longer name used to fail start().
      { ...good, name: 'x'.repeat(190) },
      { ...good, subservice: '3' },
      { ...good, subservice: Number.NaN },
      // Announced in the join request, which the master's schema refuses: start() used to never end.
      { ...good, critical: 'yes' },
      { ...good, critical: null },
      { ...good, handlers: { ['m'.repeat(201)]: () => 1 }, idempotent: ['m'.repeat(201)] },
      { ...good, idempotent: 'ping' },
      { ...good, idempotent: 5 },
      { ...good, idempotent: null },
      { ...good, handlers: { 5: () => 1 }, idempotent: [5] },
      // Kept, and failed as a TypeError when called or in a takeover.
      { ...good, handlers: null },
      { ...good, handlers: 5 },
      { ...good, handlers: [() => 1] },
      { ...good, handlers: { ping: 5 } },
      { ...good, failover: 5 },
      { ...good, pullData: 'data' },
      { ...good, failoverData: {} },
      { ...good, handover: true },
    ];
    const node = lone();
    for (const reg of bad) expect(thrown(() => node.registerKeyService(reg as KeyServiceRegistration)), JSON.stringify(reg)?.slice(0, 80)).toEqual(invalidArgument);
    // Two key services on one subservice: the second used to fail start() with ServiceExistsError.
    expect(thrown(() => node.registerKeyService(good))).toBeUndefined();
    expect(thrown(() => node.registerKeyService({ ...good, name: 'k2' }))).toEqual(invalidArgument);
    expect(thrown(() => node.registerKeyService({ ...good, name: 'x'.repeat(189), subservice: 4, critical: false, idempotent: ['ping'], failover: () => {} }))).toBeUndefined();
    void node.close();
  });

  it('refusals while joining leave nothing behind: the node joins, and its good key service is placed and called', async () => {
    s = simCluster(3);
    const node = s.node(2);
    // Registered while joining (the ICS endpoint exists): refused before anything is served.
    expect(thrown(() => node.registerKeyService({ ...good, critical: 'yes' } as unknown as KeyServiceRegistration))).toEqual(invalidArgument);
    expect(thrown(() => node.registerKeyService({ ...good, name: 'x'.repeat(200) }))).toEqual(invalidArgument);
    node.registerKeyService(good);
    await s.until(() => allUp(s!, range(3)) && s!.node(1).keyService('k')?.ready === true, 30_000, 'placement');
    expect(await settle(s, s.node(3).callKeyService('k', 'ping'))).toBe('pong');
  });
});

describe('names and calls', () => {
  it('keyService and unregisterKeyService refuse a name that is not a non-empty string; callKeyService a non-boolean idempotent', async () => {
    s = simCluster(3);
    for (const n of range(3)) s.node(n).registerKeyService(good);
    await s.until(() => allUp(s!, range(3)) && s!.node(1).keyService('k')?.ready === true, 30_000, 'placement');
    const node = s.node(2);
    for (const name of [5, null, undefined, {}, '']) {
      // keyService(5) used to answer undefined, as for a name nobody registers.
      expect(thrown(() => node.keyService(name as string))).toEqual(invalidArgument);
      expect(await failure(node.unregisterKeyService(name as string))).toEqual(invalidArgument);
    }
    // Read as its truthiness, 'no' used to retry a call that may have run.
    for (const idempotent of ['no', 1, null]) expect(await failure(node.callKeyService('k', 'ping', null, { idempotent: idempotent as unknown as boolean }))).toEqual(invalidArgument);
    expect(node.keyService('k')).toMatchObject({ ready: true });
    expect(await settle(s, node.callKeyService('k', 'ping', null, { idempotent: true }))).toBe('pong');
  });
});

describe('typed key services', () => {
  it('defineKeyService refuses what is not a key-service descriptor with InvalidOptionError', () => {
    const method = { kind: 'rpc', input: z.string(), output: z.string() };
    for (const d of [
      null,
      { name: 5, subservice: 9, methods: {} },
      { name: 'x'.repeat(190), subservice: 9, methods: {} },
      { name: 'e', subservice: 0, methods: {} },
      { name: 'e', subservice: 9, methods: null },
      { name: 'e', subservice: 9, methods: { m: { kind: 'oneway', input: z.string() } } },
      { name: 'e', subservice: 9, methods: { m: { kind: 'rpc', input: z.string() } } },
      { name: 'e', subservice: 9, methods: { m: method }, pullData: 5 },
      { name: 'e', subservice: 9, methods: { m: method }, handover: {} },
    ]) {
      expect(thrown(() => defineKeyService(d as never)), JSON.stringify(d)).toEqual(invalidOption);
    }
  });

  it('serveKeyService and keyServiceClient refuse a node, descriptor, implementation or options they cannot take', () => {
    const node = lone();
    const handlers = { echo: (x: string) => x };
    expect(thrown(() => serveKeyService(null as never, Echo, { handlers }))).toEqual(invalidArgument);
    expect(thrown(() => keyServiceClient({} as never, Echo))).toEqual(invalidArgument);
    expect(thrown(() => keyServiceClient(node, null as never))).toEqual(invalidOption);
    const Pulling = defineKeyService({ ...Echo, name: 'pulling', subservice: 10, pullData: z.number() });
    for (const [d, impl, options] of [
      [null, { handlers }, undefined],
      [Echo, null, undefined],
      [Echo, { handlers: null }, undefined],
      // A missing handler used to be a TypeError.
      [Echo, { handlers: {} }, undefined],
      [Echo, { handlers: { echo: 'x' } }, undefined],
      [Echo, { handlers, failover: 5 }, undefined],
      [Echo, { handlers, failoverData: 5 }, undefined],
      // A pullData with no schema was dropped in silence; a schema with no pullData pulled nothing.
      [Echo, { handlers, pullData: () => 1 }, undefined],
      [Pulling, { handlers }, undefined],
      [Echo, { handlers }, null],
    ] as const) {
      expect(thrown(() => serveKeyService(node, d as never, impl as never, options as never))).toEqual(invalidOption);
    }
    expect(thrown(() => serveKeyService(node, Echo, { handlers }, { critical: 1 as never }))).toEqual(invalidArgument);
    expect(thrown(() => serveKeyService(node, Echo, { handlers }))).toBeUndefined();
    expect(thrown(() => serveKeyService(node, Pulling, { handlers, pullData: () => 1 }))).toBeUndefined();
    void node.close();
  });

  it("a typed client refuses options that are not call options before anything is sent, and works after", async () => {
    s = simCluster(3);
    for (const n of range(3)) serveKeyService(s.node(n), Echo, { handlers: { echo: (x) => x } });
    await s.until(() => allUp(s!, range(3)) && s!.node(1).keyService('echo')?.ready === true, 30_000, 'placement');
    const echo = keyServiceClient(s.node(2), Echo);
    // null, 5 and 'abc' used to be spread into options and ignored.
    for (const options of [null, 5, 'abc', { signal: 5 }, { timeoutMs: -1 }, { idempotent: 'yes' }]) {
      expect(await failure(echo.echo('hi', options as never)), JSON.stringify(options)).toEqual(invalidArgument);
    }
    expect(await settle(s, echo.echo('hi', { timeoutMs: 5000 }))).toBe('hi');
  });
});
