/**
 * Failover over multipath-over-memory, on a virtual clock (deterministic):
 * a 3-node CLMS cluster with RPC traffic while one path is cut, flapped,
 * or both are cut. Nothing here asserts timing on the real clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { VirtualClock } from '@clusterinfra/core';
import type { MultipathPolicy } from '../src/index.js';
import { linkPair, type MpCluster, mpCluster, numbered, pathAddress, recorder, startTraffic, upTo, watch } from './helpers.js';

let cluster: MpCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const TOTAL = 400;

/** The link node `from` holds to node `to` (the one ICS uses: traffic flows on it). */
function busiestLink(c: MpCluster, from: number, to: number) {
  const links = c.factories.get(from)!.health().filter((h) => h.remoteNode === to);
  return links.sort((a, b) => b.paths.reduce((s, p) => s + p.framesSent, 0) - a.paths.reduce((s, p) => s + p.framesSent, 0))[0]!;
}

for (const policy of ['active-standby', 'both-active'] as MultipathPolicy[]) {
  describe(`policy ${policy}`, () => {
    it('cut one path of two while RPC traffic runs: no call fails, no nodedown, each call served once and in order', async () => {
      const c = (cluster = await mpCluster(3, { policy }));
      const got = recorder(c.nodes.get(2)!.communication);
      const traffic = startTraffic(c.nodes.get(1)!.communication, 2, TOTAL);
      let cut = false;
      await c.until(() => {
        if (!cut && traffic.settled >= TOTAL / 4) {
          // A pulled cable: frames vanish silently in both directions (no reset).
          c.network.partition(pathAddress(1, 0), pathAddress(2, 0));
          cut = true;
        }
        return traffic.done;
      }, 60_000, 'the traffic');
      expect(cut).toBe(true);
      expect(traffic.failures).toEqual([]);
      expect(traffic.results).toEqual(upTo(TOTAL));
      expect(got).toEqual(upTo(TOTAL));
      expect(c.nodedowns).toEqual([]);
      const link = busiestLink(c, 1, 2);
      expect(link.paths[0]!.failures).toBeGreaterThanOrEqual(1);
      expect(link.paths[0]!.state).not.toBe('up');
      expect(link.paths[1]!.state).toBe('up');
      expect(link.paths[1]!.active).toBe(true);
      // Frames that were on the cut path when it died went again on the other one.
      expect(link.retransmitted).toBeGreaterThan(0);
      if (policy === 'both-active') {
        // Before the cut both paths carried data.
        expect(link.paths[0]!.framesSent).toBeGreaterThan(TOTAL / 20);
      }
    });

    it('a flapping path: traffic keeps flowing, the path is used again each time it comes back', async () => {
      const c = (cluster = await mpCluster(3, { policy }));
      const got = recorder(c.nodes.get(2)!.communication);
      const traffic = startTraffic(c.nodes.get(1)!.communication, 2, TOTAL, 4);
      const flaps = [TOTAL / 8, (2 * TOTAL) / 8, (3 * TOTAL) / 8, (4 * TOTAL) / 8];
      // healthy -> cut (300 ms) -> healing (until the path is up again, on a new connection) -> healthy
      let state: 'healthy' | 'cut' | 'healing' = 'healthy';
      let cutAt = 0;
      let upsBefore = 0;
      let comebacks = 0;
      await c.until(() => {
        const path0 = busiestLink(c, 1, 2).paths[0]!;
        if (state === 'healthy' && flaps.length > 0 && traffic.settled >= flaps[0]!) {
          flaps.shift();
          upsBefore = path0.ups;
          // Alternate a silent cut and a reset of the path's connections.
          if (flaps.length % 2 === 0) c.network.partition(pathAddress(1, 0), pathAddress(2, 0));
          else c.network.killLinks(pathAddress(1, 0), pathAddress(2, 0));
          state = 'cut';
          cutAt = c.clock.now();
        } else if (state === 'cut' && c.clock.now() - cutAt >= 300) {
          c.network.heal(pathAddress(1, 0), pathAddress(2, 0));
          state = 'healing';
        } else if (state === 'healing' && path0.ups > upsBefore && path0.state === 'up') {
          comebacks++;
          state = 'healthy';
        }
        return traffic.done && comebacks === 4;
      }, 120_000, 'traffic through four flaps');
      expect(traffic.failures).toEqual([]);
      expect(got).toEqual(upTo(TOTAL));
      expect(c.nodedowns).toEqual([]);
      const link = busiestLink(c, 1, 2);
      expect(link.paths[0]!.failures).toBeGreaterThanOrEqual(4);
      expect(link.paths[0]!.state).toBe('up');
      // Back in use: the preferred path is active again (active/standby), or carries its share (both-active).
      const sentBefore = link.paths[0]!.framesSent;
      const more = startTraffic(c.nodes.get(1)!.communication, 2, 50, 4);
      await c.until(() => more.done, 30_000, 'more traffic');
      expect(busiestLink(c, 1, 2).paths[0]!.framesSent).toBeGreaterThan(sentBefore);
      if (policy === 'active-standby') expect(link.paths[0]!.active).toBe(true);
    });
  });
}

describe('links without a cluster (virtual clock)', () => {
  it('cut both paths: the link stays open (frames kept) until the bound, then closes with reset', async () => {
    const clock = new VirtualClock();
    const { network, outbound, inbound } = await linkPair(clock, { linkTimeoutMs: 2000 });
    const inW = watch(inbound);
    const outW = watch(outbound);
    outbound.send(numbered(0));
    await clock.advanceUntil(() => inW.frames.length === 1, 1000);
    network.partition(pathAddress(1, 0), pathAddress(2, 0));
    network.partition(pathAddress(1, 1), pathAddress(2, 1));
    const cutAt = clock.now();
    outbound.send(numbered(1));
    // Every path is down well before the bound, and the link is still open at it.
    await clock.advance(2000);
    expect(outbound.state).toBe('open');
    expect(inbound.state).toBe('open');
    expect(outW.closed).toBeUndefined();
    expect(await clock.advanceUntil(() => outW.closed !== undefined && inW.closed !== undefined, 2000)).toBe(true);
    expect(outW.closed!.reason).toBe('reset');
    expect(inW.closed!.reason).toBe('reset');
    expect(clock.now() - cutAt).toBeGreaterThan(2000);
    expect(inW.frames).toEqual([0]);
  });

  it('cut both paths, heal one before the bound: frames sent meanwhile arrive once, in order, and the link never closed', async () => {
    const clock = new VirtualClock();
    const { network, outbound, inbound } = await linkPair(clock, { linkTimeoutMs: 3000 });
    const inW = watch(inbound);
    watch(outbound);
    for (let i = 0; i < 10; i++) outbound.send(numbered(i));
    network.partition(pathAddress(1, 0), pathAddress(2, 0));
    network.partition(pathAddress(1, 1), pathAddress(2, 1));
    for (let i = 10; i < 30; i++) outbound.send(numbered(i));
    await clock.advance(1000);
    network.heal(pathAddress(1, 1), pathAddress(2, 1));
    expect(await clock.advanceUntil(() => inW.frames.length === 30, 5000)).toBe(true);
    await clock.advance(5000);
    expect(inW.frames).toEqual(upTo(30));
    expect(inW.closed).toBeUndefined();
    expect(outbound.state).toBe('open');
    expect(outbound.bufferedBytes).toBe(0);
  });

  it('a restarted peer does not know the link: the redial is refused and the link resets before the bound', async () => {
    const clock = new VirtualClock();
    const { network, outbound, server, make } = await linkPair(clock, { linkTimeoutMs: 60_000 });
    const outW = watch(outbound);
    // The peer dies and comes back at the same addresses as a new incarnation.
    for (const p of [0, 1]) network.crash(pathAddress(2, p));
    server.destroy();
    const again = make(2);
    await again.listen();
    expect(await clock.advanceUntil(() => outW.closed !== undefined, 10_000)).toBe(true);
    expect(outW.closed!.reason).toBe('reset');
    expect(outW.closed!.error?.message).toMatch(/no longer knows/);
    await again.close();
  });
});
