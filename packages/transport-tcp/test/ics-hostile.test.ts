/**
 * Hostile members against an ICS node over TCP (issue 15, section 1): a
 * client that passes the handshake and then speaks the ICS wire format
 * itself. Each test bounds what the node holds; the RSS figures it prints
 * are for the record, not asserted (bench/hostile.ts measures them in a
 * separate process).
 */
import { createIcs, type Ics, type IcsOptions, silentLogger, WireStatus } from '@clusterinfra/core';
import { afterEach, describe, expect, it } from 'vitest';
import { FrameType, type IcsFrame, type ResponseFrame } from '../../core/src/ics/wire/index.js';
import { tcp } from '../src/index.js';
import { tcpRogue, type TcpRogue } from './ics-rogue.js';

const nodes: Ics[] = [];
const rogues: TcpRogue[] = [];
afterEach(async () => {
  for (const r of rogues.splice(0)) r.socket.destroy();
  await Promise.all(nodes.splice(0).map((n) => n.close()));
});

const SINK = { channel: 'default', subservice: 1 };

async function node(nodeNum: number, extra: Partial<IcsOptions> = {}, peers: Record<string, string> = {}): Promise<Ics> {
  const ics = createIcs({ transport: tcp({ host: '127.0.0.1', port: 0 }), clusterName: 'test', nodeNum, logger: silentLogger, peers, closeGraceMs: 100, ...extra });
  nodes.push(ics);
  await ics.start();
  return ics;
}

async function target(extra: Partial<IcsOptions> = {}): Promise<Ics> {
  const t = await node(1, extra);
  t.registerService({ ...SINK, name: 'sink', handlers: { put: (x) => (Array.isArray(x) ? x.length : 0), echo: (x) => x } });
  return t;
}

async function rogue(t: Ics, nodeNum: number): Promise<TcpRogue> {
  const r = await tcpRogue(t.address!, nodeNum);
  rogues.push(r);
  return r;
}

/** The rogue's socket drained, or the node closed it. */
const writable = (r: TcpRogue): Promise<unknown> => Promise.race([new Promise((resolve) => r.socket.once('drain', resolve)), r.closed]);

const responses = (frames: IcsFrame[]): ResponseFrame[] => frames.filter((f): f is ResponseFrame => f.type === FrameType.Response);
const mib = (n: number): string => (n / 1024 / 1024).toFixed(1);

function rss(label: string, before: number): void {
  console.log(`[ics-hostile] ${label}: RSS ${mib(before)} → ${mib(process.memoryUsage().rss)} MiB`);
}

describe('ICS over TCP against a hostile member', () => {
  it('tens of thousands of one-byte references to an unknown service hold nothing', async () => {
    const t = await target();
    const r = await rogue(t, 50);
    const frames = r.collect();
    const before = process.memoryUsage().rss;
    for (let id = 1; id <= 60; id++) r.tinyRefs(id, 99, 1000, id * 1000, id % 2 === 0);
    await expect.poll(() => t.stats().messagesReceived).toBe(60);
    await expect.poll(() => responses(frames).length).toBe(30);
    expect(responses(frames).every((f) => f.status === WireStatus.NOT_FOUND)).toBe(true);
    expect(t.stats().bulkStreamsPending).toBe(0);
    expect(t.stats().bulkBytesPending).toBe(0);
    rss('60,000 refs to an unknown service', before);
  });

  it('one-byte references to a real service are charged at bulkStreamCost and capped', async () => {
    const t = await target();
    const r = await rogue(t, 50);
    const frames = r.collect();
    for (let id = 1; id <= 40; id++) r.tinyRefs(id, 1, 1000, id * 1000);
    await expect.poll(() => t.stats().messagesReceived).toBe(40);
    // 4096 values pending per peer at most, each charged 4 KiB: the rest refused.
    expect(t.stats().bulkStreamsPending).toBe(4000);
    expect(t.stats().bulkBytesPending).toBe(4000 * 4096);
    await expect.poll(() => responses(frames).length).toBe(36);
    expect(responses(frames).every((f) => f.status === WireStatus.RESOURCE_EXHAUSTED)).toBe(true);
    // Past maxBulkRefsPerMessage the frame is refused and the link closed.
    r.tinyRefs(41, 1, 1025, 100_000);
    await r.closed;
    await expect.poll(() => t.stats().bulkStreamsPending).toBe(0);
  });

  it('a member that sends past the window loses its link; the service still serves the others', async () => {
    const t = await target();
    let running = 0;
    t.registerService({
      channel: 'default',
      subservice: 2,
      name: 'slow',
      handlers: { hold: (_x, ctx) => (running++, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve))), ping: () => 'pong' },
    });
    const r = await rogue(t, 50);
    const before = process.memoryUsage().rss;
    const half = 'h'.repeat(512 * 1024);
    for (let id = 1; id <= 1088 && !r.socket.destroyed; id++) {
      if (!r.request(id, 2, 'hold', half)) await writable(r);
    }
    await r.closed;
    expect(t.stats().linksClosedForViolation).toBe(1);
    // 8 MiB of window: 16 requests of 512 KiB went in (the 17th with credit left), no more.
    expect(running).toBeLessThanOrEqual(17);
    const other = await node(2, {}, { '1': t.address! });
    await expect(other.call(1, { channel: 'default', subservice: 2 }, 'ping')).resolves.toBe('pong');
    rss('1,088 requests of 512 KiB against an 8 MiB window', before);
  });

  it('a member that never reads its answers is not served, and is closed when it overruns the window', async () => {
    const t = await target();
    const r = await rogue(t, 50);
    r.socket.pause(); // never reads
    const before = process.memoryUsage().rss;
    let served = 0;
    t.on('drop', () => undefined);
    const body = 'e'.repeat(16 * 1024);
    for (let id = 1; id <= 4000 && !r.socket.destroyed; id++) {
      if (!r.request(id, 1, 'echo', body)) await writable(r);
    }
    await r.closed;
    served = t.stats().requestsServed;
    expect(t.stats().linksClosedForViolation).toBe(1);
    // Served until the unsent answers passed linkBacklogHighWater (plus what the kernel took).
    expect(served).toBeLessThan(1024);
    rss(`a member that never reads (served ${served})`, before);
  });

  it('a member that floods priority requests and never reads is no longer read', async () => {
    const t = await target({ linkBacklogHighWater: 256 * 1024 });
    const r = await rogue(t, 50);
    r.socket.pause();
    const body = 'p'.repeat(16 * 1024);
    // 32 MiB of priority requests, written whatever the socket says.
    for (let id = 1; id <= 2000; id++) r.request(id, 1, 'echo', body, true);
    // Wait until the target stops reading (its count holds for 300 ms; a
    // loaded machine takes a while to get there), then check it stays still.
    const pause = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 300));
    let read = -1;
    for (let i = 0; i < 50 && t.stats().messagesReceived !== read; i++) {
      read = t.stats().messagesReceived;
      await pause();
    }
    await pause();
    expect(t.stats().messagesReceived).toBe(read);
    expect(read).toBeLessThan(2000);
    expect(r.socket.writableLength).toBeGreaterThan(0);
    expect(t.stats().linksClosedForViolation).toBe(0);
  });

  it('identities made up one per connection are forgotten', async () => {
    const t = await target();
    const before = process.memoryUsage().rss;
    for (let n = 1000; n < 1200; n++) {
      const r = await rogue(t, n);
      r.request(1, 1, 'put', [1]);
      for (let f = await r.reader.next(); f && (f.kind !== 'data' || f.data[0] !== FrameType.Response); f = await r.reader.next());
      r.socket.destroy();
      await r.closed;
    }
    await expect.poll(() => t.stats().peers).toBe(0);
    rss('200 identities', before);
  });

  it('one-way messages with 1 MiB values between two nodes: trySend asks to wait, all arrive', async () => {
    const b = await node(2);
    let got = 0;
    b.registerService({ ...SINK, name: 'sink', handlers: { put: () => void got++ } });
    const a = await node(1, {}, { '2': b.address! });
    await a.call(2, SINK, 'put');
    got = 0;
    let waits = 0;
    for (let i = 0; i < 96; i += 4) {
      let flowing = true;
      for (let j = 0; j < 4; j++) flowing = a.trySend(2, SINK, 'put', { data: Buffer.alloc(1024 * 1024, j) }) && flowing;
      if (!flowing) {
        waits++;
        await new Promise<void>((resolve) => a.once('drain', () => resolve()));
      }
    }
    await expect.poll(() => got, { timeout: 20_000 }).toBe(96);
    expect(waits).toBeGreaterThan(0);
    expect(a.stats().oneWayDropped).toBe(0);
    expect(b.stats().dropped).toBe(0);
  });
});
