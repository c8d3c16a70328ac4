/**
 * The distributed lock manager (`@clusterinfra/dlm`) over transport-tcp on
 * 127.0.0.1, every node in this one process (real clock, preset `local`),
 * each figure beside a baseline measured in the same run:
 *
 * - uncontended lock+unlock on the resource's master node (no network) and
 *   on another node (two round trips: lock, then unlock); baseline: two ICS
 *   RPC round trips between the same two nodes;
 * - contended throughput: 8 nodes taking EX on one resource in turn;
 *   baseline: the same loop on 8 resources (no contention);
 * - recovery: a resource master is killed (closed without goodbye: its
 *   sockets close, as on SIGKILL) while another node waits for the
 *   resource; time until that waiter is granted; baseline: time until the
 *   waiter's node sees the nodedown. 3 and 16 nodes.
 * - recovery after SIGKILL (`--processes`): the same with every node an OS
 *   process (bench/dlm-node.ts on the shared process launcher, bundled by
 *   esbuild) and the resource master killed with SIGKILL; 3 and 16
 *   processes. Rows `recovery-master-sigkill-<n>p`.
 *
 *   npx tsx bench/dlm.ts            # prints the rows; merges them into bench/results.json
 *   npx tsx bench/dlm.ts --json     # the rows as JSON on stdout only
 *   npx tsx bench/dlm.ts --processes  # only the SIGKILL rows (3 and 16 processes)
 *
 * In one process every node shares one event loop: absolute figures are
 * pessimistic next to separate processes; the ratios are what to compare.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { type ClusterNode, defineService, serve, client } from '../packages/core/src/index.js';
import { createDlm, type Dlm } from '../packages/dlm/src/index.js';
import { z } from 'zod';
import { hrNow, ProcessCluster } from '../packages/cli/src/process.js';
import { median, mergeResultRows, type ResultRow } from './common.js';
import { rowOf, tcpNodes } from './tcp-nodes.js';
import { freePorts } from '../examples/lib/transports.js';

type Row = ResultRow<'dlm'>;

const JSON_ONLY = process.argv.includes('--json');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const log = (line: string): void => {
  if (!JSON_ONLY) console.log(line);
};

const PING = defineService({ name: 'bench.ping', subservice: 77, methods: { ping: { kind: 'rpc', input: z.number(), output: z.number() } } });

interface Cluster {
  nodes: ClusterNode[];
  dlms: Dlm[];
  close(): Promise<void>;
}

async function cluster(size: number): Promise<Cluster> {
  const nodes = await tcpNodes(size, 'dlm-bench');
  const dlms = nodes.map((node) => createDlm({ node, deadlockTimeoutMs: 0 }));
  await Promise.all(nodes.map((x) => x.start()));
  await until(() => dlms.every((d) => d.stats().members.length === size && d.stats().completedRound === d.stats().round), 60_000, `${size} lock managers in one round`);
  return {
    nodes,
    dlms,
    close: async () => {
      await Promise.all(dlms.map((d) => d.close()));
      await Promise.all(nodes.map((x) => x.close()));
    },
  };
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Median µs of `op` over SECONDS (after a warm-up). */
async function timeOp(op: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 200; i++) await op();
  const samples: number[] = [];
  const end = performance.now() + SECONDS * 1000;
  while (performance.now() < end) {
    const t = performance.now();
    await op();
    samples.push((performance.now() - t) * 1000);
  }
  return median(samples);
}

const row = rowOf('dlm');

async function uncontended(): Promise<Row[]> {
  const c = await cluster(2);
  try {
    const [a, b] = c.dlms as [Dlm, Dlm];
    let local = 'r';
    for (let i = 0; a.masterOf(local) !== 1; i++) local = `r${i}`;
    let remote = 'r';
    for (let i = 0; a.masterOf(remote) !== 2; i++) remote = `r${i}`;
    serve(c.nodes[1]!.communication, PING, { ping: (x) => x });
    const ping = client(c.nodes[0]!.communication, PING, 2);
    const baseline = await timeOp(async () => {
      await ping.ping(1);
      await ping.ping(2);
    });
    const onMaster = await timeOp(async () => (await a.lock(local, 'EX')).unlock());
    const onOther = await timeOp(async () => (await a.lock(remote, 'EX')).unlock());
    void b;
    log(`lock+unlock: on the master ${onMaster.toFixed(1)} µs, on another node ${onOther.toFixed(1)} µs; two ICS round trips ${baseline.toFixed(1)} µs`);
    return [row('lock-unlock-on-master', 'µs', 'lower', onMaster, baseline), row('lock-unlock-other-node', 'µs', 'lower', onOther, baseline)];
  } finally {
    await c.close();
  }
}

/** Lock+unlock cycles per second over all nodes, each looping on `resourceOf(node)`. */
async function throughput(c: Cluster, resourceOf: (i: number) => string): Promise<number> {
  let ops = 0;
  let stop = false;
  const loops = c.dlms.map(async (d, i) => {
    while (!stop) {
      const l = await d.lock(resourceOf(i), 'EX');
      await l.unlock();
      ops++;
    }
  });
  await new Promise((r) => setTimeout(r, 300));
  ops = 0;
  const t = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const rate = ops / ((performance.now() - t) / 1000);
  stop = true;
  await Promise.all(loops);
  return rate;
}

async function contended(): Promise<Row[]> {
  const c = await cluster(8);
  try {
    const one = await throughput(c, () => 'hot');
    const spread = await throughput(c, (i) => `cold-${i}`);
    log(`8 nodes, EX lock+unlock: one resource ${one.toFixed(0)}/s; 8 resources ${spread.toFixed(0)}/s`);
    return [row('contended-8-nodes-one-resource', 'ops/s', 'higher', one, spread)];
  } finally {
    await c.close();
  }
}

async function recovery(size: number): Promise<Row[]> {
  const c = await cluster(size);
  try {
    // A resource mastered by the last node; the first node holds it... through the master's death a waiter at node 2 waits.
    const victim = size;
    let name = 'r';
    for (let i = 0; c.dlms[0]!.masterOf(name) !== victim; i++) name = `r${i}`;
    const holder = await c.dlms[victim - 1]!.lock(name, 'EX');
    void holder;
    let nodedownAt = 0;
    c.nodes[1]!.on('nodedown', (info) => {
      if (info.node === victim && nodedownAt === 0) nodedownAt = performance.now();
    });
    const waiting = c.dlms[1]!.lock(name, 'EX');
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    await c.dlms[victim - 1]!.close();
    await c.nodes[victim - 1]!.close();
    const granted = await waiting;
    const ms = performance.now() - t0;
    const down = nodedownAt - t0;
    await granted.unlock();
    log(`recovery, ${size} nodes: master and holder killed, waiter granted after ${ms.toFixed(1)} ms; nodedown seen after ${down.toFixed(1)} ms`);
    return [row(`recovery-master-killed-${size}n`, 'ms', 'lower', ms, down)];
  } finally {
    await c.close();
  }
}

const DLM_NODE = fileURLToPath(new URL('./.build/dlm-node.mjs', import.meta.url));

/** bench/dlm-node.ts as one file, so 16 processes do not each compile the sources under tsx. */
async function buildNode(): Promise<void> {
  const { build } = await import('esbuild');
  const dir = fileURLToPath(new URL('./.build/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}.gitignore`, '*\n');
  await build({
    entryPoints: [fileURLToPath(new URL('./dlm-node.ts', import.meta.url))],
    outfile: DLM_NODE,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    tsconfig: fileURLToPath(new URL('../tsconfig.json', import.meta.url)),
    external: ['msgpackr', 'zod', 'zod/*', 'eventemitter3'],
    logLevel: 'warning',
  });
}

type NodeReport = { type: 'ready' | 'granted' | 'nodedown' | 'fatal'; at: number; node?: number; resource?: string; error?: string };

/**
 * `size` node processes; the master of a resource (the last node) holds it
 * in EX and node 2 waits for it; the master is killed with SIGKILL. The
 * figure: from the kill until node 2 is granted; the baseline: until node 2
 * sees the nodedown (the membership's part of it).
 */
async function recoveryProcesses(size: number): Promise<Row[]> {
  const reports: Array<NodeReport & { from: number }> = [];
  const c = new ProcessCluster<NodeReport>({
    runner: { file: DLM_NODE, execArgv: [] },
    onMessage: (p, m) => {
      reports.push({ ...m, from: p.node });
      if (m.type === 'fatal') log(`node ${p.node}: ${m.error}`);
    },
  });
  try {
    const ports = await freePorts(size);
    for (let n = 1; n <= size; n++) {
      c.spawn(n, {
        nodeNum: n,
        clusterName: `dlm-bench-${size}`,
        port: ports[n - 1]!,
        candidates: [1, 2, 3].filter((x) => x <= size),
        seeds: ports.filter((_, i) => i !== n - 1).map((p) => `127.0.0.1:${p}`),
        // lan: the local preset's short timers flap while 16 processes start on a loaded machine.
        preset: 'lan',
        size,
      });
    }
    const got = (type: NodeReport['type'], from?: number): (NodeReport & { from: number }) | undefined => reports.find((r) => r.type === type && (from === undefined || r.from === from));
    const ready = (): Set<number> => new Set(reports.filter((r) => r.type === 'ready').map((r) => r.from));
    await until(() => ready().size === size, 300_000, `${size} processes ready`).catch((err: unknown) => {
      throw new Error(`${String(err)} (ready: ${[...ready()].join(',')})`);
    });
    const victim = size;
    let name = 'r';
    for (let i = 0; (await c.node(1).command<number>('masterOf', { resource: name })) !== victim; i++) name = `r${i}`;
    await c.node(victim).command('lock', { resource: name });
    await c.node(2).command('wait', { resource: name });
    await new Promise((r) => setTimeout(r, 200));
    if (got('granted', 2)) throw new Error('the waiter was granted while the holder lived');
    const t0 = hrNow();
    c.kill(victim, 'SIGKILL');
    await until(() => got('granted', 2) !== undefined && reports.some((r) => r.type === 'nodedown' && r.from === 2 && r.node === victim), 60_000, 'the waiter granted after the SIGKILL');
    const ms = got('granted', 2)!.at - t0;
    const down = reports.find((r) => r.type === 'nodedown' && r.from === 2 && r.node === victim)!.at - t0;
    const load = loadavg()[0]!;
    log(`recovery, ${size} processes: master and holder SIGKILLed, waiter granted after ${ms.toFixed(1)} ms; nodedown seen after ${down.toFixed(1)} ms (load ${load.toFixed(1)})`);
    return [{ ...row(`recovery-master-sigkill-${size}p`, 'ms', 'lower', ms, down), note: `${size} OS processes over TCP, preset lan; 1-min load average ${load.toFixed(1)} on 2 cores shared with other jobs` }];
  } finally {
    await c.close();
  }
}

async function main(): Promise<void> {
  let rows: Row[];
  if (process.argv.includes('--processes')) {
    await buildNode();
    rows = [...(await recoveryProcesses(3)), ...(await recoveryProcesses(16))];
  } else rows = [...(await uncontended()), ...(await contended()), ...(await recovery(3)), ...(await recovery(16))];
  if (JSON_ONLY) {
    console.log(JSON.stringify(rows, null, 2));
    return;
  }
  mergeResultRows(fileURLToPath(new URL('./results.json', import.meta.url)), rows);
  console.log('merged the dlm rows into bench/results.json');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
