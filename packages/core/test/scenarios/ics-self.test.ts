/**
 * A node calling its own services: served by the local pool without a link,
 * with the semantics of a call to another node (issue 15, section 4).
 */
import { afterEach, expect, it, describe } from 'vitest';
import { z } from 'zod';
import {
  CancelledError,
  client,
  DeadlineExceededError,
  defineService,
  flushMicrotasks,
  type HandlerContext,
  IcsStatusError,
  InvalidArgumentError,
  MessageTooLargeError,
  NotFoundError,
  NotSerializableError,
  RemoteInternalError,
  ResourceExhaustedError,
  serve,
  VirtualClock,
} from '@clusterinfra/core';
import { deferred, makeCluster, type TestCluster } from './harness.js';

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const ECHO = { channel: 'default', subservice: 1 };
const OTHER = { channel: 'default', subservice: 2 };

/** Two nodes on a memory network; tests talk from node 1 to itself. */
async function oneNode<C extends VirtualClock | undefined>(clock: C, extra = {}) {
  cluster = await makeCluster('memory', 2, { ...(clock ? { clock } : {}), extra: () => extra });
  return { a: cluster.node(1), clock };
}

/** A handler that runs until its signal aborts. */
const hang = (_x: unknown, ctx: HandlerContext): Promise<never> =>
  new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error)));

describe('ICS calls to the local node', () => {
  it('answers at once, without a link and without the clock moving', async () => {
    const { a, clock } = await oneNode(new VirtualClock());
    let seen: HandlerContext | undefined;
    a.registerService({
      ...ECHO,
      name: 'echo',
      handlers: {
        echo: (args, ctx) => {
          seen = ctx;
          return { got: args };
        },
      },
    });
    const t0 = clock.now();
    let result: unknown;
    void a.call(1, ECHO, 'echo', { x: 1 }).then((r) => (result = r));
    await flushMicrotasks();
    expect(result).toEqual({ got: { x: 1 } });
    expect(clock.now()).toBe(t0);
    expect(a.isConnected(1)).toBe(false);
    expect(a.stats().messagesSent).toBe(0);
    expect(a.stats().pendingCalls).toBe(0);
    expect(seen?.caller).toEqual({ nodeNum: 1, incarnation: a.incarnation });
    expect(seen?.priority).toBe(false);
  });

  it('copies arguments and results as a link would (large binaries too)', async () => {
    const { a } = await oneNode(undefined, { bulkThreshold: 1024 });
    const kept: { args?: { list: number[]; bin: Uint8Array } } = {};
    const result = { list: [1, 2] };
    a.registerService({
      ...ECHO,
      name: 'echo',
      handlers: {
        keep: (x) => {
          const args = x as { list: number[]; bin: Uint8Array };
          kept.args = args;
          args.list.push(99);
          args.bin[0] = 7;
          return result;
        },
      },
    });
    const args = { list: [1], bin: new Uint8Array(4096).fill(1), gone: undefined };
    const r = await a.call<{ list: number[] }>(1, ECHO, 'keep', args);
    expect(args.list).toEqual([1]);
    expect(args.bin[0]).toBe(1);
    expect(kept.args?.bin).not.toBe(args.bin);
    expect(kept.args?.bin.byteLength).toBe(4096);
    r.list.push(3);
    expect(result.list).toEqual([1, 2]);
  });

  it('gives the same typed errors as a remote call', async () => {
    const { a } = await oneNode(undefined, { maxMessageSize: 64 * 1024 });
    a.registerService({
      ...ECHO,
      name: 'echo',
      handlers: {
        boom: () => {
          throw new Error('disk on fire');
        },
        status: () => {
          throw new IcsStatusError('NOT_FOUND', 'no such row');
        },
        func: () => () => 1,
      },
    });
    await expect(a.call(1, OTHER, 'echo')).rejects.toBeInstanceOf(NotFoundError);
    await expect(a.call(1, ECHO, 'nope')).rejects.toBeInstanceOf(NotFoundError);
    await expect(a.call(1, ECHO, 'toString')).rejects.toBeInstanceOf(NotFoundError);
    const boom = await a.call(1, ECHO, 'boom').catch((e: unknown) => e);
    expect(boom).toBeInstanceOf(RemoteInternalError);
    expect((boom as Error).message).toContain('disk on fire');
    await expect(a.call(1, ECHO, 'status')).rejects.toBeInstanceOf(NotFoundError);
    await expect(a.call(1, ECHO, 'boom', { f: () => 1 })).rejects.toBeInstanceOf(NotSerializableError);
    await expect(a.call(1, ECHO, 'boom', 'x'.repeat(70 * 1024))).rejects.toBeInstanceOf(MessageTooLargeError);
    const func = await a.call(1, ECHO, 'func').catch((e: unknown) => e);
    expect(func).toBeInstanceOf(RemoteInternalError);
    expect((func as Error).message).toContain('result not sendable');
    expect(a.stats().pendingCalls).toBe(0);
  });

  it('validates arguments through a typed client bound to the local node', async () => {
    const { a } = await oneNode(undefined);
    const Counter = defineService({
      name: 'counter',
      channel: 'default',
      subservice: 3,
      methods: { add: { kind: 'rpc', input: z.object({ n: z.number().int() }), output: z.object({ total: z.number() }) } },
    });
    let total = 0;
    serve(a, Counter, { add: ({ n }) => ({ total: (total += n) }) });
    const c = client(a, Counter, 1);
    await expect(c.add({ n: 2 })).resolves.toEqual({ total: 2 });
    await expect(c.add({ n: 1.5 } as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    const multi = await a.multicast([1, 2], { channel: 'default', subservice: 3 }, 'add', { n: 1 });
    expect(multi.results.get(1)).toEqual({ ok: true, value: { total: 3 } });
    expect(multi.results.get(2)?.ok).toBe(false);
  });

  it('keeps its deadline and aborts the handler when it passes', async () => {
    const { a, clock } = await oneNode(new VirtualClock());
    let signal: AbortSignal | undefined;
    a.registerService({ ...ECHO, name: 'echo', handlers: { hang: (x, ctx) => ((signal = ctx.signal), hang(x, ctx)) } });
    const p = a.call(1, ECHO, 'hang', null, { timeoutMs: 1000 }).catch((e: unknown) => e);
    await flushMicrotasks();
    expect(signal?.aborted).toBe(false);
    await clock.advance(1000);
    expect(await p).toBeInstanceOf(DeadlineExceededError);
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toBeInstanceOf(DeadlineExceededError);
    expect(a.stats().pendingCalls).toBe(0);
  });

  it('forwards cancellation to the handler', async () => {
    const { a } = await oneNode(undefined);
    const started = deferred();
    let signal: AbortSignal | undefined;
    a.registerService({
      ...ECHO,
      name: 'echo',
      handlers: { hang: (x, ctx) => ((signal = ctx.signal), started.resolve(), hang(x, ctx)) },
    });
    const handle = a.request(1, ECHO, 'hang');
    await started.promise;
    handle.cancel('changed my mind');
    await expect(handle.result()).rejects.toBeInstanceOf(CancelledError);
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toBeInstanceOf(CancelledError);
    const ac = new AbortController();
    ac.abort();
    await expect(a.call(1, ECHO, 'hang', null, { signal: ac.signal })).rejects.toBeInstanceOf(CancelledError);
  });

  it('goes through the handler pool, and raises calls made from a handler to priority', async () => {
    const { a } = await oneNode(undefined);
    const release = deferred();
    let innerPriority: boolean | undefined;
    a.registerService({
      ...ECHO,
      name: 'echo',
      pool: { max: 1, queue: 0, priorityReserve: 1 },
      handlers: {
        slow: () => release.promise.then(() => 'slow'),
        inner: (_x, ctx) => ((innerPriority = ctx.priority), 'inner'),
      },
    });
    a.registerService({ ...OTHER, name: 'outer', handlers: { outer: () => a.call(1, ECHO, 'inner') } });
    const slow = a.call(1, ECHO, 'slow');
    await flushMicrotasks();
    // The pool is full: a plain call is refused, a call from a handler takes the reserve.
    await expect(a.call(1, ECHO, 'inner')).rejects.toBeInstanceOf(ResourceExhaustedError);
    await expect(a.call(1, OTHER, 'outer')).resolves.toBe('inner');
    expect(innerPriority).toBe(true);
    release.resolve();
    await expect(slow).resolves.toBe('slow');
  });

  it('delivers one-way messages locally; an undeliverable one is an error for send and a counted drop for trySend', async () => {
    const { a } = await oneNode(undefined);
    const got: unknown[] = [];
    a.registerService({ ...ECHO, name: 'echo', handlers: { note: (x) => void got.push(x) } });
    await a.send(1, ECHO, 'note', { n: 1 });
    expect(a.trySend(1, ECHO, 'note', { n: 2 })).toBe(true);
    expect(got).toEqual([{ n: 1 }, { n: 2 }]);
    await expect(a.send(1, OTHER, 'note')).rejects.toBeInstanceOf(NotFoundError);
    const before = a.stats().dropped;
    a.trySend(1, OTHER, 'note');
    expect(a.stats().dropped).toBe(before + 1);
  });
});
