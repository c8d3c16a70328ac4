/**
 * What a peer that passed the handshake can make this node hold, over the
 * memory transport (issue 15, section 1). The peer speaks the wire format
 * itself (rogue.ts); the TCP twin is packages/transport-tcp/test/ics-hostile.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type Ics, type IcsOptions, WireStatus } from '@clusterinfra/core';
import { FrameType, type ResponseFrame } from '../../src/ics/wire/index.js';
import { makeCluster, type TestCluster } from './harness.js';
import { onDefault, rogue, type Rogue } from './rogue.js';

let cluster: TestCluster | undefined;
const rogues: Rogue[] = [];
afterEach(async () => {
  for (const r of rogues.splice(0)) r.close();
  await cluster?.close();
  cluster = undefined;
});

const SINK = { channel: 'default', subservice: 1 };

async function target(extra: Partial<IcsOptions> = {}): Promise<Ics> {
  cluster = await makeCluster('memory', 1, { extra: () => extra });
  const t = cluster.node(1);
  t.registerService({ ...SINK, name: 'sink', handlers: { put: (x) => (Array.isArray(x) ? x.length : 0) } });
  return t;
}

async function attacker(t: Ics, nodeNum: number): Promise<Rogue> {
  const r = await rogue(cluster!.network!, t, nodeNum);
  rogues.push(r);
  return r;
}

const responses = (r: Rogue): ResponseFrame[] => r.frames.filter((f): f is ResponseFrame => f.type === FrameType.Response);

async function answered(r: Rogue, id: number): Promise<ResponseFrame> {
  await expect.poll(() => responses(r).some((f) => f.id === id)).toBe(true);
  return responses(r).find((f) => f.id === id)!;
}

describe('ICS bounds: out-of-line references', () => {
  it('refuses values for an unknown service before holding any of them', async () => {
    const t = await target();
    const r = await attacker(t, 50);
    r.bulkMessage({ id: 1, service: onDefault(99), refs: 500 });
    r.bulkMessage({ id: 2, service: onDefault(99), refs: 500, firstStream: 501, oneWay: true });
    r.bulkMessage({ id: 3, service: onDefault(1), method: 'nope', refs: 500, firstStream: 1001 });
    expect((await answered(r, 1)).status).toBe(WireStatus.NOT_FOUND);
    expect((await answered(r, 3)).status).toBe(WireStatus.NOT_FOUND);
    await expect.poll(() => t.stats().dropped).toBeGreaterThanOrEqual(3);
    expect(t.stats().bulkStreamsPending).toBe(0);
    expect(t.stats().bulkBytesPending).toBe(0);
    // Their chunks are read and dropped.
    for (let s = 1; s <= 1500; s += 100) r.chunk(s, new Uint8Array([1]));
    await expect.poll(() => t.stats().bulkBytesReceived).toBe(15);
    expect(t.stats().bulkStreamsPending).toBe(0);
  });

  it('charges every value at least bulkStreamCost, per peer and node-wide, and keeps nothing for a refused one', async () => {
    const t = await target({ bulkReceiveBudget: 64 * 1024, bulkReceiveBudgetTotal: 96 * 1024, bulkStreamCost: 4096 });
    const a = await attacker(t, 50);
    const b = await attacker(t, 51);
    // 16 one-byte values cost 16 × 4 KiB: the whole per-peer budget.
    a.bulkMessage({ id: 1, service: onDefault(1), refs: 16 });
    await expect.poll(() => t.stats().bulkStreamsPending).toBe(16);
    expect(t.stats().bulkBytesPending).toBe(64 * 1024);
    a.bulkMessage({ id: 2, service: onDefault(1), refs: 1, firstStream: 100 });
    const refused = await answered(a, 2);
    expect(refused.status).toBe(WireStatus.RESOURCE_EXHAUSTED);
    expect(String((refused.body as { message: string }).message)).toContain('per-peer');
    expect(t.stats().bulkStreamsPending).toBe(16);
    // Another identity gets only what is left node-wide.
    b.bulkMessage({ id: 1, service: onDefault(1), refs: 8 });
    await expect.poll(() => t.stats().bulkStreamsPending).toBe(24);
    b.bulkMessage({ id: 2, service: onDefault(1), refs: 1, firstStream: 100 });
    expect(String(((await answered(b, 2)).body as { message: string }).message)).toContain("node's bulk budget");
    expect(t.stats().bulkBytesPending).toBe(96 * 1024);
    // The accepted message is delivered once its values are in, and its charge is released.
    for (let s = 1; s <= 16; s++) a.chunk(s, new Uint8Array([s]));
    const done = await answered(a, 1);
    expect(done.status).toBe(WireStatus.OK);
    expect(done.body).toBe(16);
    expect(t.stats().bulkBytesPending).toBe(32 * 1024);
    expect(t.stats().bulkStreamsPending).toBe(8);
  });

  it('caps the values pending per peer', async () => {
    const t = await target({ maxBulkStreamsPerPeer: 4 });
    const a = await attacker(t, 50);
    a.bulkMessage({ id: 1, service: onDefault(1), refs: 3 });
    a.bulkMessage({ id: 2, service: onDefault(1), refs: 2, firstStream: 10 });
    expect((await answered(a, 2)).status).toBe(WireStatus.RESOURCE_EXHAUSTED);
    expect(t.stats().bulkStreamsPending).toBe(3);
  });

  it('closes a link whose message carries more references than maxBulkRefsPerMessage', async () => {
    const t = await target({ maxBulkRefsPerMessage: 8 });
    const a = await attacker(t, 50);
    a.bulkMessage({ id: 1, service: onDefault(1), refs: 8 });
    await expect.poll(() => t.stats().bulkStreamsPending).toBe(8);
    a.bulkMessage({ id: 2, service: onDefault(1), refs: 9, firstStream: 100 });
    await a.link.closed;
    expect(t.stats().bulkStreamsPending).toBe(0);
    expect(t.stats().bulkBytesPending).toBe(0);
  });

  it('a sender refuses to put more values in one message than maxBulkRefsPerMessage', async () => {
    cluster = await makeCluster('memory', 2, { extra: () => ({ maxBulkRefsPerMessage: 2, bulkThreshold: 1024 }) });
    cluster.node(2).registerService({ ...SINK, name: 'sink', handlers: { put: (x) => (x as unknown[]).length } });
    const big = () => new Uint8Array(2048);
    await expect(cluster.node(1).call(2, SINK, 'put', [big(), big()])).resolves.toBe(2);
    await expect(cluster.node(1).call(2, SINK, 'put', [big(), big(), big()])).rejects.toMatchObject({ code: 'ICS_ERR_RESOURCE_EXHAUSTED' });
  });
});
