import type { Link } from '@clusterinfra/core';
import { describe, expect, it } from 'vitest';
import { frame, seqOf, settle, world } from './helpers.js';

/**
 * Four nodes, every pair linked, traffic both ways for 600 virtual ms over a
 * network with latency, jitter, loss, duplication and reordering, through a
 * partition, a one-way partition, a pause and a heal.
 */
async function scenario(seed: number, traceHash = true) {
  const w = world({
    seed,
    traceHash,
    traceLimit: 100_000,
    faults: { latencyMs: 5, jitterMs: 15, dropRate: 0.05, duplicateRate: 0.05, reorderRate: 0.1 },
  });
  const deliveries: string[] = [];
  const log = (link: Link) => (f: Uint8Array) =>
    deliveries.push(`${w.clock.now()} ${link.local.nodeNum}<${link.remote.nodeNum} #${seqOf(f)}/${f.byteLength}`);
  const nodes = [1, 2, 3, 4].map((n) => w.node(n));
  const listeners = await Promise.all(nodes.map((n) => n.listen()));
  const links: Link[] = [];
  for (const l of listeners) {
    l.on('link', (link) => {
      links.push(link);
      const record = log(link);
      link.on('frame', (f) => {
        record(f);
        if (seqOf(f) % 3 === 0 && link.state === 'open') link.send(frame(seqOf(f) + 1_000_000, 12));
      });
      link.resume();
    });
  }
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const link = await settle(w.clock, nodes[i]!.connect(listeners[j]!.address));
      link.on('frame', log(link));
      link.resume();
      links.push(link);
    }
  }
  w.network.setLinkFaults('node-1', 'node-2', { latencyMs: 30, jitterMs: 30, dropRate: 0.2, reorderRate: 0.3 });
  let seq = 0;
  for (let t = 0; t < 600; t += 7) {
    if (t === 140) w.network.partition('node-1', 'node-3');
    if (t === 210) w.network.pause('node-4');
    if (t === 280) w.network.resume('node-4');
    if (t === 301) w.network.partition('node-2', 'node-4', { oneWay: true });
    if (t === 455) w.network.heal();
    for (const link of links) if (link.state === 'open') link.send(frame(seq++, 8 + (seq % 40)));
    await w.clock.advance(7);
  }
  await w.clock.advance(1000);
  return { hash: traceHash ? w.network.traceHash() : undefined, trace: w.network.trace, deliveries, stats: w.network.stats(), network: w.network };
}

describe('determinism', () => {
  it('the same seed on a virtual clock replays the same trace and deliveries; another seed does not', async () => {
    const a = await scenario(42);
    const b = await scenario(42);
    const c = await scenario(43);

    // The scenario really exercised every fault.
    expect(a.stats.dropped).toBeGreaterThan(0);
    expect(a.stats.duplicated).toBeGreaterThan(0);
    expect(a.stats.reordered).toBeGreaterThan(0);
    expect(a.stats.blackholed).toBeGreaterThan(0);
    expect(a.stats.held).toBeGreaterThan(0);
    expect(a.deliveries.length).toBeGreaterThan(500);

    expect(b.hash).toBe(a.hash);
    expect(b.deliveries).toEqual(a.deliveries);
    expect(b.stats).toEqual(a.stats);

    expect(c.hash).not.toBe(a.hash);
    expect(c.deliveries).not.toEqual(a.deliveries);
  });

  it('the hash covers frame contents, not only their order and size', async () => {
    const run = async (fill: number) => {
      const w = world({ seed: 1 });
      const l = await w.node(1).listen();
      const link = await settle(w.clock, w.node(2).connect(l.address));
      link.send(new Uint8Array(16).fill(fill));
      await w.clock.advance(0);
      return w.network.traceHash();
    };
    expect(await run(1)).toBe(await run(1));
    expect(await run(1)).not.toBe(await run(2));
  });

  it('traceHash: false keeps the same trace, deliveries and counters, and traceHash() says it was turned off', async () => {
    const hashed = await scenario(42);
    const plain = await scenario(42, false);
    expect(plain.trace.length).toBeGreaterThan(500);
    expect(plain.trace).toEqual(hashed.trace);
    expect(plain.deliveries).toEqual(hashed.deliveries);
    expect(plain.stats).toEqual(hashed.stats);
    expect(() => plain.network.traceHash()).toThrow(expect.objectContaining({ name: 'InvalidOptionError', code: 'CONFIG_ERR_INVALID_OPTION', path: 'traceHash' }));
    expect(() => world({ traceHash: 'no' as unknown as boolean })).toThrow(expect.objectContaining({ code: 'CONFIG_ERR_INVALID_OPTION' }));
  });
});
