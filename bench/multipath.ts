/**
 * The multipath transport (issue 17), measured against plain TCP in the
 * same run and the same process (both ICS endpoints of a system live in
 * this process on 127.0.0.1, so each system pays its client and its server
 * side on one core; the ratio is what holds):
 *
 * - throughput of ICS over `multipath([tcp, tcp])` against ICS over one
 *   `tcp` link: pipelined small RPC (64 in flight) and bulk (1 MiB, 4 in
 *   flight), active/standby and both-active; each round measures the three
 *   systems back to back, and the ratio is the median of the rounds' ratios;
 * - failover: a closed loop of sequential calls over two paths, each path
 *   through a relay in this process; the relay of the active path starts
 *   dropping every byte both ways (a pulled cable: nothing is reset), and
 *   the row is the longest pause the caller saw, with the `local` timers
 *   (path failure timeout 60 ms). A second row resets the path instead.
 *
 * Run with `npm run bench -- --only=multipath`, or `npx tsx bench/multipath.ts`.
 */
import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { BENCH_SERVICE, CLUSTER, MiB1, type ResultRow, SMALL } from './common.js';
import { buildLib, type IcsLib, loadLib } from './load.js';

export type MultipathRow = ResultRow<'multipath'>;

type Ics = ReturnType<IcsLib['createIcs']>;
type Factory = Parameters<IcsLib['createIcs']>[0]['transport'];

const now = (): number => performance.now();
const log = (s: string): void => void process.stderr.write(s + '\n');
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const r3 = (v: number): number => Math.round(v * 1000) / 1000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `ratio` defaults to value / baseline; the throughput rows pass the median of per-round ratios instead. */
function row(name: string, unit: string, better: 'lower' | 'higher', value: number, baseline: number, ratio = value / baseline): MultipathRow {
  return { suite: 'multipath', name, unit, better, value: r3(value), baseline: r3(baseline), ratio: r3(ratio) };
}

/** A server and a client ICS over one transport kind, the server serving echo and sink. */
async function pair(lib: IcsLib, transport: () => Factory): Promise<{ client: Ics; server: Ics; close(): Promise<void> }> {
  const server = lib.createIcs({ transport: transport(), clusterName: CLUSTER, nodeNum: 1 });
  await server.start();
  server.registerService({ ...BENCH_SERVICE, name: 'bench', handlers: { echo: (x) => x, sink: (b) => (b as Uint8Array).byteLength } });
  const address = server.address!;
  const client = lib.createIcs({ transport: transport(), clusterName: CLUSTER, nodeNum: 2, peers: { 1: address } });
  await client.start();
  await client.call(1, BENCH_SERVICE, 'echo', SMALL);
  return { client, server, close: async () => void (await Promise.all([client.close(), server.close()])) };
}

/**
 * Completed operations with `depth` closed-loop callers for `seconds`: per
 * second of wall time, and per second of this process's CPU time (which
 * other processes on a shared machine disturb much less).
 */
async function rate(seconds: number, depth: number, op: () => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
  let n = 0;
  const t0 = now();
  const cpu0 = process.cpuUsage();
  const until = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: depth }, async () => {
      for (; now() < until; n++) await op();
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  return { wall: n / ((now() - t0) / 1000), cpu: n / ((cpu.user + cpu.system) / 1e6) };
}

// ------------------------------------------------------------------ relays

/** A TCP relay that can drop everything silently (`cut`) or reset what it carries (`reset`). */
class Relay {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  cutOff = false;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = createServer({ noDelay: true }, (inbound) => this.carry(inbound));
  }

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  private carry(inbound: Socket): void {
    // While cut, a new connection goes nowhere (as over a dead interface).
    if (this.cutOff) return void inbound.destroy();
    const outbound = connect({ ...this.target, noDelay: true });
    for (const [from, to] of [
      [inbound, outbound],
      [outbound, inbound],
    ] as const) {
      this.sockets.add(from);
      from.on('data', (d) => {
        if (!this.cutOff) to.write(d);
      });
      from.on('error', () => {});
      from.on('close', () => {
        this.sockets.delete(from);
        to.destroy();
      });
    }
  }

  reset(): void {
    for (const s of this.sockets) s.resetAndDestroy();
  }

  async close(): Promise<void> {
    this.reset();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/**
 * Longest pause of a sequential call loop around `fault`, `reps` times;
 * between repetitions the path is healed and comes back up.
 */
async function failover(lib: IcsLib, reps: number, fault: 'cut' | 'reset', timers: object): Promise<number[]> {
  const secret = randomBytes(32).toString('hex');
  const relays: Relay[] = [];
  const make = () => lib.multipath([lib.tcp({ host: '127.0.0.1', secret }), lib.tcp({ host: '127.0.0.1', secret })], timers);
  const pauses: number[] = [];
  const server = lib.createIcs({ transport: make(), clusterName: CLUSTER, nodeNum: 1 });
  try {
    await server.start();
    server.registerService({ ...BENCH_SERVICE, name: 'bench', handlers: { echo: (x) => x } });
    // The client reaches each path of the server through a relay of its own.
    for (const p of server.address!.slice('multipath:'.length).split(',')) {
      const relay = new Relay({ host: p.slice(0, p.lastIndexOf(':')), port: Number(p.slice(p.lastIndexOf(':') + 1)) });
      await relay.start();
      relays.push(relay);
    }
    const clientFactory = make();
    const viaRelays = `multipath:${relays.map((r) => `127.0.0.1:${r.port}`).join(',')}`;
    const client = lib.createIcs({ transport: clientFactory, clusterName: CLUSTER, nodeNum: 2, peers: { 1: viaRelays } });
    await client.start();
    const pathUp = (i: number): boolean => clientFactory.health().some((l) => l.paths[i]?.state === 'up');
    for (let rep = 0; rep < reps; rep++) {
      const deadline = now() + 10_000;
      while (!(pathUp(0) && pathUp(1)) && now() < deadline) await client.call(1, BENCH_SERVICE, 'echo', SMALL);
      let stop = false;
      let last = now();
      let longest = 0;
      const loop = (async () => {
        while (!stop) {
          await client.call(1, BENCH_SERVICE, 'echo', SMALL, { timeoutMs: 10_000 });
          const t = now();
          longest = Math.max(longest, t - last);
          last = t;
        }
      })();
      await sleep(200);
      longest = 0;
      if (fault === 'cut') relays[0]!.cutOff = true;
      else relays[0]!.reset();
      await sleep(1000);
      stop = true;
      await loop;
      pauses.push(longest);
      relays[0]!.cutOff = false;
      relays[0]!.reset(); // the silently cut connections are gone for good: let the path redial
    }
    await client.close();
  } finally {
    await server.close();
    for (const r of relays) await r.close();
  }
  return pauses;
}

export async function runMultipathBench(options: { seconds?: number; rounds?: number; reps?: number } = {}): Promise<{ rows: MultipathRow[]; notes: string[] }> {
  const seconds = options.seconds ?? 1.5;
  // At least five rounds: the median of per-round ratios needs a few on a noisy machine.
  const rounds = Math.max(options.rounds ?? 5, 5);
  const reps = options.reps ?? 7;
  await buildLib();
  const lib = await loadLib();
  const secret = randomBytes(32).toString('hex');
  const tcpOnly = (): Factory => lib.tcp({ host: '127.0.0.1', secret });
  const twoPaths = (policy: 'active-standby' | 'both-active') => (): Factory =>
    lib.multipath([lib.tcp({ host: '127.0.0.1', secret }), lib.tcp({ host: '127.0.0.1', secret })], { policy });
  const systems = { tcp: await pair(lib, tcpOnly), 'active-standby': await pair(lib, twoPaths('active-standby')), 'both-active': await pair(lib, twoPaths('both-active')) };
  const rows: MultipathRow[] = [];
  const notes: string[] = [];
  const workloads = [
    { id: 'pipelined rpc, 64 in flight (101 B)', unit: 'calls/s', depth: 64, op: (c: Ics) => c.call(1, BENCH_SERVICE, 'echo', SMALL, { timeoutMs: 15_000 }), scale: 1 },
    { id: 'bulk, 1 MiB chunks, 4 in flight', unit: 'MB/s', depth: 4, op: (c: Ics) => c.call(1, BENCH_SERVICE, 'sink', MiB1, { timeoutMs: 15_000 }), scale: MiB1.byteLength / 1e6 },
  ];
  try {
    for (const w of workloads) {
      const got: Record<keyof typeof systems, number[]> = { tcp: [], 'active-standby': [], 'both-active': [] };
      const perCpu: Record<keyof typeof systems, number[]> = { tcp: [], 'active-standby': [], 'both-active': [] };
      const order = Object.keys(systems) as (keyof typeof systems)[];
      for (let round = 0; round < rounds; round++) {
        // Alternate who goes first, so warm-up and drift fall on every system alike.
        for (const name of round % 2 === 0 ? order : [...order].reverse()) {
          const { client } = systems[name];
          // The first round warms each system longer (JIT, heap), as run.ts does.
          await rate(round === 0 ? 1 : 0.25, w.depth, () => w.op(client));
          const r = await rate(seconds, w.depth, () => w.op(client));
          got[name].push(r.wall * w.scale);
          perCpu[name].push(r.cpu * w.scale);
        }
      }
      for (const policy of ['active-standby', 'both-active'] as const) {
        // Each round measures both systems back to back: the ratio of a round sees one load, on a shared machine.
        const ratios = got[policy].map((v, i) => v / got.tcp[i]!);
        rows.push(row(`${w.id}, multipath ${policy} vs tcp`, w.unit, 'higher', median(got[policy]), median(got.tcp), median(ratios)));
        const cpuRatios = perCpu[policy].map((v, i) => v / perCpu.tcp[i]!);
        rows.push(row(`${w.id}, per CPU second, multipath ${policy} vs tcp`, `${w.unit.split('/')[0]}/cpu-s`, 'higher', median(perCpu[policy]), median(perCpu.tcp), median(cpuRatios)));
      }
      log(`multipath: ${w.id}: tcp ${got.tcp.map(Math.round).join('/')}, active-standby ${got['active-standby'].map(Math.round).join('/')}, both-active ${got['both-active'].map(Math.round).join('/')}`);
    }
  } finally {
    for (const s of Object.values(systems)) await s.close();
  }
  // `local`-style timers: heartbeat 15 ms, path failure timeout 60 ms.
  const local = { heartbeatIntervalMs: 15, pathTimeoutMs: 60, linkTimeoutMs: 5000, redialMinMs: 10, redialMaxMs: 200 };
  for (const fault of ['cut', 'reset'] as const) {
    const pauses = await failover(lib, reps, fault, local);
    const what = fault === 'cut' ? 'active path cut silently (bytes dropped both ways)' : 'active path reset';
    rows.push(row(`failover: longest pause of sequential calls, ${what}, local timers`, 'ms', 'lower', median(pauses), local.pathTimeoutMs));
    notes.push(`failover (${fault}): pauses ${pauses.map((p) => p.toFixed(1)).join(', ')} ms; baseline = the path failure timeout (${local.pathTimeoutMs} ms); target <= 100 ms`);
  }
  return { rows, notes };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { rows, notes } = await runMultipathBench();
  console.log(JSON.stringify(rows, null, 2));
  for (const n of notes) console.log(n);
}
