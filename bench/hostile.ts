/**
 * RSS of an ICS node under the hostile-member scenarios of issue 15 (§1).
 * `tsx bench/hostile.ts [scenario…]` forks one target node per scenario (an
 * ICS node over TCP on 127.0.0.1, its own process), attacks it from this
 * process with a client that does the raw handshake and writes ICS frames
 * by hand, and prints JSON: the target's RSS at rest, its peak during the
 * attack (sampled every 20 ms) and after, plus what the node says it holds.
 * Figures, not assertions: the tests in packages/transport-tcp/test/
 * ics-hostile.test.ts check the bounds.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

interface Report {
  address?: string;
  rss?: number;
  peak?: number;
  stats?: Record<string, number>;
}

const MIB = 1024 * 1024;

async function runTarget(): Promise<void> {
  const { createIcs, silentLogger } = await import('@clusterinfra/core');
  const { tcp } = await import('@clusterinfra/transport-tcp');
  const ics = createIcs({ transport: tcp({ host: '127.0.0.1', port: 0 }), clusterName: 'test', nodeNum: 1, logger: silentLogger, closeGraceMs: 100 });
  await ics.start();
  ics.registerService({ channel: 'default', subservice: 1, name: 'sink', handlers: { put: () => 0, echo: (x: unknown) => x } });
  ics.registerService({
    channel: 'default',
    subservice: 2,
    name: 'slow',
    handlers: { hold: (_x: unknown, ctx: { signal: AbortSignal }) => new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)) },
  });
  let peak = 0;
  const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20); // allowed: a bench process, not core
  const send = (r: Report): boolean => process.send!(r);
  process.on('message', (m: string) => {
    if (m === 'reset') peak = process.memoryUsage().rss;
    if (m === 'report') {
      const { rss } = process.memoryUsage();
      send({ rss, peak: Math.max(peak, rss), stats: ics.stats() as unknown as Record<string, number> });
    }
    if (m === 'exit') {
      clearInterval(sample);
      void ics.close().then(() => process.exit(0));
    }
  });
  send({ address: ics.address!, rss: process.memoryUsage().rss });
}

function ask(child: ChildProcess, what: string): Promise<Report> {
  return new Promise((resolve) => {
    child.once('message', (r: Report) => resolve(r));
    child.send(what);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms)); // allowed: bench

type Attack = (address: string) => Promise<string>;

async function main(): Promise<void> {
  const { tcpRogue } = await import('../packages/transport-tcp/test/ics-rogue.js');
  const { FrameType } = await import('../packages/core/src/ics/wire/index.js');
  const flood = async (r: Awaited<ReturnType<typeof tcpRogue>>, n: number, one: (id: number) => boolean): Promise<number> => {
    let id = 1;
    for (; id <= n && !r.socket.destroyed; id++) {
      if (!one(id)) await Promise.race([new Promise((res) => r.socket.once('drain', res)), r.closed, sleep(2000)]);
    }
    return id - 1;
  };
  const attacks: Record<string, Attack> = {
    'tiny-refs-unknown-service': async (address) => {
      const r = await tcpRogue(address, 50);
      r.collect();
      const sent = await flood(r, 400, (id) => r.tinyRefs(id, 99, 1000, id * 1000));
      await sleep(500);
      r.socket.destroy();
      return `${sent} frames × 1000 one-byte references`;
    },
    'tiny-refs-real-service': async (address) => {
      const r = await tcpRogue(address, 50);
      r.collect();
      const sent = await flood(r, 400, (id) => r.tinyRefs(id, 1, 1000, id * 1000));
      await sleep(500);
      return `${sent} frames × 1000 one-byte references (never completed)`;
    },
    'never-reads': async (address) => {
      const r = await tcpRogue(address, 50);
      r.socket.pause();
      const body = 'e'.repeat(16 * 1024);
      const until = Date.now() + 2500; // allowed: bench
      let id = 0;
      while (Date.now() < until && !r.socket.destroyed) {
        if (!r.request(++id, 1, 'echo', body)) await Promise.race([new Promise((res) => r.socket.once('drain', res)), r.closed, sleep(100)]);
      }
      return `${id} echo requests of 16 KiB in 2.5 s, answers never read${r.socket.destroyed ? ' (closed by the node)' : ''}`;
    },
    'window-overrun': async (address) => {
      const r = await tcpRogue(address, 50);
      r.collect();
      const half = 'h'.repeat(512 * 1024);
      const sent = await flood(r, 1088, (id) => r.request(id, 2, 'hold', half));
      await sleep(500);
      return `${sent} requests of 512 KiB to a slow service${r.socket.destroyed ? ' (closed by the node)' : ''}`;
    },
    'oneway-1mib-values': async (address) => {
      // Not hostile: the two-process case, trySend of 1 MiB values in batches of 4 with the drain protocol.
      const { createIcs, silentLogger } = await import('@clusterinfra/core');
      const { tcp } = await import('@clusterinfra/transport-tcp');
      const ics = createIcs({ transport: tcp({ host: '127.0.0.1', port: 0 }), clusterName: 'test', nodeNum: 2, logger: silentLogger, peers: { '1': address } });
      await ics.start();
      const sink = { channel: 'default', subservice: 1 };
      await ics.call(1, sink, 'put');
      const t0 = Date.now(); // allowed: bench
      let sent = 0;
      let waits = 0;
      while (Date.now() - t0 < 3000) {
        let flowing = true;
        for (let j = 0; j < 4; j++, sent++) flowing = ics.trySend(1, sink, 'put', { data: Buffer.alloc(1024 * 1024, j) }) && flowing;
        if (!flowing) {
          waits++;
          await new Promise<void>((resolve) => ics.once('drain', () => resolve()));
        }
      }
      const dropped = ics.stats().oneWayDropped;
      await sleep(1000);
      await ics.close();
      return `${sent} one-way messages with a 1 MiB value in 3 s (${((sent * 1.048576) / 3).toFixed(0)} MB/s offered), trySend asked to wait ${waits} times, ${dropped} dropped; delivered: see requestsServed (+1 for the first call)`;
    },
    'identity-churn': async (address) => {
      for (let n = 1000; n < 2000; n++) {
        const r = await tcpRogue(address, n);
        r.request(1, 1, 'put', [1]);
        for (let f = await r.reader.next(); f && (f.kind !== 'data' || f.data[0] !== FrameType.Response); f = await r.reader.next());
        r.socket.destroy();
        await r.closed;
      }
      return '1000 node numbers, one connection and one call each';
    },
  };
  const wanted = process.argv.slice(2).filter((a) => a in attacks);
  const results: unknown[] = [];
  for (const name of wanted.length > 0 ? wanted : Object.keys(attacks)) {
    const child = fork(fileURLToPath(import.meta.url), ['target'], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
    const ready = await new Promise<Report>((resolve) => child.once('message', (r: Report) => resolve(r)));
    await sleep(300);
    const rest = await ask(child, 'report');
    child.send('reset');
    console.error(`[hostile] ${name}…`);
    const what = await attacks[name]!(ready.address!);
    await sleep(300);
    const after = await ask(child, 'report');
    const s = after.stats!;
    results.push({
      scenario: name,
      attack: what,
      rssAtRestMiB: +(rest.rss! / MIB).toFixed(1),
      rssPeakMiB: +(after.peak! / MIB).toFixed(1),
      rssAfterMiB: +(after.rss! / MIB).toFixed(1),
      held: {
        bulkStreamsPending: s.bulkStreamsPending,
        bulkBytesPending: s.bulkBytesPending,
        peers: s.peers,
        linksClosedForViolation: s.linksClosedForViolation,
        requestsServed: s.requestsServed,
      },
    });
    child.send('exit');
    await new Promise((r) => child.once('exit', r));
  }
  console.log(JSON.stringify(results, null, 2));
}

if (process.argv[2] === 'target') await runTarget();
else await main();
