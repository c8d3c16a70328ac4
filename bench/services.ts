/**
 * @clusterinfra/services over transport-tcp on 127.0.0.1, every node in this
 * one process (real clock, preset `local`), each figure beside a baseline
 * measured in the same run:
 *
 * - by-name call latency (p50): `services.call('bench.Echo', 'echo', x)` on
 *   node 1 for a service only node 2 serves, against `ics.call(2, …)` of the
 *   same handler; samples alternate between the two, so load drifts hit
 *   both alike. Target: ratio ≤ 1.1.
 * - events/s, broadcast to 1 and to 8 subscriber nodes: node 1 publishes
 *   small events, up to 256 publishes in flight, until every subscriber
 *   counted every event; against `ics.send` of the same payload to the
 *   same nodes by hand (one message per node per event), paced the same way.
 *
 *   npx tsx bench/services.ts          # prints the rows; merges them into bench/results.json
 *   npx tsx bench/services.ts --json   # the rows as JSON on stdout only
 *   npx tsx bench/services.ts --only=call,events1,events8   # some rows (merged the same way)
 *
 * In one process every node shares one event loop: absolute figures are
 * pessimistic next to separate processes; the ratios are what to compare.
 */
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { ClusterNode, Ics } from '../packages/core/src/index.js';
import { createRegistry, type Registry } from '../packages/registry/src/index.js';
import { createServices, type Services } from '../packages/services/src/index.js';
import { median, mergeResultRows, type ResultRow, SMALL } from './common.js';
import { rowOf, tcpNodes } from './tcp-nodes.js';

type Row = ResultRow<'services'>;

const JSON_ONLY = process.argv.includes('--json');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const IN_FLIGHT = 256;
const DRAIN_MS = 60_000;
const log = (line: string): void => {
  if (!JSON_ONLY) console.log(line);
};

const ECHO = { channel: 'default', subservice: 77 } as const;
const SINK = { channel: 'default', subservice: 78 } as const;

interface Cluster {
  nodes: ClusterNode[];
  services: Services[];
  close(): Promise<void>;
}

async function cluster(size: number): Promise<Cluster> {
  const nodes = await tcpNodes(size, 'services-bench');
  // Before node.start(): the map's key service.
  const registries: Registry[] = nodes.map((node) => createRegistry(node, { name: 'services', subservice: 40 }));
  const services: Services[] = nodes.map((node, i) => createServices(node, { registry: registries[i]!, subservice: 41 }));
  await Promise.all(nodes.map((x) => x.start()));
  await Promise.all(services.map((s) => s.start()));
  return {
    nodes,
    services,
    close: async () => {
      for (const s of services) await s.close();
      for (const r of registries) await r.close();
      await Promise.all(nodes.map((x) => x.close()));
    },
  };
}

const row = rowOf('services');

/** p50 µs of `a` and of `b`, sampled alternately for SECONDS (after a warm-up of as long: both paths compiled by the JIT). */
async function pairedP50(a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<[number, number]> {
  for (const warm = performance.now() + SECONDS * 1000; performance.now() < warm; ) {
    await a();
    await b();
  }
  const sa: number[] = [];
  const sb: number[] = [];
  const end = performance.now() + SECONDS * 1000;
  for (let i = 0; performance.now() < end; i++) {
    const [first, second, s1, s2] = i % 2 ? [a, b, sa, sb] : [b, a, sb, sa];
    let t = performance.now();
    await first();
    s1.push((performance.now() - t) * 1000);
    t = performance.now();
    await second();
    s2.push((performance.now() - t) * 1000);
  }
  return [median(sa), median(sb)];
}

async function byNameCall(): Promise<Row[]> {
  const c = await cluster(2);
  try {
    const server = c.nodes[1]!.communication;
    await c.services[1]!.register({ name: 'bench.Echo', ...ECHO, handlers: { echo: (x) => x } });
    const caller = c.services[0]!;
    const ics = c.nodes[0]!.communication;
    const [byName, direct] = await pairedP50(
      () => caller.call('bench.Echo', 'echo', SMALL),
      () => ics.call(2, ECHO, 'echo', SMALL),
    );
    void server;
    log(`call p50: by name ${byName.toFixed(1)} µs, direct ics.call ${direct.toFixed(1)} µs (ratio ${(byName / direct).toFixed(3)})`);
    return [row('by-name call p50 (1 provider)', 'µs', 'lower', byName, direct)];
  } finally {
    await c.close();
  }
}

/**
 * Events per second: `send(i)` starts event i and resolves with how many of
 * its messages could not be handed over; `counts()` are the events each
 * receiver counted. Every event must arrive: a shortfall after DRAIN_MS is
 * an error that says where the events went.
 */
async function eventRate(send: (i: number) => Promise<number>, counts: () => number[], diagnose: () => string): Promise<number> {
  const base = [...counts()];
  let sent = 0;
  let failed = 0;
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  const inFlight = new Set<Promise<unknown>>();
  while (performance.now() < end) {
    const p: Promise<unknown> = send(sent++).then((f) => (failed += f)).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  const drainBy = performance.now() + DRAIN_MS;
  while (counts().some((n, i) => n - base[i]! < sent)) {
    if (performance.now() > drainBy || failed > 0) {
      throw new Error(`${sent} events sent, ${failed} messages not handed over, received ${counts().map((n, i) => n - base[i]!).join('/')}: ${diagnose()}`);
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  return sent / ((performance.now() - t0) / 1000);
}

async function events(subscribers: number): Promise<Row[]> {
  const c = await cluster(subscribers + 1);
  try {
    const subs = c.services.slice(1);
    const got = subs.map(() => 0);
    const raw = subs.map(() => 0);
    await Promise.all(subs.map((s, i) => s.subscribe('bench.tick', () => void got[i]!++)));
    // The same pool as the event service's, so neither side refuses what the channel's window lets through.
    subs.forEach((_, i) => c.nodes[i + 1]!.communication.registerService({ name: 'bench.sink', ...SINK, pool: { max: 16, queue: 4096 }, handlers: { tick: () => void raw[i]!++ } }));
    const publisher = c.services[0]!;
    // Every subscriber node announced and Up on the publisher's side before anything is timed.
    for (const end = performance.now() + 60_000; publisher.subscribers('bench.tick').length < subscribers; ) {
      if (performance.now() > end) throw new Error(`the publisher sees ${publisher.subscribers('bench.tick').length} of ${subscribers} subscriber nodes`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const ics: Ics = c.nodes[0]!.communication;
    const targets = subs.map((_, i) => i + 2);
    let firstError: string | undefined;
    publisher.on('undelivered', (u) => (firstError ??= `node ${u.node}: ${(u.error as { code?: string }).code} ${u.error.message}`));
    const diagnose = (): string =>
      `${firstError ?? 'no undelivered event'}; ` +
      JSON.stringify(c.nodes.map((x, i) => ({ node: i + 1, dropped: x.communication.stats().dropped, oneWayDropped: x.communication.stats().oneWayDropped, services: c.services[i]!.stats() })));
    const publish = (i: number): Promise<number> => publisher.publish('bench.tick', { i, ...SMALL }).then((r) => r.failed.length);
    const fanOut = (i: number): Promise<number> =>
      Promise.all(targets.map((n) => ics.send(n, SINK, 'tick', { i, ...SMALL }).then(() => 0, () => 1))).then((f) => f.reduce((a, b) => a + b, 0));
    // Warm both paths, then measure the baseline, the events, and the baseline again (its mean is the figure).
    await eventRate(publish, () => got, diagnose);
    const before = await eventRate(fanOut, () => raw, diagnose);
    const rate = await eventRate(publish, () => got, diagnose);
    const after = await eventRate(fanOut, () => raw, diagnose);
    const baseline = (before + after) / 2;
    log(`events to ${subscribers} subscriber node(s): ${rate.toFixed(0)}/s published; ics.send fan-out ${baseline.toFixed(0)}/s`);
    return [row(`events/s broadcast to ${subscribers} subscriber node${subscribers > 1 ? 's' : ''}`, 'events/s', 'higher', rate, baseline)];
  } finally {
    await c.close();
  }
}

async function main(): Promise<void> {
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',');
  const want = (k: string): boolean => !only || only.includes(k);
  const rows: Row[] = [...(want('call') ? await byNameCall() : []), ...(want('events1') ? await events(1) : []), ...(want('events8') ? await events(8) : [])];
  if (JSON_ONLY) {
    console.log(JSON.stringify(rows, null, 2));
    return;
  }
  mergeResultRows(fileURLToPath(new URL('./results.json', import.meta.url)), rows);
  console.log('merged the services rows into bench/results.json');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
