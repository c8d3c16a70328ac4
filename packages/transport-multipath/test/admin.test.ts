/** Per-path health where metrics are scraped today: the admin endpoint's /metrics, through `extraMetrics`. */
import { afterEach, expect, it } from 'vitest';
import { serveAdmin } from '@clusterinfra/admin';
import { type MpCluster, mpCluster, pathAddress } from './helpers.js';

let cluster: MpCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

it("a node's /metrics carries the health of each path of each of its links", async () => {
  const c = (cluster = await mpCluster(2));
  const factory = c.factories.get(1)!;
  const token = 'multipath-admin-token';
  await using admin = await serveAdmin(c.nodes.get(1)!, { token, extraMetrics: () => factory.metrics() });
  const scrape = async (): Promise<string> => (await fetch(`${admin.url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  const up = (text: string, path: number): number[] => [...text.matchAll(new RegExp(`^clusterinfra_multipath_path_up\\{node="1",peer="2",link="[^"]+",path="${path}"\\} (\\d)$`, 'gm'))].map((m) => Number(m[1]));
  const before = await scrape();
  expect(before).toContain('clusterinfra_node_info');
  expect(up(before, 0).length).toBeGreaterThan(0);
  expect(up(before, 0).every((v) => v === 1)).toBe(true);
  c.network.killLinks(pathAddress(1, 0), pathAddress(2, 0));
  c.network.partition(pathAddress(1, 0), pathAddress(2, 0));
  await c.clock.advance(100);
  const after = await scrape();
  expect(up(after, 0).every((v) => v === 0)).toBe(true);
  expect(up(after, 1).every((v) => v === 1)).toBe(true);
  expect(after).toMatch(/^clusterinfra_multipath_path_failures_total\{node="1",peer="2",link="[^"]+",path="0"\} [1-9]/m);
});
