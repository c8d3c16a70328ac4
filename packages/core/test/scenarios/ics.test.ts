import { afterEach, expect, it } from 'vitest';
import { z } from 'zod';
import {
  CancelledError,
  client,
  DeadlineExceededError,
  defineService,
  type HandlerContext,
  IcsStatusError,
  InvalidArgumentError,
  InvalidOptionError,
  NodeDownError,
  NotFoundError,
  NotSerializableError,
  RemoteError,
  RemoteInternalError,
  ResourceExhaustedError,
  serve,
  serviceId,
} from '@clusterinfra/core';
import { memory, createMemoryNetwork } from '@clusterinfra/transport-mem';
import { createIcs } from '@clusterinfra/core';
import { deferred, forEachTransport, makeCluster, type TestCluster } from './harness.js';

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const ECHO = { channel: 'default', subservice: 1 };

forEachTransport('ICS', (kind) => {
  it('answers a synchronous RPC with plain data both ways', async () => {
    cluster = await makeCluster(kind, 2);
    const [a, b] = cluster.nodes as [ReturnType<TestCluster['node']>, ReturnType<TestCluster['node']>];
    let seen: HandlerContext | undefined;
    b.registerService({
      ...ECHO,
      name: 'echo',
      handlers: {
        echo: (args, ctx) => {
          seen = ctx;
          return { got: args, from: ctx.caller.nodeNum };
        },
      },
    });
    const args = { s: 'héllo ✓', n: 42.5, list: [1, null, true], bin: new Uint8Array([1, 2, 3]), nested: { deep: { x: -1 } } };
    const res = await a.call<{ got: typeof args; from: number }>(2, ECHO, 'echo', args);
    expect(res.from).toBe(1);
    expect(res.got.s).toBe(args.s);
    expect(res.got.nested).toEqual(args.nested);
    expect([...res.got.bin]).toEqual([1, 2, 3]);
    expect(seen?.caller.incarnation).toBe(a.incarnation);
    expect(seen?.priority).toBe(false);
    expect(seen?.oneWay).toBe(false);
    expect(a.stats().pendingCalls).toBe(0);
  });

  it('gives a typed NOT_FOUND for an unknown service or method', async () => {
    cluster = await makeCluster(kind, 2);
    const a = cluster.node(1);
    cluster.node(2).registerService({ ...ECHO, name: 'echo', handlers: { echo: (x) => x } });
    await expect(a.call(2, { channel: 'default', subservice: 99 }, 'echo')).rejects.toBeInstanceOf(NotFoundError);
    const err = await a.call(2, ECHO, 'nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as NotFoundError).code).toBe('ICS_ERR_NOT_FOUND');
    // Prototype names are not methods.
    await expect(a.call(2, ECHO, 'toString')).rejects.toBeInstanceOf(NotFoundError);
    await expect(a.call(2, ECHO, '__proto__')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('maps handler failures to statuses without sending stack traces', async () => {
    cluster = await makeCluster(kind, 2);
    cluster.node(2).registerService({
      ...ECHO,
      name: 'fail',
      handlers: {
        boom: () => {
          throw new Error('disk on fire');
        },
        precondition: () => {
          throw new IcsStatusError('FAILED_PRECONDITION', 'not ready', { retryAfterMs: 5 });
        },
      },
    });
    const boom = await cluster.node(1).call(2, ECHO, 'boom').catch((e: unknown) => e);
    expect(boom).toBeInstanceOf(RemoteInternalError);
    expect((boom as Error).message).toContain('disk on fire');
    expect((boom as Error).stack).not.toContain('ics.test.ts:');
    const pre = await cluster.node(1).call(2, ECHO, 'precondition').catch((e: unknown) => e);
    expect(pre).toBeInstanceOf(RemoteError);
    expect((pre as RemoteError).status).toBe('FAILED_PRECONDITION');
    expect((pre as RemoteError).details).toEqual({ retryAfterMs: 5 });
  });

  it('delivers one-way messages, awaitable and not', async () => {
    cluster = await makeCluster(kind, 2);
    const got: unknown[] = [];
    const all = deferred();
    cluster.node(2).registerService({
      ...ECHO,
      name: 'sink',
      handlers: {
        put: (x, ctx) => {
          expect(ctx.oneWay).toBe(true);
          got.push(x);
          if (got.length === 3) all.resolve();
        },
      },
    });
    const a = cluster.node(1);
    await a.send(2, ECHO, 'put', 1);
    expect(a.trySend(2, ECHO, 'put', 2)).toBe(true);
    await a.send(2, ECHO, 'put', 3);
    await all.promise;
    expect(got).toEqual([1, 2, 3]);
  });

  it('runs asynchronous requests whose results are collected later, or never', async () => {
    cluster = await makeCluster(kind, 2);
    const gate = deferred();
    cluster.node(2).registerService({
      ...ECHO,
      name: 'slow',
      handlers: { wait: async (x) => (await gate.promise, x), fail: () => Promise.reject(new Error('no')) },
    });
    const a = cluster.node(1);
    const h1 = a.request<number>(2, ECHO, 'wait', 1);
    const h2 = a.request<number>(2, ECHO, 'wait', 2);
    a.request(2, ECHO, 'fail'); // never awaited: must not become an unhandled rejection
    expect(h1.settled).toBe(false);
    gate.resolve();
    expect(await h2.result()).toBe(2);
    expect(await h1.result()).toBe(1);
    expect(h1.settled).toBe(true);
  });

  it('forwards cancellation to the serving node', async () => {
    cluster = await makeCluster(kind, 2);
    const started = deferred();
    const aborted = deferred<unknown>();
    cluster.node(2).registerService({
      ...ECHO,
      name: 'hang',
      handlers: {
        hang: (_x, ctx) =>
          new Promise((_r, reject) => {
            started.resolve();
            ctx.signal.addEventListener('abort', () => {
              aborted.resolve(ctx.signal.reason);
              reject(ctx.signal.reason);
            });
          }),
      },
    });
    const ac = new AbortController();
    const call = cluster.node(1).call(2, ECHO, 'hang', null, { signal: ac.signal });
    await started.promise;
    ac.abort(new Error('user gave up'));
    await expect(call).rejects.toBeInstanceOf(CancelledError);
    expect(await aborted.promise).toBeInstanceOf(CancelledError);
    // The handle form cancels too.
    const h = cluster.node(1).request(2, ECHO, 'hang');
    h.cancel();
    await expect(h.result()).rejects.toBeInstanceOf(CancelledError);
  });

  it('validates typed services at the serving edge', async () => {
    cluster = await makeCluster(kind, 2);
    const Kv = defineService({
      name: 'kv',
      subservice: 7,
      methods: {
        put: { kind: 'rpc', input: z.object({ key: z.string().min(1), value: z.number() }), output: z.object({ ok: z.boolean() }) },
        bad: { kind: 'rpc', input: z.object({}), output: z.object({ n: z.number() }) },
        note: { kind: 'oneway', input: z.string() },
      },
    });
    const store = new Map<string, number>();
    const notes = deferred<string>();
    serve(cluster.node(2), Kv, {
      put: ({ key, value }) => {
        store.set(key, value);
        return { ok: true };
      },
      bad: () => ({ n: 'not a number' }) as unknown as { n: number },
      note: (s) => notes.resolve(s),
    });
    const kv = client(cluster.node(1), Kv, 2);
    expect(await kv.put({ key: 'a', value: 1 })).toEqual({ ok: true });
    expect(store.get('a')).toBe(1);
    const err = await kv.put({ key: '', value: 'x' as unknown as number }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).details).toEqual(
      expect.arrayContaining([expect.objectContaining({ path: 'key' }), expect.objectContaining({ path: 'value' })]),
    );
    await expect(kv.bad({})).rejects.toBeInstanceOf(RemoteInternalError);
    await kv.note('hi');
    expect(await notes.promise).toBe('hi');
    const h = kv.$request('put', { key: 'b', value: 2 });
    expect(await h.result()).toEqual({ ok: true });
  });

  it('refuses values that are not plain data before sending', async () => {
    cluster = await makeCluster(kind, 2);
    cluster.node(2).registerService({ ...ECHO, name: 'echo', handlers: { echo: (x) => x } });
    for (const bad of [new Map([[1, 2]]), new Date(), () => 1, 10n]) {
      await expect(cluster.node(1).call(2, ECHO, 'echo', { bad })).rejects.toBeInstanceOf(NotSerializableError);
    }
    expect(cluster.node(1).stats().pendingCalls).toBe(0);
  });

  it('calls many nodes at once and resolves on first, majority or all', async () => {
    cluster = await makeCluster(kind, 4);
    for (const n of [2, 3, 4]) {
      cluster.node(n).registerService({
        ...ECHO,
        name: 'who',
        handlers: {
          who: () => {
            if (n === 4) throw new Error('four fails');
            return n;
          },
        },
      });
    }
    const a = cluster.node(1);
    const all = await a.multicast<number>([2, 3, 4], ECHO, 'who');
    expect(all.satisfied).toBe(false); // node 4 failed
    expect(all.results.size).toBe(3);
    expect(all.results.get(2)).toEqual({ ok: true, value: 2 });
    expect(all.results.get(3)).toEqual({ ok: true, value: 3 });
    expect(all.results.get(4)?.ok).toBe(false);
    const majority = await a.multicast<number>([2, 3, 4], ECHO, 'who', null, { until: 'majority' });
    expect(majority.satisfied).toBe(true);
    expect([...majority.results.values()].filter((r) => r.ok).length).toBeGreaterThanOrEqual(2);
    const first = await a.multicast<number>([4, 2], ECHO, 'who', null, { until: 'first' });
    expect(first.satisfied).toBe(true);
    const impossible = await a.multicast<number>([4], ECHO, 'who', null, { until: 'majority' });
    expect(impossible.satisfied).toBe(false);
  });

  it('bounds each service with a handler pool and refuses past its queue', async () => {
    cluster = await makeCluster(kind, 2);
    const gate = deferred();
    let running = 0;
    let peak = 0;
    cluster.node(2).registerService({
      ...ECHO,
      name: 'pool',
      pool: { max: 2, queue: 3, priorityReserve: 0 },
      handlers: {
        work: async () => {
          running++;
          peak = Math.max(peak, running);
          await gate.promise;
          running--;
          return 'done';
        },
      },
    });
    const a = cluster.node(1);
    const calls = Array.from({ length: 8 }, () => a.call(2, ECHO, 'work').then((v) => v, (e: unknown) => e));
    // 2 run, 3 wait, 3 are refused at once.
    const refused = await Promise.all(calls.slice(5));
    for (const r of refused) expect(r).toBeInstanceOf(ResourceExhaustedError);
    gate.resolve();
    expect(await Promise.all(calls.slice(0, 5))).toEqual(['done', 'done', 'done', 'done', 'done']);
    expect(peak).toBe(2);
  });

  it('raises calls made inside a handler to priority, so a callback into a throttled caller completes', async () => {
    // Node 2's service is slow and node 1 fills its channel to node 2 beyond
    // the window; node 2's handler calls back into node 1 on that same channel.
    cluster = await makeCluster(kind, 2, { extra: () => ({ window: { messages: 16, bytes: 256 * 1024 } }) });
    const a = cluster.node(1);
    const b = cluster.node(2);
    const release = deferred();
    let callbackPriority: boolean | undefined;
    a.registerService({
      ...ECHO,
      name: 'a-side',
      handlers: {
        callback: (_x, ctx) => {
          callbackPriority = ctx.priority;
          release.resolve();
          return 'called back';
        },
      },
    });
    let first = true;
    b.registerService({
      ...ECHO,
      name: 'b-side',
      pool: { max: 64, queue: 1024 },
      handlers: {
        work: async () => {
          if (first) {
            first = false;
            // Calls from a handler travel on a priority lane: this one does
            // not queue behind the 40 calls that wait for credit.
            return b.call(1, ECHO, 'callback');
          }
          await release.promise;
          return 'worked';
        },
      },
    });
    const throttled = deferred();
    a.on('throttle', (e) => e.throttled && e.node === 2 && throttled.resolve());
    const first1 = a.call(2, ECHO, 'work');
    const rest = Array.from({ length: 40 }, () => a.call(2, ECHO, 'work'));
    await throttled.promise;
    expect(await first1).toBe('called back');
    expect(callbackPriority).toBe(true);
    expect(new Set(await Promise.all(rest))).toEqual(new Set(['worked']));
    expect(a.stats().throttleEvents).toBeGreaterThan(0);
  });

  it('slows a sender to a slow receiver instead of growing memory (trySend + drain)', async () => {
    cluster = await makeCluster(kind, 2, { extra: () => ({ window: { messages: 16, bytes: 256 * 1024 }, sendQueueMessages: 64 }) });
    const gate = deferred();
    let received = 0;
    cluster.node(2).registerService({
      ...ECHO,
      name: 'slow-sink',
      pool: { max: 4, queue: 100 },
      handlers: { put: async () => (await gate.promise, received++) },
    });
    const a = cluster.node(1);
    let sent = 0;
    while (a.trySend(2, ECHO, 'put', sent)) {
      sent++;
      if (sent > 1000) throw new Error('never throttled');
      await new Promise((r) => setImmediate(r));
    }
    sent++;
    // Queue bounded: past sendQueueMessages a send is refused, not buffered.
    let refused: unknown;
    for (let i = 0; i < 200 && !refused; i++) {
      try {
        a.trySend(2, ECHO, 'put', -1);
        sent++;
      } catch (e) {
        refused = e;
      }
    }
    expect(refused).toBeInstanceOf(ResourceExhaustedError);
    expect(a.stats().queuedMessages).toBeLessThanOrEqual(64);
    const drained = new Promise<void>((r) => a.once('drain', () => r()));
    gate.resolve();
    await drained;
    await expect.poll(() => received, { timeout: 20_000 }).toBe(sent);
  });

  it('errors out every pending call when a node is declared down, and aborts what it asked', async () => {
    cluster = await makeCluster(kind, 3);
    const a = cluster.node(1);
    const b = cluster.node(2);
    const started = deferred();
    const handlerAborted = deferred();
    b.registerService({
      ...ECHO,
      name: 'hang',
      handlers: { hang: (_x, ctx) => (started.resolve(), new Promise((_r, reject) => ctx.signal.addEventListener('abort', reject))) },
    });
    a.registerService({
      ...ECHO,
      name: 'a-hang',
      handlers: {
        hang: (_x, ctx) =>
          new Promise((_r, reject) => {
            ctx.signal.addEventListener('abort', () => {
              handlerAborted.resolve();
              // Finish a little later: nodeDown must wait for it.
              setTimeout(() => reject(ctx.signal.reason), 20);
            });
          }),
      },
    });
    const sentCall = a.call(2, ECHO, 'hang');
    await started.promise;
    // Node 2 also calls node 1 and waits.
    void b.call(1, ECHO, 'hang').catch(() => {});
    await expect.poll(() => a.servingCount(2)).toBe(1);
    let nodedownDone = false;
    const down = a.nodeDown(2).then(() => (nodedownDone = true));
    const err = await sentCall.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NodeDownError);
    expect((err as NodeDownError).sent).toBe('may-have-run');
    expect((err as NodeDownError).node).toBe(2);
    await handlerAborted.promise;
    expect(nodedownDone).toBe(false);
    await down;
    expect(a.servingCount(2)).toBe(0);
    expect(a.stats().pendingCalls).toBe(0);
  });

});

it('deadlines use the injected clock and reach the handler (virtual time)', async () => {
  const { VirtualClock } = await import('@clusterinfra/core');
  const clock = new VirtualClock();
  const network = createMemoryNetwork({ clock, seed: 3 });
  const mk = (n: number) =>
    createIcs({ transport: memory({ network, address: `node-${n}` }), clusterName: 't', nodeNum: n, clock, peers: (x) => `node-${x}` });
  const a = await mk(1).start();
  const b = await mk(2).start();
  let handlerReason: unknown;
  let nestedDeadline: number | undefined;
  b.registerService({
    ...ECHO,
    name: 'slow',
    handlers: {
      slow: (_x, ctx) =>
        new Promise((_r, reject) => {
          nestedDeadline = ctx.deadline;
          ctx.signal.addEventListener('abort', () => {
            handlerReason = ctx.signal.reason;
            reject(ctx.signal.reason);
          });
        }),
    },
  });
  let outcome: unknown;
  const p = a.call(2, ECHO, 'slow', null, { timeoutMs: 500 }).catch((e: unknown) => (outcome = e));
  await clock.advance(499);
  expect(outcome).toBeUndefined();
  await clock.advance(2);
  await p;
  expect(outcome).toBeInstanceOf(DeadlineExceededError);
  await clock.advanceUntil(() => handlerReason !== undefined, 1000);
  expect(handlerReason).toBeInstanceOf(DeadlineExceededError);
  expect(nestedDeadline).toBeLessThanOrEqual(clock.now() + 500);
  await clock.advanceUntil(() => a.stats().pendingCalls === 0, 1000);
  expect(a.stats().pendingCalls).toBe(0);
  await Promise.all([a.close(), b.close(), clock.runUntilIdle({ maxTimers: 1000 })]);
});

it('forgets a timed-out call whose answer never comes back (silent partition), and gets its credit back', async () => {
  const { VirtualClock } = await import('@clusterinfra/core');
  const clock = new VirtualClock();
  const network = createMemoryNetwork({ clock, seed: 4 });
  // The smallest window (16 messages): 16 leaked calls would block the channel for good.
  const mk = (n: number) =>
    createIcs({ transport: memory({ network, address: `node-${n}` }), clusterName: 't', nodeNum: n, clock, peers: (x) => `node-${x}`, window: { messages: 16, bytes: 1 << 20 } });
  const a = await mk(1).start();
  const b = await mk(2).start();
  b.registerService({ ...ECHO, name: 'echo', handlers: { echo: (x) => x } });
  let firstDone = false;
  const first = a.call(2, ECHO, 'echo', 1, { timeoutMs: 1000 }).finally(() => (firstDone = true));
  await clock.advanceUntil(() => firstDone, 1000);
  await expect(first).resolves.toBe(1);
  // The link stays open but nothing crosses it, the Cancel and the Response included.
  network.partition('node-1', 'node-2');
  const lost = Array.from({ length: 16 }, (_, i) => a.call(2, ECHO, 'echo', i, { timeoutMs: 200 }).catch((e: unknown) => e));
  await clock.advance(250);
  for (const e of await Promise.all(lost)) expect(e).toBeInstanceOf(DeadlineExceededError);
  expect(a.stats().pendingCalls).toBe(16);
  await clock.advance(6_000);
  expect(a.stats().pendingCalls).toBe(0);
  network.heal();
  let afterDone = false;
  const after = a.call(2, ECHO, 'echo', 'after', { timeoutMs: 1000 }).catch((e: unknown) => e).finally(() => (afterDone = true));
  await clock.advanceUntil(() => afterDone, 2000);
  expect(await after).toBe('after');
  await Promise.all([a.close(), b.close(), clock.runUntilIdle({ maxTimers: 1000 })]);
});

it('says never-sent for calls still queued when the node goes down', async () => {
  cluster = await makeCluster('memory', 2);
  const a = cluster.node(1);
  // No link exists yet and the partition makes the connect hang: the call waits in the queue.
  cluster.network!.partition('node-1', 'node-2');
  const pending = a.call(2, ECHO, 'x').catch((e: unknown) => e);
  await new Promise((r) => setTimeout(r, 10));
  expect(a.stats().queuedMessages).toBe(1);
  await a.nodeDown(2);
  const err = await pending;
  expect(err).toBeInstanceOf(NodeDownError);
  expect((err as NodeDownError).sent).toBe('never-sent');
  expect((err as NodeDownError).retryable).toBe(true);
  expect(a.stats()).toMatchObject({ pendingCalls: 0, queuedMessages: 0 });
});

it('delivers each message at most once when the network duplicates every frame (R4)', async () => {
  cluster = await makeCluster('memory', 2);
  const counts = { oneWay: 0, calls: 0 };
  const all = deferred();
  cluster.node(2).registerService({
    ...ECHO,
    name: 'count',
    handlers: {
      note: () => {
        counts.oneWay++;
        if (counts.oneWay === 20) all.resolve();
      },
      call: (x) => (counts.calls++, x),
    },
  });
  cluster.network!.setLinkFaults('node-1', 'node-2', { duplicateRate: 1 }, { bothWays: true });
  const a = cluster.node(1);
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => a.call(2, ECHO, 'call', i)));
  expect(results).toEqual(Array.from({ length: 20 }, (_, i) => i));
  for (let i = 0; i < 20; i++) await a.send(2, ECHO, 'note', i);
  await all.promise;
  // Give the duplicates time to arrive: they must be dropped, not served.
  await expect.poll(() => cluster!.network!.stats().duplicated, { timeout: 5000 }).toBeGreaterThanOrEqual(40);
  await new Promise((r) => setTimeout(r, 20));
  expect(counts).toEqual({ oneWay: 20, calls: 20 });
  expect(cluster.node(2).stats().dropped).toBeGreaterThanOrEqual(40);
});

it('a priority message overtakes queued bulk traffic: it waits behind at most one frame (R6)', async () => {
  cluster = await makeCluster('memory', 3);
  const [a, , c] = [cluster.node(1), cluster.node(2), cluster.node(3)];
  const arrivals: string[] = [];
  const urgentSeen = deferred();
  cluster.node(2).registerService({
    ...ECHO,
    name: 'sink',
    handlers: {
      big: () => void arrivals.push('big'),
      urgent: (_x, ctx) => {
        arrivals.push(ctx.priority ? 'urgent(priority)' : 'urgent');
        urgentSeen.resolve();
      },
    },
  });
  a.registerService({
    ...ECHO,
    name: 'trigger',
    // Sent from inside a handler: raised to the priority lane.
    handlers: { fire: () => a.send(2, ECHO, 'urgent') },
  });
  await a.call(2, ECHO, 'big'); // link up
  arrivals.length = 0;
  cluster.network!.pause('node-2');
  const payload = new Uint8Array(200 * 1024);
  for (let i = 0; i < 20; i++) a.trySend(2, ECHO, 'big', payload);
  await c.call(1, ECHO, 'fire');
  cluster.network!.resume('node-2');
  await urgentSeen.promise;
  await expect.poll(() => arrivals.length, { timeout: 10_000 }).toBe(21);
  // Only what the link already held (its 64 KiB high-water mark was passed
  // by the first 200 KiB frame) may arrive before the urgent message.
  expect(arrivals.indexOf('urgent(priority)')).toBeLessThanOrEqual(1);
});

it('refuses bad options with the option path', () => {
  const network = createMemoryNetwork();
  const err = (() => {
    try {
      createIcs({ transport: memory({ network }), clusterName: 't', nodeNum: 0 });
    } catch (e) {
      return e;
    }
  })();
  expect(err).toBeInstanceOf(InvalidOptionError);
  expect((err as InvalidOptionError).path).toBe('nodeNum');
  expect(() => createIcs({ transport: {} as never, clusterName: 't', nodeNum: 1 })).toThrow(InvalidOptionError);
  expect(serviceId(16, 1)).toBe((16 << 16) + 1);
});

forEachTransport('ICS out-of-line bulk', (kind) => {
  const pattern = (n: number, seed: number): Uint8Array => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
    return b;
  };

  it('carries binary values larger than a message, both ways, intact', async () => {
    cluster = await makeCluster(kind, 2);
    cluster.node(2).registerService({
      ...ECHO,
      name: 'blob',
      handlers: {
        reverse: (args) => {
          const { data, tag } = args as { data: Uint8Array; tag: string };
          expect(data).toBeInstanceOf(Uint8Array);
          return { tag, data: Uint8Array.from(data).reverse(), small: new Uint8Array([7]) };
        },
      },
    });
    const a = cluster.node(1);
    const big = pattern(3 * 1024 * 1024 + 17, 5); // over maxMessageSize (1 MiB): only out of line can carry it
    const res = await a.call<{ tag: string; data: Uint8Array; small: Uint8Array }>(2, ECHO, 'reverse', { tag: 't', data: big });
    expect(res.tag).toBe('t');
    expect(res.data.byteLength).toBe(big.byteLength);
    expect(Buffer.from(res.data).equals(Buffer.from(Uint8Array.from(big).reverse()))).toBe(true);
    expect([...res.small]).toEqual([7]);
    expect(a.stats().bulkBytesSent).toBe(big.byteLength);
    expect(a.stats().bulkBytesReceived).toBe(big.byteLength);
    expect(a.stats().bulkBytesPending).toBe(0);
    expect(cluster.node(2).stats().bulkBytesPending).toBe(0);
  });

  it('interleaves bulk chunks with small calls instead of blocking them', async () => {
    // The smallest bulk window keeps little bulk data in the kernel's
    // buffers, so each small call waits behind about one window at most.
    cluster = await makeCluster(kind, 2, { extra: () => ({ bulkWindow: 1024 * 1024 }) });
    const order: string[] = [];
    cluster.node(2).registerService({
      ...ECHO,
      name: 'mixed',
      handlers: { big: (x) => (order.push('big'), (x as Uint8Array).byteLength), small: (x) => (order.push('small'), x) },
    });
    const a = cluster.node(1);
    await a.call(2, ECHO, 'small', 0); // link up
    const size = 48 * 1024 * 1024;
    const bigDone = a.call<number>(2, ECHO, 'big', pattern(size, 1)).then((n) => (order.push('big done'), n));
    for (let i = 1; i <= 5; i++) await a.call(2, ECHO, 'small', i);
    order.push('smalls done');
    const sentWhenSmallsDone = a.stats().bulkBytesSent;
    expect(await bigDone).toBe(size);
    // Five sequential small calls finished while the value was still in transit.
    expect(sentWhenSmallsDone).toBeLessThan(size);
    expect(order.indexOf('smalls done')).toBeLessThan(order.indexOf('big'));
  });

  it('refuses a value over the receive budget and keeps the link usable', async () => {
    cluster = await makeCluster(kind, 2, { extra: (n) => (n === 2 ? { bulkReceiveBudget: 1024 * 1024 } : {}) });
    let ran = 0;
    cluster.node(2).registerService({ ...ECHO, name: 'blob', handlers: { take: () => ++ran, ping: () => 'pong' } });
    const a = cluster.node(1);
    const err = await a.call(2, ECHO, 'take', pattern(2 * 1024 * 1024, 2)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    expect(ran).toBe(0);
    expect(await a.call(2, ECHO, 'ping')).toBe('pong');
    expect(await a.call(2, ECHO, 'take', pattern(512 * 1024, 3))).toBe(1);
    await expect.poll(() => cluster!.node(2).stats().bulkBytesPending).toBe(0);
  });

  it('a cancelled call abandons its value on both sides', async () => {
    cluster = await makeCluster(kind, 2);
    let ran = 0;
    cluster.node(2).registerService({ ...ECHO, name: 'blob', handlers: { take: () => ++ran, ping: () => 'pong' } });
    const a = cluster.node(1);
    await a.call(2, ECHO, 'ping');
    const ac = new AbortController();
    const p = a.call(2, ECHO, 'take', pattern(64 * 1024 * 1024 - 1, 4), { signal: ac.signal });
    await expect.poll(() => a.stats().bulkBytesSent, { timeout: 10_000 }).toBeGreaterThan(0);
    ac.abort();
    await expect(p).rejects.toBeInstanceOf(CancelledError);
    await expect.poll(() => cluster!.node(2).stats().bulkBytesPending, { timeout: 10_000 }).toBe(0);
    expect(ran).toBe(0);
    expect(await a.call(2, ECHO, 'ping')).toBe('pong');
    expect(a.stats().bulkBytesSent).toBeLessThan(64 * 1024 * 1024 - 1);
  });
});
