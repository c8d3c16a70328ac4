/**
 * Registry benchmark (@clusterinfra/registry): write latency, write
 * throughput and convergence time with 3 and 16 nodes, each an OS process
 * over transport-tcp on 127.0.0.1 (bench/registry-node.ts, bundled by
 * esbuild so 16 processes do not each compile the sources under tsx).
 *
 * Baseline, measured in the same run between the same processes: one ICS
 * RPC from the writing node to the sequencer's node (an echo), sequential
 * and pipelined. A registry write is that call plus the sequencer's push to
 * every node and their answers, so the ratio is the cost of replication.
 * Convergence: from just before `put` on the writer until the last node
 * applied it (each process stamps performance.timeOrigin + performance.now()).
 *
 *   npx tsx bench/registry.ts            # prints the rows, merges them into bench/results.json
 *   npx tsx bench/registry.ts --sizes=3  # only 3 nodes
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { freePorts } from '../examples/lib/transports.js';
import type { ClmsRow } from './clms.js';
import { median } from './common.js';

/** A row of bench/results.json, shaped like the CLMS rows (`value` null: not measured). */
export type RegistryRow = Omit<ClmsRow, 'suite'> & { suite: 'registry' };

const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const BUNDLE = `${BENCH_DIR}.build/registry-node.mjs`;
const log = (s: string): void => void process.stderr.write(s + '\n');
const r3 = (v: number): number => Math.round(v * 1000) / 1000;

async function buildNode(): Promise<void> {
  const { build } = await import('esbuild');
  mkdirSync(`${BENCH_DIR}.build`, { recursive: true });
  writeFileSync(`${BENCH_DIR}.build/.gitignore`, '*\n');
  await build({
    entryPoints: [`${BENCH_DIR}registry-node.ts`],
    outfile: BUNDLE,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    tsconfig: fileURLToPath(new URL('../tsconfig.json', import.meta.url)),
    external: ['msgpackr', 'zod', 'zod/*', 'eventemitter3', 'vitest'],
    logLevel: 'warning',
  });
}

interface Child {
  proc: ChildProcess;
  status?: { up: number; host: number | null; synced: boolean };
  results: ((m: { value?: unknown; error?: string }) => void)[];
}

async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One cluster of `size` processes: every row for that size. */
async function runSize(size: number): Promise<RegistryRow[]> {
  const ports = await freePorts(size);
  const secret = randomBytes(32).toString('hex');
  const applied = new Map<string, number[]>();
  const children: Child[] = [];
  for (let n = 1; n <= size; n++) {
    const proc = fork(BUNDLE, [], { env: { ...process.env, REG_NODE: String(n), REG_PORTS: JSON.stringify(ports), REG_SECRET: secret }, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    const child: Child = { proc, results: [] };
    proc.on('message', (m: { t: string; up: number; host: number | null; synced: boolean; key: string; at: number; value?: unknown; error?: string }) => {
      if (m.t === 'status') child.status = m;
      else if (m.t === 'applied') applied.set(m.key, [...(applied.get(m.key) ?? []), m.at]);
      else if (m.t === 'result') child.results.shift()?.(m);
    });
    children.push(child);
  }
  const ask = <T>(n: number, cmd: Record<string, unknown>): Promise<T> =>
    new Promise((resolve, reject) => {
      const c = children[n - 1]!;
      c.results.push((m) => (m.error ? reject(new Error(`node ${n}: ${m.error}`)) : resolve(m.value as T)));
      c.proc.send(cmd);
    });
  try {
    await until(() => children.every((c) => c.status?.up === size && c.status.synced && c.status.host !== null), 120_000, `${size} nodes Up with the map`);
    const host = children[0]!.status!.host!;
    const writer = host === size ? 1 : size;
    log(`  ${size} nodes: sequencer on node ${host}, writing from node ${writer}`);
    // Warm up both paths.
    await ask(writer, { cmd: 'latency', count: 200 });
    await ask(writer, { cmd: 'baseline-latency', host, count: 200 });
    const lat = await ask<{ p50: number; p99: number }>(writer, { cmd: 'latency', count: 1000 });
    const base = await ask<{ p50: number; p99: number }>(writer, { cmd: 'baseline-latency', host, count: 1000 });
    const noop = await ask<{ p50: number; p99: number }>(writer, { cmd: 'noop-latency', count: 1000 });
    const noopHost = children[writer - 1]!.status!.host;
    log(`  ${size} nodes: a no-op key-service call p50 ${noop.p50.toFixed(0)} us, p99 ${noop.p99.toFixed(0)} us (its host: node ${noopHost === host ? 'the same' : '?'})`);
    const noopTput = await ask<number>(writer, { cmd: 'noop-throughput', seconds: 2, inflight: 64 });
    log(`  ${size} nodes: no-op key-service calls, 64 in flight: ${noopTput.toFixed(0)}/s`);
    // A write may fail under load (a lost link, a deadline): the row is then null, with the reason logged.
    const tput = await ask<number>(writer, { cmd: 'throughput', seconds: 2, inflight: 64 }).catch((err: unknown) => {
      log(`  ${size} nodes: write throughput not measured: ${String(err)}`);
      return null;
    });
    const baseTput = await ask<number>(writer, { cmd: 'baseline-throughput', host, seconds: 2, inflight: 64 });
    const conv: number[] = [];
    for (let i = 0; i < 50; i++) {
      const key = `conv/${i}`;
      const { start } = await ask<{ start: number; acked: number }>(writer, { cmd: 'conv', key });
      await until(() => (applied.get(key)?.length ?? 0) === size, 15_000, `${key} applied everywhere`);
      conv.push((Math.max(...applied.get(key)!) - start) * 1000);
    }
    const row = (name: string, unit: string, value: number | null, baseline: number, better: 'lower' | 'higher' = 'lower'): RegistryRow => ({
      suite: 'registry',
      name,
      unit,
      better,
      value: value === null ? null : r3(value),
      baseline: r3(baseline),
      ratio: value === null ? null : r3(value / baseline),
    });
    return [
      row(`write latency p50, ${size}p`, 'us', lat.p50, base.p50),
      row(`write latency p99, ${size}p`, 'us', lat.p99, base.p99),
      row(`write throughput, 64 in flight, ${size}p`, 'writes/s', tput, baseTput, 'higher'),
      row(`convergence p50 (put to applied on every node), ${size}p`, 'us', median(conv), base.p50),
    ];
  } finally {
    for (const c of children) c.proc.send({ cmd: 'exit' });
    await new Promise((r) => setTimeout(r, 500));
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
  }
}

export async function runRegistryBench(sizes: number[] = [3, 16]): Promise<RegistryRow[]> {
  await buildNode();
  const rows: RegistryRow[] = [];
  for (const size of sizes) {
    const mine = await runSize(size);
    for (const r of mine) log(`${r.name.padEnd(56)} ${String(r.value).padStart(12)} ${r.unit.padEnd(9)} baseline ${String(r.baseline).padStart(12)}  ratio ${r.ratio}`);
    rows.push(...mine);
  }
  return rows;
}

/** Replace the registry rows of bench/results.json (the others stay). */
export function mergeRegistryRows(rows: RegistryRow[]): void {
  const file = `${BENCH_DIR}results.json`;
  const old = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { suite: string; name: string }[]) : [];
  const names = new Set(rows.map((r) => r.name));
  const kept = old.filter((r) => r.suite !== 'registry' || !names.has(r.name));
  writeFileSync(file, JSON.stringify([...kept, ...rows], null, 2) + '\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const arg = process.argv.find((a) => a.startsWith('--sizes='));
  const sizes = arg ? arg.slice('--sizes='.length).split(',').map(Number) : [3, 16];
  const rows = await runRegistryBench(sizes);
  mergeRegistryRows(rows);
  console.log('merged into bench/results.json');
}
