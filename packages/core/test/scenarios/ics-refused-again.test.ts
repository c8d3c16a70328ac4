/**
 * A call made while the failure of a refused connection is being handed
 * out (from the rejection handler of a call that failed with it, as the
 * CLMS loop does when it asks the next question at once) gets a
 * connection attempt of its own: it fails fast too, instead of waiting out
 * its whole timeout behind an attempt that had already ended.
 */
import { afterEach, expect, it } from 'vitest';
import { makeCluster, type TestCluster } from './harness.js';

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const SINK = { channel: 'default', subservice: 1 };

it('a call made from the rejection handler of a refused call is refused at once too', async () => {
  cluster = await makeCluster('memory', 2);
  const [a, b] = [cluster.node(1), cluster.node(2)];
  b.registerService({ ...SINK, name: 'sink', handlers: { put: () => 1 } });
  await b.close();
  const codes: string[] = [];
  let second: Promise<unknown> | undefined;
  await a.call(2, SINK, 'put', null, { timeoutMs: 5_000 }).catch((err: { code: string }) => {
    codes.push(err.code);
    second = a.call(2, SINK, 'put', null, { timeoutMs: 5_000 }).catch((e: { code: string }) => codes.push(e.code));
  });
  await second;
  // Stranded, the second call would end ICS_ERR_DEADLINE_EXCEEDED after its 5 s.
  expect(codes).toEqual(['ICS_ERR_UNAVAILABLE', 'ICS_ERR_UNAVAILABLE']);
});
