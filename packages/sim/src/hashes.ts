/**
 * The trace-hash guardrail (docs/testing.md): the trace hashes of a fixed
 * range of seeds, recorded in packages/sim/trace-hashes.json. A change that
 * claims to leave behaviour alone (moving code, extracting a pure function)
 * must reproduce every one of them bit for bit; `npm run sim --
 * --check-hashes` prints each seed whose hash changed.
 *
 * Seeds run in child processes (the CLI itself with `--json`), a chunk at a
 * time, `workers` at once: the range is one minute of work on one core.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Profile } from './sim.js';

export const HASH_FILE = fileURLToPath(new URL('../trace-hashes.json', import.meta.url));
const CLI = fileURLToPath(new URL('./cli.ts', import.meta.url));
/** Seeds per child process: small enough to share the work out, large enough that start-up (tsx) stays a small part. */
const CHUNK = 50;

export interface HashFile {
  about: string;
  profile: Profile;
  from: number;
  count: number;
  /** Cluster size → the trace hash of seeds from, from+1, … from+count-1. */
  hashes: Record<string, string[]>;
}

export interface HashChange {
  seed: number;
  nodes: number;
  recorded: string;
  now: string;
  /** The invariant the seed violates now, if it does. */
  violation: string | undefined;
}

export interface HashRun {
  profile: Profile;
  from: number;
  count: number;
  sizes: number[];
  workers?: number;
}

interface SeedLine {
  seed: number;
  traceHash: string;
  violation?: { invariant: string };
}

export function readHashFile(path = HASH_FILE): HashFile {
  return JSON.parse(readFileSync(path, 'utf8')) as HashFile;
}

/** Run `count` seeds at every size; hashes and violations by size, in seed order. */
export async function traceHashes(run: HashRun): Promise<Map<number, SeedLine[]>> {
  const jobs: { nodes: number; from: number; count: number }[] = [];
  for (const nodes of run.sizes) {
    for (let s = run.from; s < run.from + run.count; s += CHUNK) jobs.push({ nodes, from: s, count: Math.min(CHUNK, run.from + run.count - s) });
  }
  const out = new Map<number, SeedLine[]>(run.sizes.map((n) => [n, []]));
  const workers = Math.max(1, Math.min(run.workers ?? availableParallelism(), jobs.length));
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      out.get(job.nodes)!.push(...(await runChild(run.profile, job)));
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
  for (const lines of out.values()) lines.sort((a, b) => a.seed - b.seed);
  return out;
}

/** One chunk of seeds in a child process (the CLI with --json, under the same loader as this process). */
function runChild(profile: Profile, job: { nodes: number; from: number; count: number }): Promise<SeedLine[]> {
  return new Promise((resolve, reject) => {
    const args = [...process.execArgv, CLI, '--seed', String(job.from), '--seeds', String(job.count), '--nodes', String(job.nodes), '--profile', profile, '--json'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (text += d));
    child.on('error', reject);
    child.on('close', () => {
      const lines = text
        .split('\n')
        .filter((l) => l.startsWith('{"seed":'))
        .map((l) => JSON.parse(l) as SeedLine);
      if (lines.length !== job.count) reject(new Error(`seeds ${job.from}+${job.count} at ${job.nodes} nodes: ${lines.length} results`));
      else resolve(lines);
    });
  });
}

/** Every seed whose hash differs from the recorded one. */
export function compareHashes(recorded: HashFile, now: Map<number, SeedLine[]>): HashChange[] {
  const changes: HashChange[] = [];
  for (const [nodes, lines] of now) {
    const want = recorded.hashes[String(nodes)] ?? [];
    for (const l of lines) {
      const old = want[l.seed - recorded.from];
      if (old !== l.traceHash) changes.push({ seed: l.seed, nodes, recorded: old ?? 'none', now: l.traceHash, violation: l.violation?.invariant });
    }
  }
  return changes;
}

/**
 * `npm run sim -- --check-hashes` / `--record-hashes`; exit code 1 when a
 * hash changed. `limit`: check only the first seeds of the range (a quick
 * look; the full range is the guardrail).
 */
export async function hashCommand(mode: 'check' | 'record', options: { workers?: number; limit?: number } = {}): Promise<number> {
  const file = readHashFile();
  const sizes = Object.keys(file.hashes).map(Number);
  const count = mode === 'check' ? Math.min(options.limit ?? file.count, file.count) : file.count;
  const t0 = performance.now();
  const now = await traceHashes({ profile: file.profile, from: file.from, count, sizes, ...(options.workers !== undefined ? { workers: options.workers } : {}) });
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  if (mode === 'record') {
    const hashes: Record<string, string[]> = {};
    for (const [nodes, lines] of now) hashes[String(nodes)] = lines.map((l) => l.traceHash);
    writeFileSync(HASH_FILE, `${JSON.stringify({ ...file, hashes }, null, 1)}\n`);
    console.log(`recorded ${sizes.length * file.count} trace hashes (profile ${file.profile}, seeds ${file.from}-${file.from + file.count - 1}, nodes ${sizes.join(', ')}) in ${secs} s`);
    return 0;
  }
  const changes = compareHashes(file, now);
  for (const c of changes) {
    console.log(`seed ${c.seed} at ${c.nodes} nodes: trace hash changed ${c.recorded.slice(0, 16)} -> ${c.now.slice(0, 16)}${c.violation ? ` (now fails ${c.violation})` : ''}`);
    console.log(`  replay: npm run sim -- --seed ${c.seed} --nodes ${c.nodes}${file.profile === 'ci' ? ' --profile ci' : ''}`);
  }
  console.log(`hashes: ${sizes.length * count} checked (profile ${file.profile}, seeds ${file.from}-${file.from + count - 1}, nodes ${sizes.join(', ')}), ${changes.length} changed, ${secs} s`);
  return changes.length > 0 ? 1 : 0;
}
