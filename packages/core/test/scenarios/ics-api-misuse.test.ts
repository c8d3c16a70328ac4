/**
 * ICS used wrongly from JavaScript (or past the types): a node number that
 * is no positive integer, a service address that is no address, call
 * options whose signal is no AbortSignal, a registration without a name or
 * with handlers that are not functions. Each fails at once with a typed
 * error and a stable code, nothing is left pending (a signal that is no
 * AbortSignal used to be kept by the pending call and crash the process
 * with a TypeError when the endpoint closed), and the endpoint goes on
 * serving. Memory network, virtual clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { client, defineService, serve, type ServiceAddress, type ServiceDescriptor } from '@clusterinfra/core';
import { allUp, range, type SimCluster, simCluster } from './clms-harness.js';
import { failure, thrown } from './refusals.js';

const svc: ServiceAddress = { channel: 'default', subservice: 7 };


/** What `p` resolves to, moving virtual time until it settles. */
async function value<T>(p: Promise<T>): Promise<T> {
  let settled = false;
  void p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await s!.until(() => settled, 10_000, 'the call');
  return p;
}

let s: SimCluster | undefined;

const invalidArgument = { name: 'InvalidArgumentError', code: 'ICS_ERR_INVALID_ARGUMENT' };
const invalidOption = { name: 'InvalidOptionError', code: 'CONFIG_ERR_INVALID_OPTION' };

describe('ICS misuse', () => {
  afterEach(async () => {
    await s?.close();
    s = undefined;
  });

  async function formed(): Promise<SimCluster> {
    s = simCluster(3);
    await s.until(() => allUp(s!, range(3)), 30_000, 'formation');
    s.node(2).communication.registerService({ name: 'echo', channel: 'default', subservice: 7, handlers: { echo: (x) => x } });
    return s;
  }

  it('calls, requests, one-way messages and multicasts to no node number, or to no service address, are refused at once', async () => {
    const ics = (await formed()).node(1).communication;
    for (const node of [0, -2, 1.5, Number.NaN, '2', null]) {
      expect(await failure(ics.call(node as number, svc, 'echo', 1))).toEqual(invalidArgument);
      expect(await failure(ics.request(node as number, svc, 'echo', 1).result())).toEqual(invalidArgument);
      expect(await failure(ics.send(node as number, svc, 'echo', 1))).toEqual(invalidArgument);
      expect(thrown(() => ics.trySend(node as number, svc, 'echo', 1))).toEqual(invalidArgument);
    }
    for (const service of [null, 'default', -1, 2 ** 40]) expect(await failure(ics.call(2, service as unknown as ServiceAddress, 'echo', 1))).toEqual(invalidArgument);
    expect(await failure(ics.multicast('23' as unknown as number[], svc, 'echo', 1))).toEqual(invalidArgument);
    expect(await failure(ics.multicast([2], svc, 'echo', 1, { until: 'most' as 'all' }))).toEqual(invalidArgument);
    // The endpoint still serves, and nothing was left pending.
    expect(await value(ics.call(2, svc, 'echo', 'still'))).toBe('still');
    expect(ics.stats().pendingCalls).toBe(0);
  });

  it('call options that are not an object, a signal that is no AbortSignal or headers that are no object are refused, and closing is clean', async () => {
    const ics = (await formed()).node(1).communication;
    for (const options of [5, { signal: 5 }, { signal: {} }, { headers: 'x' }, { headers: ['a'] }]) {
      expect(await failure(ics.call(2, svc, 'echo', 1, options as never))).toEqual(invalidArgument);
    }
    // A signal from another realm (a worker, a vm context) is an AbortSignal all the same.
    const foreign = new AbortController().signal;
    const lookalike = { aborted: false, reason: undefined, addEventListener: foreign.addEventListener.bind(foreign), removeEventListener: foreign.removeEventListener.bind(foreign) };
    expect(await value(ics.call(2, svc, 'echo', 'ok', { signal: lookalike as unknown as AbortSignal }))).toBe('ok');
    // Closing settles nothing that was refused: no uncaught error (vitest fails the run on one).
    await s!.close();
    s = undefined;
  });

  it('a registration without a name, with handlers that are not functions, or that is no object, is refused', async () => {
    const ics = (await formed()).node(3).communication;
    const regs = [null, 5, { subservice: 8, handlers: {} }, { name: '', subservice: 8, handlers: {} }, { name: 'x', subservice: 8 }, { name: 'x', subservice: 8, handlers: { m: 5 } }, { name: 'x', channel: 7, subservice: 8, handlers: {} }];
    for (const reg of regs) expect(thrown(() => ics.registerService(reg as never))).toEqual(invalidOption);
    // None of them took the name or the subservice.
    expect(thrown(() => ics.registerService({ name: 'x', subservice: 8, handlers: { m: () => 'm' } }))).toBeUndefined();
    expect(await value(s!.node(1).communication.call(3, { channel: 'default', subservice: 8 }, 'm'))).toBe('m');
  });
});

describe('typed services misused', () => {
  afterEach(async () => {
    await s?.close();
    s = undefined;
  });

  const Kv = defineService({
    name: 'kv.Store',
    subservice: 9,
    methods: { put: { kind: 'rpc', input: z.object({ key: z.string() }), output: z.object({ ok: z.boolean() }) }, note: { kind: 'oneway', input: z.string() } },
  });

  it('a descriptor that is not one is refused by defineService, serve and client alike', async () => {
    s = simCluster(3);
    await s.until(() => allUp(s!, range(3)), 30_000, 'formation');
    const ics = s.node(1).communication;
    const bad = [
      null,
      { subservice: 9, methods: {} },
      { name: 'x', subservice: -1, methods: {} },
      { name: 'x', subservice: 9, channel: 5, methods: {} },
      { name: 'x', subservice: 9 },
      { name: 'x', subservice: 9, methods: { m: { kind: 'stream', input: z.string() } } },
      { name: 'x', subservice: 9, methods: { m: { kind: 'rpc', input: z.string() } } },
      { name: 'x', subservice: 9, methods: { m: { kind: 'oneway' } } },
    ] as unknown as ServiceDescriptor[];
    for (const d of bad) {
      expect(thrown(() => defineService(d))).toEqual(invalidOption);
      expect(thrown(() => serve(ics, d, {}))).toEqual(invalidOption);
      expect(thrown(() => client(ics, d, 2))).toEqual(invalidOption);
    }
  });

  it('serve wants an endpoint and an implementation of every method; client an endpoint and a node number; $request an rpc method', async () => {
    s = simCluster(3);
    await s.until(() => allUp(s!, range(3)), 30_000, 'formation');
    const ics = s.node(2).communication;
    expect(thrown(() => serve(null as never, Kv, { put: () => ({ ok: true }), note: () => {} }))).toEqual(invalidArgument);
    expect(thrown(() => serve(ics, Kv, { put: () => ({ ok: true }) } as never))).toEqual(invalidOption);
    expect(thrown(() => serve(ics, Kv, { put: 5, note: () => {} } as never))).toEqual(invalidOption);
    expect(thrown(() => serve(ics, Kv, null as never))).toEqual(invalidOption);
    expect(thrown(() => client({} as never, Kv, 2))).toEqual(invalidArgument);
    for (const node of [0, 1.5, '2']) expect(thrown(() => client(ics, Kv, node as number))).toEqual(invalidArgument);
    // None of the refused serves registered anything: the service is served once it is given whole.
    serve(ics, Kv, { put: ({ key }) => ({ ok: key === 'a' }), note: () => {} });
    const kv = client(s.node(1).communication, Kv, 2);
    expect(thrown(() => kv.$request('note' as 'put', { key: 'a' }))).toEqual(invalidArgument);
    expect(thrown(() => kv.$request('toString' as 'put', { key: 'a' }))).toEqual(invalidArgument);
    expect(await value(kv.put({ key: 'a' }))).toEqual({ ok: true });
  });

  it('a one-way method refuses arguments its schema refuses on the sending node (the serving node dropped them unseen, and the send resolved)', async () => {
    s = simCluster(3);
    await s.until(() => allUp(s!, range(3)), 30_000, 'formation');
    const notes: string[] = [];
    serve(s.node(2).communication, Kv, { put: () => ({ ok: true }), note: (text) => void notes.push(text) });
    const kv = client(s.node(1).communication, Kv, 2);
    const before = s.node(1).communication.stats().messagesSent;
    for (const bad of [5, null, { text: 'x' }]) expect(await failure(kv.note(bad as never))).toEqual(invalidArgument);
    // Nothing was sent; a good note is delivered.
    expect(s.node(1).communication.stats().messagesSent).toBe(before);
    await value(kv.note('hello'));
    await s.until(() => notes.length === 1, 10_000, 'the note');
    expect(notes).toEqual(['hello']);
  });
});
