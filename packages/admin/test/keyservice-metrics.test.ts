/** What the endpoint says about key services: /v1/keys, the hosts in /v1/status, and the key-service metrics through a failover. */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type AdminServer, type KeysView, serveAdmin, type StatusView } from '@clusterinfra/admin';
import { startCluster, type TestCluster, TOKEN, waitFor } from './cluster.js';
import { parseExposition, sampleValue } from './prom-parse.js';

let cluster: TestCluster;
let admin: AdminServer;
let observer: number;

beforeAll(async () => {
  cluster = await startCluster(3, { keyService: 'directory' });
  // Watch from a node that does not host it now, so that it survives the failover below.
  const host = cluster.node(1).keyService('directory')!.host!;
  observer = [1, 2, 3].find((n) => n !== host)!;
  admin = await serveAdmin(cluster.node(observer), { token: TOKEN });
}, 60_000);

afterAll(async () => {
  await admin?.close();
  await cluster?.close();
});

const get = async <T>(path: string): Promise<T> => {
  const res = await fetch(`${admin.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  return (path === '/metrics' ? res.text() : res.json()) as Promise<T>;
};

it('reports where the key service lives, and its move, epoch and host after a failover', async () => {
  const first = cluster.node(observer).keyService('directory')!;
  const keys = await get<KeysView>('/v1/keys');
  expect(keys.keyServices).toEqual([{ name: 'directory', host: first.host, epoch: first.epoch, ready: true, critical: false, halted: false, since: first.since }]);
  const status = await get<StatusView>('/v1/status');
  for (const m of status.members) expect(m.hosts).toEqual(m.node === first.host ? ['directory'] : []);

  let m = parseExposition(await get<string>('/metrics'));
  expect(sampleValue(m, 'clusterinfra_keyservice_epoch', { keyservice: 'directory' })).toBe(first.epoch);
  expect(sampleValue(m, 'clusterinfra_keyservice_host', { keyservice: 'directory' })).toBe(first.host);
  expect(sampleValue(m, 'clusterinfra_keyservice_ready', { keyservice: 'directory' })).toBe(1);
  // Placed before the endpoint opened: no move counted yet.
  expect(sampleValue(m, 'clusterinfra_keyservice_moves_total', { keyservice: 'directory' })).toBeUndefined();

  await cluster.node(first.host!).close();
  await waitFor(
    () => {
      const k = cluster.node(observer).keyService('directory');
      return k?.ready === true && k.host !== first.host;
    },
    30_000,
    'the failover',
  );
  const second = cluster.node(observer).keyService('directory')!;
  m = parseExposition(await get<string>('/metrics'));
  expect(sampleValue(m, 'clusterinfra_keyservice_moves_total', { keyservice: 'directory' })).toBe(1);
  expect(sampleValue(m, 'clusterinfra_keyservice_epoch', { keyservice: 'directory' })).toBe(second.epoch);
  expect(second.epoch).toBeGreaterThan(first.epoch);
  expect(sampleValue(m, 'clusterinfra_keyservice_host', { keyservice: 'directory' })).toBe(second.host);
  expect(sampleValue(m, 'clusterinfra_members', { state: 'Up' })).toBe(2);
});

it('counts calls that fail before they are sent (an aborted signal) under their error code', async () => {
  const ics = cluster.node(observer).communication;
  const ac = new AbortController();
  ac.abort();
  const target = [1, 2, 3].find((n) => n !== observer && cluster.node(observer).info(n)?.state === 'Up')!;
  await expect(ics.call(target, { channel: 'default', subservice: 7 }, 'echo', 1, { signal: ac.signal })).rejects.toMatchObject({ code: 'ICS_ERR_CANCELLED' });
  const m = parseExposition(await get<string>('/metrics'));
  expect(sampleValue(m, 'clusterinfra_rpc_calls_total', { service: 'default/7', status: 'ICS_ERR_CANCELLED' })).toBe(1);
});
