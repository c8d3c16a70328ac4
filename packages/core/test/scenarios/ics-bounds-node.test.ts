/**
 * The node-wide bound on messages held for peers (receiveBudgetTotal): peers
 * that each stay well within their own bounds (window, queue share) cannot
 * together make a node hold more than it, and membership traffic is not
 * charged to it (issue 15, section 1).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ResourceExhaustedError } from '@clusterinfra/core';
import { makeCluster, type TestCluster } from './harness.js';

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const SLOW = { channel: 'default', subservice: 7 };
const MEMBERSHIP = { channel: 'clms', subservice: 7 };
const BUDGET = 128 * 1024;
const ARG = 'x'.repeat(20 * 1024);

describe('ICS bounds: bytes held for all peers together', () => {
  it('refuses what several peers send together past receiveBudgetTotal, each within its own bounds', async () => {
    cluster = await makeCluster('memory', 4, { extra: () => ({ receiveBudgetTotal: BUDGET }) });
    const t = cluster.node(1);
    const gate: (() => void)[] = [];
    const big = { max: 1000, queue: 1000, queuePerPeer: 1000 };
    t.registerService({ ...SLOW, name: 'slow', pool: big, handlers: { put: (x: unknown) => new Promise((resolve) => gate.push(() => resolve(String(x).length))), note: () => {} } });
    t.registerService({ ...MEMBERSHIP, name: 'membership', handlers: { ping: () => 'pong' } });
    const drops: string[] = [];
    t.on('drop', (d) => drops.push(d.reason));

    // Three calls per peer: about 60 KiB each, under the budget (and far under the window and queue share); 180 KiB together.
    const calls = [2, 3, 4].flatMap((n) => [1, 2, 3].map(() => cluster!.node(n).call(1, SLOW, 'put', ARG)));
    const outcomes = calls.map((c) => c.then(() => 'ok', (e: unknown) => e));
    await expect.poll(() => gate.length + drops.length).toBe(9);
    const held = t.stats().receivedBytesHeld;
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(BUDGET);
    // As many run as fit; the rest were refused, with the same reaction as a full queue.
    expect(gate.length).toBe(Math.floor(BUDGET / (held / gate.length)));
    expect(gate.length).toBeGreaterThanOrEqual(5);
    expect(gate.length).toBeLessThan(9);
    expect(drops.every((r) => r.includes('receiveBudgetTotal'))).toBe(true);

    // Membership traffic is not charged to it: still served while the budget is spent.
    await expect(cluster.node(2).call(1, MEMBERSHIP, 'ping', ARG)).resolves.toBe('pong');
    // A one-way message past it is a counted drop on the receiver.
    const before = t.stats().dropped;
    cluster.node(3).trySend(1, SLOW, 'note', ARG);
    await expect.poll(() => t.stats().dropped).toBe(before + 1);

    for (const open of gate.splice(0)) open();
    const results = await Promise.all(outcomes);
    const refused = results.filter((r) => r instanceof ResourceExhaustedError);
    expect(refused.length).toBe(9 - results.filter((r) => r === 'ok').length);
    expect(refused.length).toBeGreaterThan(0);
    expect(t.stats().receivedBytesHeld).toBe(0);
    // With the budget free again, a call gets in.
    const again = cluster.node(4).call(1, SLOW, 'put', ARG);
    await expect.poll(() => gate.length).toBe(1);
    gate.shift()!();
    await expect(again).resolves.toBe(ARG.length);
  });

  it('is validated', async () => {
    await expect(makeCluster('memory', 1, { extra: () => ({ receiveBudgetTotal: 10 }) })).rejects.toMatchObject({ code: 'CONFIG_ERR_INVALID_OPTION' });
  });
});
