/**
 * Per-path health where an operator looks: the admin endpoint's /metrics
 * (through `paths` or `extraMetrics`), its `GET /v1/paths`, and the live
 * page (in headless Chromium when /usr/bin/chromium exists; it says so and
 * skips otherwise). A cluster over multipath-over-memory on a virtual clock.
 */
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { chromium } from 'playwright-core';
import { type PathsView, serveAdmin } from '@clusterinfra/admin';
import { type MpCluster, mpCluster, pathAddress } from './helpers.js';

const TOKEN = 'multipath-admin-token';
const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`admin.test.ts: ${CHROMIUM} is missing (apt-get install chromium); skipping the page test`);

let cluster: MpCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const get = async (url: string): Promise<Response> => fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });

/** Cut path 0 between nodes 1 and 2 (silently, and the open connection too) and let the path timeout pass. */
async function cutPath0(c: MpCluster): Promise<void> {
  c.network.killLinks(pathAddress(1, 0), pathAddress(2, 0));
  c.network.partition(pathAddress(1, 0), pathAddress(2, 0));
  await c.clock.advance(100);
}

it("a node's /metrics carries the health of each path of each of its links", async () => {
  const c = (cluster = await mpCluster(2));
  const factory = c.factories.get(1)!;
  await using admin = await serveAdmin(c.nodes.get(1)!, { token: TOKEN, extraMetrics: () => factory.metrics() });
  const scrape = async (): Promise<string> => (await get(`${admin.url}/metrics`)).text();
  const up = (text: string, path: number): number[] => [...text.matchAll(new RegExp(`^clusterinfra_multipath_path_up\\{node="1",peer="2",link="[^"]+",path="${path}"\\} (\\d)$`, 'gm'))].map((m) => Number(m[1]));
  const before = await scrape();
  expect(before).toContain('clusterinfra_node_info');
  expect(up(before, 0).length).toBeGreaterThan(0);
  expect(up(before, 0).every((v) => v === 1)).toBe(true);
  await cutPath0(c);
  const after = await scrape();
  expect(up(after, 0).every((v) => v === 0)).toBe(true);
  expect(up(after, 1).every((v) => v === 1)).toBe(true);
  expect(after).toMatch(/^clusterinfra_multipath_path_failures_total\{node="1",peer="2",link="[^"]+",path="0"\} [1-9]/m);
});

it('GET /v1/paths follows a path going down and coming back; the transport as `paths` also feeds /metrics', async () => {
  const c = (cluster = await mpCluster(2));
  await using admin = await serveAdmin(c.nodes.get(1)!, { token: TOKEN, paths: c.factories.get(1)! });
  const paths = async (): Promise<PathsView> => (await (await get(`${admin.url}/v1/paths`)).json()) as PathsView;

  const healthy = await paths();
  expect(healthy.available).toBe(true);
  expect(healthy.degraded).toBe(0);
  expect(healthy.links.length).toBeGreaterThan(0);
  for (const l of healthy.links) {
    expect(l.node).toBe(2);
    expect(l.paths.map((p) => [p.index, p.state, p.active])).toEqual([
      [0, 'up', true],
      [1, 'up', false],
    ]);
  }
  expect(await (await get(`${admin.url}/metrics`)).text()).toMatch(/^clusterinfra_multipath_path_up\{node="1",peer="2",link="[^"]+",path="1"\} 1$/m);

  await cutPath0(c);
  const cut = await paths();
  expect(cut.degraded).toBe(cut.links.length);
  for (const l of cut.links) {
    const [p0, p1] = l.paths;
    expect(p0).toMatchObject({ state: expect.stringMatching(/^(down|connecting)$/), active: false });
    expect(p0!.failures).toBeGreaterThan(0);
    expect(p0!.lastError).toEqual(expect.any(String));
    expect(p1).toMatchObject({ state: 'up', active: true, failures: 0 });
  }

  c.network.heal(pathAddress(1, 0), pathAddress(2, 0));
  await c.until(() => c.factories.get(1)!.health().every((l) => l.paths[0]!.state === 'up'), 10_000, 'path 0 to come back');
  const back = await paths();
  expect(back.degraded).toBe(0);
  for (const l of back.links) expect(l.paths.map((p) => [p.state, p.active])).toEqual([
    ['up', true],
    ['up', false],
  ]);
  expect(c.nodedowns).toEqual([]);
});

describe.skipIf(!haveChromium)('the live page', () => {
  it("lists each link's paths and shows one going down", async () => {
    const c = (cluster = await mpCluster(2));
    await using admin = await serveAdmin(c.nodes.get(1)!, { token: TOKEN, paths: c.factories.get(1)! });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${admin.url}/?token=${TOKEN}`);
      const path = (n: number) => page.locator(`#paths .link[data-peer="2"] .path[data-path="${n}"]`);
      await page.locator('#paths-section:not(.hidden)').waitFor({ timeout: 20_000 });
      await path(0).first().and(page.locator('[data-state="up"][data-active="true"]')).waitFor({ timeout: 20_000 });
      expect(await path(1).first().getAttribute('data-state')).toBe('up');
      expect(await page.locator('#pathbadge').textContent()).toBe('every path up');

      await cutPath0(c);
      // The page reads /v1/paths every 2 s of real time.
      await path(0).first().and(page.locator(':not([data-state="up"])')).waitFor({ timeout: 20_000 });
      await path(1).first().and(page.locator('[data-active="true"]')).waitFor({ timeout: 20_000 });
      expect(await page.locator('#pathbadge').textContent()).toMatch(/^\d+ links? short of a path$/);
      expect(await path(0).first().getAttribute('title')).toMatch(/last down: /);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 90_000);
});
