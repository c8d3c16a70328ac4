/**
 * Pub/sub over transport-mem under the virtual clock: broadcast and balanced
 * delivery, order per publisher, bounded queues that slow the publisher
 * instead of dropping, subscribers that go down, unsubscribe.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { isServicesError, type Subscription } from '../src/index.js';
import { range, type SvcCluster, svcCluster } from './harness.js';

let c: SvcCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

const allReady = (cl: SvcCluster, ns: number[]): boolean => ns.every((n) => cl.ready(n));

describe('pub/sub', () => {
  it('broadcast: every subscriber node gets every event, in publish order per publisher', async () => {
    c = svcCluster(4);
    await c.until(() => allReady(c!, range(4)), 30_000, 'services started');
    const got = new Map<number, string[]>();
    await c.settle(Promise.all([2, 3, 4].map((n) => c!.svc(n).subscribe('orders', (d, info) => {
      got.set(n, [...(got.get(n) ?? []), `${info.publisher}:${String(d)}`]);
    }))));
    expect(c.svc(1).subscribers('orders').map((t) => t.node)).toEqual([2, 3, 4]);
    // Two publishers, each publishing without waiting between events.
    const sent = [1, 2].flatMap((p) => range(30).map((i) => c!.svc(p).publish('orders', i)));
    const results = await c.settle(Promise.all(sent));
    expect(results.every((r) => r.failed.length === 0 && r.nodes.join() === '2,3,4')).toBe(true);
    await c.until(() => [2, 3, 4].every((n) => got.get(n)?.length === 60), 10_000, 'every event everywhere');
    for (const n of [2, 3, 4]) {
      for (const p of [1, 2]) {
        const fromP = got.get(n)!.filter((x) => x.startsWith(`${p}:`)).map((x) => Number(x.split(':')[1]));
        expect(fromP, `node ${n} from ${p}`).toEqual(range(30));
      }
    }
    expect(c.svc(3).stats()).toMatchObject({ lost: 0, handlerErrors: 0 });
  });

  it('balanced: one subscription per group gets each event, spread over the group; an ungrouped subscription gets every event', async () => {
    c = svcCluster(5);
    await c.until(() => allReady(c!, range(5)), 30_000, 'services started');
    const got: { n: number; who: string; d: number }[] = [];
    const sub = (n: number, who: string, group?: string) =>
      c!.svc(n).subscribe('jobs', (d) => void got.push({ n, who, d: d as number }), group ? { group } : {});
    await c.settle(Promise.all([sub(2, 'w', 'workers'), sub(3, 'w', 'workers'), sub(3, 'w2', 'workers'), sub(4, 'w', 'workers'), sub(4, 'a', 'audit'), sub(5, 'solo')]));
    for (let i = 1; i <= 12; i++) await c.settle(c.svc(1).publish('jobs', i, { delivery: 'balanced' }));
    await c.until(() => got.length === 36, 10_000, 'deliveries');
    const per = (who: string) => got.filter((g) => g.who === who || (who === 'workers' && g.who.startsWith('w')));
    // Each event once to the workers group, once to audit, once to the ungrouped subscriber.
    for (const group of ['workers', 'a', 'solo']) expect(per(group).map((g) => g.d).sort((a, b) => a - b), group).toEqual(range(12));
    // Spread over the group's nodes in turn (4 events each), and on node 3 over its two subscriptions.
    const workers = per('workers');
    for (const n of [2, 3, 4]) expect(workers.filter((g) => g.n === n)).toHaveLength(4);
    expect(workers.filter((g) => g.n === 3 && g.who === 'w2')).toHaveLength(2);
    // Broadcast reaches every subscription of the topic, groups or not.
    got.length = 0;
    await c.settle(c.svc(1).publish('jobs', 99));
    await c.until(() => got.length === 6, 10_000, 'broadcast');
  });

  it('bounded queues: a slow subscriber slows the publisher through flow control; nothing is dropped', async () => {
    c = svcCluster(2, { options: { maxQueue: 4, pool: { max: 2, queue: 4096 } } });
    await c.until(() => allReady(c!, range(2)), 30_000, 'services started');
    const got: number[] = [];
    let maxQueued = 0;
    let release!: () => void;
    let gate = new Promise<void>((r) => (release = r));
    let sub!: Subscription;
    sub = await c.settle(c.svc(2).subscribe('slow', async (d) => {
      maxQueued = Math.max(maxQueued, sub.queued);
      await gate;
      got.push(d as number);
    }));
    const n = 3000;
    const published = range(n).map((i) => c!.svc(1).publish('slow', i));
    await c.until(() => c!.svc(2).stats().queued >= 4, 10_000, 'the queue fills');
    // Held: the node takes at most maxQueue + pool max more, the rest waits at the publisher (its sends are throttled).
    expect(c.svc(2).stats().queued).toBeLessThanOrEqual(4 + 2);
    const pending = { count: 0 };
    for (const p of published) void p.then(() => pending.count++);
    await c.clock.advance(100);
    expect(pending.count).toBeLessThan(n);
    release();
    gate = Promise.resolve();
    await c.until(() => got.length === n, 60_000, 'every event');
    expect(got).toEqual(range(n));
    expect(maxQueued).toBeLessThanOrEqual(4 + 2);
    expect(c.svc(2).stats()).toMatchObject({ lost: 0, queued: 0 });
    expect((await c.settle(Promise.all(published))).every((r) => r.failed.length === 0)).toBe(true);
  });

  it('a subscriber that goes down: a one-way event handed to it is gone; a confirmed one is reported, and a balanced one goes to another node of the group', async () => {
    c = svcCluster(4);
    await c.until(() => allReady(c!, range(4)), 30_000, 'services started');
    const got = new Map<number, number[]>();
    await c.settle(Promise.all([2, 3, 4].map((n) => c!.svc(n).subscribe('ticks', (d) => void got.set(n, [...(got.get(n) ?? []), d as number]), { group: 'g' }))));
    const undelivered: number[] = [];
    c.svc(1).on('undelivered', (u) => undelivered.push(u.node));
    c.kill(3);
    // Published while node 3 is crashing and before the cluster noticed: node 3 is still a target.
    const oneWay = [];
    for (let i = 1; i <= 6; i++) oneWay.push(await c.settle(c.svc(1).publish('ticks', i, { delivery: 'balanced' })));
    const confirmed = [];
    for (let i = 7; i <= 30; i++) confirmed.push(await c.settle(c.svc(1).publish('ticks', i, { delivery: 'balanced', confirm: true })));
    await c.until(() => c!.svc(1).subscribers('ticks').map((t) => t.node).join() === '2,4', 30_000, 'node 3 withdrawn');
    for (let i = 31; i <= 36; i++) await c.settle(c.svc(1).publish('ticks', i, { delivery: 'balanced' }));
    await c.clock.advance(1000);
    const live = [...(got.get(2) ?? []), ...(got.get(4) ?? [])];
    // At most once: a one-way event handed to node 3's link is lost with it (the publisher saw it handed over).
    const toThree = oneWay.flatMap((r, i) => (r.nodes.includes(3) ? [i + 1] : []));
    expect(toThree.length).toBeGreaterThan(0);
    for (const i of toThree) expect(live).not.toContain(i);
    // Confirmed: each event reached a live member of the group; the tries on node 3 were reported.
    for (let i = 7; i <= 30; i++) expect(live, `event ${i}`).toContain(i);
    const onThree = confirmed.filter((r) => r.failed.some((f) => f.node === 3));
    expect(onThree.length).toBeGreaterThan(0);
    for (const r of onThree) expect(r.nodes.some((n) => n === 2 || n === 4)).toBe(true);
    // After the cleanup every event goes to 2 or 4.
    for (let i = 31; i <= 36; i++) expect(live).toContain(i);
    expect(undelivered.length).toBe(confirmed.reduce((s, r) => s + r.failed.length, 0) + oneWay.reduce((s, r) => s + r.failed.length, 0));
  });

  it('unsubscribe withdraws the announcement; a bad topic or group is a typed error; no subscriber means no target', async () => {
    c = svcCluster(3);
    await c.until(() => allReady(c!, range(3)), 30_000, 'services started');
    const got: unknown[] = [];
    const ac = new AbortController();
    const s1 = await c.settle(c.svc(2).subscribe('news', (d) => void got.push(d)));
    await c.settle(c.svc(2).subscribe('news', (d) => void got.push(d), { group: 'x', signal: ac.signal }));
    expect(c.svc(1).subscribers('news')).toMatchObject([{ node: 2, groups: ['x'], solo: true }]);
    ac.abort();
    await c.until(() => c!.svc(1).subscribers('news')[0]?.groups.length === 0, 10_000, 'group withdrawn');
    await c.settle(s1.unsubscribe());
    await c.until(() => c!.svc(1).subscribers('news').length === 0, 10_000, 'topic withdrawn');
    expect(await c.settle(c.svc(1).publish('news', 1))).toEqual({ nodes: [], failed: [] });
    const bad = await c.settle(c.svc(1).publish('', 1)).catch((e: unknown) => e);
    expect(isServicesError(bad, 'SERVICES_ERR_INVALID_NAME')).toBe(true);
    const badGroup = await c.settle(c.svc(1).subscribe('news', () => {}, { group: ' x' })).catch((e: unknown) => e);
    expect(isServicesError(badGroup, 'SERVICES_ERR_INVALID_NAME')).toBe(true);
    expect(got).toEqual([]);
  });
});
