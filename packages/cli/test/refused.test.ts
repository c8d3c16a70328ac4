/**
 * `cluster status` on a healthy node reports handshakes it refused (issue 16
 * item 8): a node with the wrong secret knocking makes the status unhealthy,
 * with the reason, as the `cluster` command prints it. Virtual clock.
 */
import { describe, expect, it } from 'vitest';
import { ClusterNode, seededRandom, silentLogger, VirtualClock } from '@clusterinfra/core';
import { createMemoryNetwork, memory } from '@clusterinfra/transport-mem';
import { assessHealth, REFUSED_RECENT_MS, statusView } from '../../admin/src/views.js';
import { formatStatus, makeStyle } from '../src/format.js';

const plain = makeStyle(false);

describe('status and refused handshakes', () => {
  it('a node with the wrong secret knocking: listed, unhealthy while recent, healthy again a minute later', async () => {
    const clock = new VirtualClock();
    const network = createMemoryNetwork({ seed: 1, clock });
    const make = (n: number, secret: string): ClusterNode =>
      new ClusterNode({
        nodeNum: n,
        clusterName: 'refusals',
        transport: memory({ network, address: `node-${n}`, secret }),
        candidates: [1],
        seeds: n === 1 ? [] : ['node-1'],
        preset: 'local',
        clock,
        random: seededRandom(`refused/${n}`),
        logger: silentLogger,
      });
    const healthy = make(1, 'right');
    void healthy.start();
    await clock.advanceUntil(() => healthy.info(1)?.state === 'Up', 10_000);
    expect(statusView(healthy).health).toEqual({ ok: true, problems: [] });
    const stray = make(2, 'wrong');
    void stray.start({ timeoutMs: 3000 }).catch(() => {});
    await clock.advance(3000);
    const s = statusView(healthy);
    expect(s.refusedHandshakes).toEqual([expect.objectContaining({ direction: 'inbound', node: 2, reason: 'auth' })]);
    expect(s.health.ok).toBe(false);
    expect(s.health.problems.join('\n')).toMatch(/^refused a handshake from node 2 at node-2: auth \(check the secret\) \(\d+ times, last \d+ s ago\)$/m);
    const text = formatStatus(s, plain);
    expect(text).toContain('unhealthy: refused a handshake from node 2 at node-2: auth (check the secret)');
    // The stray gave up: a minute later the refusal is history, listed but no longer a problem.
    await clock.advance(REFUSED_RECENT_MS + 1000);
    const later = statusView(healthy);
    expect(later.refusedHandshakes).toHaveLength(1);
    expect(later.health.ok).toBe(true);
    // An older endpoint without the field: the same rule, nothing to report.
    expect(assessHealth({ ...later, refusedHandshakes: undefined }).ok).toBe(true);
    let closed = false;
    void Promise.all([healthy.close(), stray.close()]).then(() => (closed = true));
    await clock.advanceUntil(() => closed, 10_000);
  });
});
