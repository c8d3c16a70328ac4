/**
 * Headers a call carries of its own (`CallOptions.headers`, docs/ics.md):
 * they reach the handler as `ctx.headers` (to another node and to this
 * node itself), merge with a tracer's (the call's win on a shared key), and
 * a map outside the header limits fails the call with
 * ICS_ERR_NOT_SERIALIZABLE before anything is sent. Key-service calls carry
 * the caller's cluster history this way (keyservices-history.test.ts).
 */
import { afterEach, expect, it } from 'vitest';
import type { HandlerContext } from '@clusterinfra/core';
import { makeCluster, type TestCluster } from './harness.js';

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const SVC = { channel: 'default', subservice: 9 };

it('a call’s headers reach the handler, merged with a tracer’s, to another node and to itself; bad ones fail the call', async () => {
  cluster = await makeCluster('memory', 2);
  const seen: (HandlerContext['headers'] | 'none')[] = [];
  for (const n of [1, 2]) {
    cluster.node(n).registerService({ ...SVC, name: 'h', handlers: { look: (_args, ctx) => void seen.push(ctx.headers ? { ...ctx.headers } : 'none') } });
  }
  const a = cluster.node(1);
  await a.call(2, SVC, 'look', null, { headers: { 'x-tenant': 'blue' } });
  await a.call(1, SVC, 'look', null, { headers: { 'x-tenant': 'green' } });
  await a.call(2, SVC, 'look', null);
  expect(seen).toEqual([{ 'x-tenant': 'blue' }, { 'x-tenant': 'green' }, 'none']);

  const stop = a.instrument({ onCall: () => ({ headers: { traceparent: 't', 'x-tenant': 'tracer' }, end: () => {} }) });
  await a.call(2, SVC, 'look', null, { headers: { 'x-tenant': 'call' } });
  stop();
  expect(seen.at(-1)).toEqual({ traceparent: 't', 'x-tenant': 'call' });

  for (const headers of [{ 'Bad Key': 'x' }, { k: 'not ascii: é' }, { k: 'x'.repeat(1025) }] as Record<string, string>[]) {
    await expect(a.call(2, SVC, 'look', null, { headers })).rejects.toMatchObject({ code: 'ICS_ERR_NOT_SERIALIZABLE' });
    await expect(a.call(1, SVC, 'look', null, { headers })).rejects.toMatchObject({ code: 'ICS_ERR_NOT_SERIALIZABLE' });
  }
  expect(seen).toHaveLength(4);
});
