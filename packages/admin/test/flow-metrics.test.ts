/** Flow control in /metrics: a channel that runs out of credit is counted as a throttle event. */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { channelOf, INITIAL_WINDOW } from '@clusterinfra/core';
import { type AdminServer, serveAdmin } from '@clusterinfra/admin';
import { startCluster, type TestCluster, TOKEN } from './cluster.js';
import { parseExposition, sampleValue } from './prom-parse.js';

const HOLD = { channel: 'default', subservice: 8 } as const;

let cluster: TestCluster;
let admin: AdminServer;

beforeAll(async () => {
  // The smallest window: 16 messages in flight per channel and peer.
  cluster = await startCluster(3, { ics: { window: { ...INITIAL_WINDOW } } });
  admin = await serveAdmin(cluster.node(2), { token: TOKEN });
}, 60_000);

afterAll(async () => {
  await admin?.close();
  await cluster?.close();
});

it('counts throttle events per channel as a caller runs out of credit', async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let held = 0;
  cluster.node(1).communication.registerService({
    ...HOLD,
    name: 'hold',
    pool: { max: 64, queue: 1024 },
    handlers: {
      hold: async () => {
        held++;
        await released;
        return 'done';
      },
    },
  });
  const ics = cluster.node(2).communication;
  const channel = String(channelOf(ics.serviceId(HOLD)));
  const throttled = new Promise<void>((resolve) => ics.on('throttle', (e) => e.throttled && resolve()));
  const calls = Array.from({ length: INITIAL_WINDOW.messages * 2 }, () => ics.call(1, HOLD, 'hold', null, { timeoutMs: 60_000 }));
  await throttled;
  release();
  expect(new Set(await Promise.all(calls))).toEqual(new Set(['done']));
  expect(held).toBe(calls.length);
  const res = await fetch(`${admin.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const m = parseExposition(await res.text());
  expect(sampleValue(m, 'clusterinfra_ics_throttle_events_total', { channel })).toBeGreaterThanOrEqual(1);
  expect(sampleValue(m, 'clusterinfra_rpc_calls_total', { service: 'default/8', status: 'OK' })).toBe(calls.length);
});
