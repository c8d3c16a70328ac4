/**
 * The live page in a real browser: headless Chromium (Debian's, at
 * /usr/bin/chromium) driven by playwright-core. Without that binary the
 * test says so and skips.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Browser, chromium } from 'playwright-core';
import { type AdminServer, serveAdmin } from '@clusterinfra/admin';
import { startCluster, type TestCluster, TOKEN } from './cluster.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`page.test.ts: ${CHROMIUM} is missing (apt-get install chromium); skipping the browser test`);

/** A cluster name that would run script if the page put it in as HTML. */
const HOSTILE = '<img src=x onerror="window.__pwned=1" id="pwn">';

describe.skipIf(!haveChromium)('live web page', () => {
  let cluster: TestCluster;
  let admin: AdminServer;
  let browser: Browser;

  beforeAll(async () => {
    cluster = await startCluster(3, { clusterName: HOSTILE, keyService: 'directory' });
    admin = await serveAdmin(cluster.node(1), { token: TOKEN });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await admin?.close();
    await cluster?.close();
  });

  it('shows every member, the master and the timeline, and follows a node going down', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${admin.url}/?token=${TOKEN}`);
    // The token leaves the address bar at once.
    expect(page.url()).not.toContain(TOKEN);
    for (const n of [1, 2, 3]) await page.locator(`.member[data-node="${n}"][data-state="Up"]`).waitFor({ timeout: 20_000 });
    expect(await page.locator('.member').count()).toBe(3);
    const master = cluster.node(1).master!;
    expect(await page.locator(`.member[data-node="${master}"]`).getAttribute('data-master')).toBe('true');
    expect(await page.locator(`.member[data-node="${master}"] .master`).count()).toBe(1);
    expect(await page.locator('.member .master').count()).toBe(1);
    await page.locator('#timeline li').first().waitFor({ timeout: 20_000 });
    await page.locator('#live.good').waitFor({ timeout: 20_000 });

    // Remote strings are text, never markup.
    expect(await page.locator('#cluster').textContent()).toBe(`cluster ${HOSTILE}`);
    expect(await page.locator('#pwn').count()).toBe(0);
    expect(await page.evaluate(() => (globalThis as { __pwned?: number }).__pwned)).toBeUndefined();

    // The key service shows on the card of the node that hosts it.
    const host = cluster.node(1).keyService('directory')!.host!;
    await page.locator(`.member[data-node="${host}"] .chip:has-text("directory")`).waitFor({ timeout: 20_000 });
    expect(await page.locator('.chip').count()).toBe(1);

    // A node's run level (meta.runlevel, which @clusterinfra/runlevels sets) shows on its card.
    // Its roles (meta.roles, @clusterinfra/services) too.
    await cluster.node(2).setInfo({ runlevel: 'serving', roles: ['storage', '<b>x</b>'] });
    await page.locator('.member[data-node="2"] .phase:has-text("phase serving")').waitFor({ timeout: 20_000 });
    expect(await page.locator('.phase').count()).toBe(1);
    await page.locator('.member[data-node="2"] .roles:has-text("roles storage, <b>x</b>")').waitFor({ timeout: 20_000 });
    expect(await page.locator('.roles').count()).toBe(1);

    // Take a node away (not the one serving the page, not the master): the
    // page turns it Down by itself (live, no reload).
    const victim = [2, 3].find((n) => n !== master)!;
    await cluster.node(victim).close();
    await page.locator(`.member[data-node="${victim}"][data-state="Down"]`).waitFor({ timeout: 30_000 });
    await page.locator(`#timeline li[data-node="${victim}"][data-to="GoingDown"]`).waitFor({ timeout: 10_000 });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('asks for the token when none is given, and recovers from a wrong one', async () => {
    const page = await browser.newPage();
    await page.goto(`${admin.url}/`);
    await page.locator('#login:not(.hidden)').waitFor({ timeout: 10_000 });
    expect(await page.locator('.member').count()).toBe(0);
    await page.fill('#token', 'wrong-token-0123456789');
    await page.click('#login button');
    await page.locator('#error:has-text("refused")').waitFor({ timeout: 10_000 });
    await page.locator('#login:not(.hidden)').waitFor({ timeout: 10_000 });
    await page.fill('#token', TOKEN);
    await page.click('#login button');
    await page.locator('.member[data-node="1"]').waitFor({ timeout: 20_000 });
    await page.close();
  });
});
