/**
 * ICS over transport-tcp against a raw node:net + msgpackr baseline, both
 * measured in this run between the same two OS processes on 127.0.0.1, so
 * the ratios hold on a noisy machine. See bench/README.md.
 *
 *   npm run bench                          # table + bench/results.json
 *   npm run bench -- --json                # the rows as JSON on stdout
 *   npm run bench -- --rounds=5 --seconds=2 --only=oneway,bulk
 *   npm run bench -- --profile             # CPU profiles of ICS (and baseline), summarised
 *
 * Exits non-zero only on errors; missed targets are reported, not fatal.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import {
  BENCH_SERVICE,
  type BenchSystem,
  bodyOf,
  CLIENT_NODE,
  closedLoopRate,
  CLUSTER,
  FrameParser,
  FrameWriter,
  idOf,
  KiB64,
  Kind,
  kindOf,
  median,
  mergedRows,
  MiB1,
  oneWayRate,
  type ResultRow,
  SERVER_NODE,
  SMALL,
  SMALL_ENCODED_BYTES,
} from './common.js';
import { buildLib, type IcsLib, loadLib, USE_TSX } from './load.js';
import { type CpuProfile, formatSummary } from './profile.js';
import { type ClmsRow, runClmsBench } from './clms.js';
import { type EncryptionRow, runEncryptionBench } from './encryption.js';
import { type MultipathRow, runMultipathBench } from './multipath.js';
import { type RegistryRow, runRegistryBench } from './registry.js';
import { connectReferences, REFERENCE_ROWS, type ReferenceName, type ReferencePorts, type ReferenceSystem } from './reference.js';
import { loadavg } from 'node:os';
import { AsyncLocalStorage } from 'node:async_hooks';

type Ics = ReturnType<IcsLib['createIcs']>;

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));

// ------------------------------------------------------------------ options

function flag(name: string): string | undefined {
  const a = process.argv.slice(2).find((x) => x === `--${name}` || x.startsWith(`--${name}=`));
  if (a === undefined) return undefined;
  return a.includes('=') ? a.slice(a.indexOf('=') + 1) : '';
}
const num = (name: string, env: string, dflt: number): number => {
  const v = flag(name) ?? process.env[env];
  const n = v === undefined || v === '' ? dflt : Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`);
  return n;
};
const PROFILE = flag('profile') !== undefined;
/**
 * `--als`: enable an AsyncLocalStorage in the client process, as serving a
 * handler does in a node that also calls (on Node 20 that turns on promise
 * hooks for every promise of the process, baseline included).
 */
const ALS = flag('als') !== undefined;
/** `--plain`: ICS links with `encrypt: false` on both sides (still authenticated by the secret). */
const PLAIN = flag('plain') !== undefined;
/** `--cpu-split`: each round's line also gives the CPU per operation of the client (user, system) and of the server. */
const CPU_SPLIT = flag('cpu-split') !== undefined;
/** `--no-references`: ICS and the baseline only (no Moleculer, no gRPC rows). */
const REFERENCES = flag('no-references') === undefined;
const JSON_OUT = flag('json') !== undefined;
const ROUNDS = Math.round(num('rounds', 'BENCH_ROUNDS', PROFILE ? 1 : 3));
const SECONDS = num('seconds', 'BENCH_SECONDS', PROFILE ? 3 : 1.5);
const WARMUP = num('warmup', 'BENCH_WARMUP', 0.25);
/** The first round warms each (row, system) longer, for the JIT. */
const FIRST_WARMUP = Math.max(WARMUP, 1);
const PIPELINE = 64;
const BULK_IN_FLIGHT = 4;
/** One-way: messages offered per macrotask before yielding to I/O. */
const ONEWAY_BATCH = 1024;
const CALL_TIMEOUT_MS = 15_000;

const log = (s: string): void => {
  process.stderr.write(s + '\n');
};

// ------------------------------------------------------------------ systems

/** What every measurement drives: ICS, the baseline and the reference libraries offer the same operations. */
interface System extends BenchSystem {
  readonly name: 'ics' | 'baseline' | ReferenceName;
}

class IcsSystem implements System {
  readonly name = 'ics';
  constructor(private readonly ics: Ics) {}
  call(payload: unknown): Promise<unknown> {
    return this.ics.call(SERVER_NODE, BENCH_SERVICE, 'echo', payload, { timeoutMs: CALL_TIMEOUT_MS });
  }
  trySend(payload: unknown): boolean {
    return this.ics.trySend(SERVER_NODE, BENCH_SERVICE, 'note', payload);
  }
  drained(): Promise<void> {
    return new Promise((resolve) => this.ics.once('drain', () => resolve()));
  }
  reset(): Promise<unknown> {
    return this.ics.call(SERVER_NODE, BENCH_SERVICE, 'reset', null, { timeoutMs: CALL_TIMEOUT_MS });
  }
  waitCount(n: number): Promise<unknown> {
    return this.ics.call(SERVER_NODE, BENCH_SERVICE, 'waitCount', n, { timeoutMs: CALL_TIMEOUT_MS });
  }
  sink(chunk: Uint8Array): Promise<unknown> {
    return this.ics.call(SERVER_NODE, BENCH_SERVICE, 'sink', chunk, { timeoutMs: CALL_TIMEOUT_MS });
  }
  stats(): { messagesSent: number; messagesReceived: number } {
    return this.ics.stats();
  }
  close(): Promise<void> {
    return this.ics.close();
  }
}

interface Waiter {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/** Plain node:net client: one connection for RPC/one-way, one for bulk. */
class BaselineSystem implements System {
  readonly name = 'baseline';
  private readonly w: FrameWriter;
  private readonly bw: FrameWriter;
  private readonly pending = new Map<number, Waiter>();
  private nextId = 1;
  private readonly acks: Waiter[] = [];
  private ackHead = 0;

  constructor(private readonly sock: Socket, private readonly bulkSock: Socket) {
    this.w = new FrameWriter(sock);
    this.bw = new FrameWriter(bulkSock);
    const rpcParser = new FrameParser((f) => {
      const id = idOf(f);
      const p = this.pending.get(id);
      if (kindOf(f) !== Kind.Reply || p === undefined) {
        sock.destroy(new Error(`unexpected baseline frame kind ${kindOf(f)} id ${id}`));
        return;
      }
      this.pending.delete(id);
      p.resolve(bodyOf(f));
    });
    const bulkParser = new FrameParser(() => {
      const a = this.acks[this.ackHead];
      this.acks[this.ackHead++] = undefined as never;
      if (this.ackHead > 1024 && this.ackHead * 2 > this.acks.length) {
        this.acks.splice(0, this.ackHead);
        this.ackHead = 0;
      }
      a?.resolve(undefined);
    });
    sock.on('data', (c: Buffer) => rpcParser.push(c));
    bulkSock.on('data', (c: Buffer) => bulkParser.push(c));
    const fail = (what: string) => (err?: Error) => {
      const e = new Error(`baseline ${what} connection lost${err ? `: ${err.message}` : ''}`);
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
      for (let i = this.ackHead; i < this.acks.length; i++) this.acks[i]?.reject(e);
      this.acks.length = 0;
      this.ackHead = 0;
    };
    sock.on('error', fail('rpc'));
    sock.on('close', () => fail('rpc')());
    bulkSock.on('error', fail('bulk'));
    bulkSock.on('close', () => fail('bulk')());
  }

  private request(kind: number, body: unknown): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const id = this.nextId;
      this.nextId = id >= 0xffffffff ? 1 : id + 1;
      this.pending.set(id, { resolve, reject });
      this.w.sendPacked(kind, id, body);
    });
  }
  call(payload: unknown): Promise<unknown> {
    return this.request(Kind.Call, payload);
  }
  trySend(payload: unknown): boolean {
    return this.w.sendPacked(Kind.OneWay, 0, payload);
  }
  drained(): Promise<void> {
    return this.w.drained();
  }
  reset(): Promise<unknown> {
    return this.request(Kind.Reset, null);
  }
  waitCount(n: number): Promise<unknown> {
    return this.request(Kind.WaitCount, n);
  }
  sink(chunk: Uint8Array): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.acks.push({ resolve, reject });
      this.bw.sendRaw(chunk);
    });
  }
  async close(): Promise<void> {
    this.sock.destroy();
    this.bulkSock.destroy();
  }
}

function dial(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, noDelay: true }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

// ------------------------------------------------------------------ measurements

const now = (): number => performance.now();
const macrotask = (): Promise<void> => new Promise((r) => setImmediate(r));

interface Measured {
  /** Main value (unit of the row). */
  value: number;
  /** Extra values (latency p99). */
  extra?: Record<string, number>;
}

/** Sequential echo calls; p50/p99 in microseconds. */
async function latency(sys: System, seconds: number): Promise<Measured> {
  const samples: number[] = [];
  const end = now() + seconds * 1000;
  for (let t = now(); t < end; ) {
    await sys.call(SMALL);
    const t2 = now();
    samples.push((t2 - t) * 1000);
    t = t2;
  }
  const s = Float64Array.from(samples).sort();
  const pct = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { value: pct(0.5), extra: { p99: pct(0.99), calls: s.length } };
}

/** `inFlight` closed-loop callers; completed calls (or bytes) per second. */
function pipelined(_sys: System, seconds: number, inFlight: number, op: () => Promise<unknown>): Promise<number> {
  return closedLoopRate(seconds, inFlight, op);
}

/** One-way messages counted by the server (common.ts: oneWayRate). */
async function oneWay(sys: System, seconds: number): Promise<Measured> {
  const { rate, sent } = await oneWayRate(sys, seconds, SMALL, ONEWAY_BATCH);
  return { value: rate, extra: { messages: sent } };
}

interface RowSpec {
  id: string;
  name: string;
  unit: string;
  better: 'lower' | 'higher';
  target?: number;
  run: (sys: System, seconds: number) => Promise<Measured>;
  /** Rows derived from the same measurement (latency p99). */
  derived?: { name: string; key: string; target?: number }[];
  note?: string;
}

const ROWS: RowSpec[] = [
  {
    id: 'latency',
    name: `rpc latency p50, sequential (${SMALL_ENCODED_BYTES} B)`,
    unit: 'us',
    better: 'lower',
    target: 1.2,
    run: latency,
    derived: [{ name: `rpc latency p99, sequential (${SMALL_ENCODED_BYTES} B)`, key: 'p99' }],
  },
  {
    id: 'pipelined-small',
    name: `pipelined rpc, ${PIPELINE} in flight (${SMALL_ENCODED_BYTES} B)`,
    unit: 'calls/s',
    better: 'higher',
    target: 0.8,
    run: async (sys, s) => ({ value: await pipelined(sys, s, PIPELINE, () => sys.call(SMALL)) }),
  },
  {
    id: 'pipelined-64k',
    name: `pipelined rpc, ${PIPELINE} in flight (64 KiB)`,
    unit: 'calls/s',
    better: 'higher',
    target: 0.8,
    run: async (sys, s) => ({ value: await pipelined(sys, s, PIPELINE, () => sys.call(KiB64)) }),
  },
  {
    id: 'oneway',
    name: `one-way messages (${SMALL_ENCODED_BYTES} B)`,
    unit: 'msgs/s',
    better: 'higher',
    target: 0.7,
    run: oneWay,
  },
  {
    id: 'bulk',
    name: `bulk 1 MiB values, ${BULK_IN_FLIGHT} in flight (out of line)`,
    unit: 'MB/s',
    better: 'higher',
    target: 0.8,
    run: async (sys, s) => ({ value: (await pipelined(sys, s, BULK_IN_FLIGHT, () => sys.sink(MiB1))) * (MiB1.byteLength / 1e6) }),
    note: 'bulk: each 1 MiB Uint8Array argument travels out of line (ICS bulk lane, default 256 KiB chunks, default windows); the baseline is raw 4-byte length + bytes, no msgpackr.',
  },
];

// ------------------------------------------------------------------ server process

let child: ChildProcess | undefined;
let seq = 0;
const replies = new Map<number, { resolve: (data: unknown) => void; reject: (e: Error) => void }>();

interface Ready {
  ready: true;
  ics: string;
  rpcPort: number;
  bulkPort: number;
  /** Absent when the server was told not to start them. */
  references?: ReferencePorts;
}

function startServer(secret: string): Promise<Ready> {
  return new Promise((resolve, reject) => {
    const c = fork(fileURLToPath(new URL('./server.ts', import.meta.url)), [], {
      cwd: ROOT,
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, BENCH_SECRET: secret, BENCH_TSX: USE_TSX ? '1' : '0', BENCH_PLAIN: PLAIN ? '1' : '0', BENCH_REFERENCES: REFERENCES && !PROFILE ? '1' : '0' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child = c;
    const timer = setTimeout(() => reject(new Error('bench server did not start within 30 s')), 30_000);
    c.on('message', (m: Ready | { seq: number; ok: boolean; error?: string; data?: unknown }) => {
      if ('ready' in m) {
        clearTimeout(timer);
        resolve(m);
        return;
      }
      const r = replies.get(m.seq);
      replies.delete(m.seq);
      if (m.ok) r?.resolve(m.data);
      else r?.reject(new Error(`bench server: ${m.error}`));
    });
    c.on('exit', (code, signal) => {
      clearTimeout(timer);
      const err = new Error(`bench server exited (code ${code}, signal ${signal})`);
      reject(err);
      for (const r of replies.values()) r.reject(err);
      replies.clear();
      if (child === c) child = undefined;
    });
  });
}

function ask<T = unknown>(cmd: string, extra: object = {}): Promise<T> {
  return new Promise((resolve, reject) => {
    if (!child || !child.connected) {
      reject(new Error('bench server is gone'));
      return;
    }
    const s = ++seq;
    replies.set(s, { resolve: resolve as (d: unknown) => void, reject });
    child.send({ cmd, seq: s, ...extra });
  });
}

async function stopServer(): Promise<void> {
  const c = child;
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  try {
    await Promise.race([ask('exit'), new Promise((r) => setTimeout(r, 1000))]);
  } catch {
    // gone already
  }
  const t = setTimeout(() => c.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}

// Whatever happens, the server does not outlive us.
process.on('exit', () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    child?.kill('SIGKILL');
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

// ------------------------------------------------------------------ profiling

class Profiler {
  private readonly session = new Session();
  private post<T>(method: string, params?: object): Promise<T> {
    return new Promise((resolve, reject) =>
      this.session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))),
    );
  }
  async start(): Promise<void> {
    this.session.connect();
    await this.post('Profiler.enable');
    await this.post('Profiler.setSamplingInterval', { interval: 200 });
    await this.post('Profiler.start');
  }
  async stop(): Promise<CpuProfile> {
    const { profile } = await this.post<{ profile: CpuProfile }>('Profiler.stop');
    this.session.disconnect();
    return profile;
  }
}

// ------------------------------------------------------------------ formatting

function fmt(unit: string, v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (unit === 'us' || unit === 'MB/s') return v.toFixed(1);
  return Math.round(v).toLocaleString('en-US');
}

function clmsTable(rows: (ClmsRow | MultipathRow | RegistryRow)[]): string {
  const head = ['suite', 'name', 'unit', 'value', 'baseline', 'ratio'];
  const f = (v: number | null): string => (v === null ? 'null' : v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1));
  const body = rows.map((r) => [r.suite, r.name, r.unit, f(r.value), f(r.baseline), r.ratio === null ? '-' : `${r.ratio.toFixed(2)}x`]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const right = new Set([3, 4, 5]);
  const line = (cells: string[]): string =>
    '| ' + cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ') + ' |';
  return [line(head), '|' + widths.map((w, i) => (right.has(i) ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|', ...body.map(line)].join('\n');
}

function table(rows: (ResultRow & { target?: number; rounds: { ics: number[]; baseline: number[] } })[], valueHead = 'ICS'): string {
  const head = ['suite', 'name', 'unit', valueHead, 'baseline', 'ratio', 'target', 'result'];
  const body = rows.map((r) => {
    const target = r.target === undefined ? '-' : `${r.better === 'lower' ? '<=' : '>='} ${r.target}x`;
    const pass = r.target === undefined ? 'info' : (r.better === 'lower' ? r.ratio <= r.target : r.ratio >= r.target) ? 'PASS' : 'FAIL';
    return [r.suite, r.name, r.unit, fmt(r.unit, r.value), fmt(r.unit, r.baseline), `${r.ratio.toFixed(2)}x`, target, pass];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const right = new Set([3, 4, 5]);
  const line = (cells: string[]): string =>
    '| ' + cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ') + ' |';
  return [line(head), '|' + widths.map((w, i) => (right.has(i) ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|', ...body.map(line)].join('\n');
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const only = flag('only')?.split(',').filter(Boolean);
  const rows = ROWS.filter((r) => !only || only.includes(r.id));
  const profileRows = only ? rows : ROWS.filter((r) => r.id === 'pipelined-small' || r.id === 'oneway');
  // The CLMS suite (bench/clms.ts) runs after the ICS rows, with the ICS server stopped.
  // --clms=<part>,...: only those parts of the CLMS suite (ids in bench/clms.ts), e.g. --only=clms --clms=formation-256
  const clmsOnly = flag('clms')?.split(',').filter(Boolean);
  const wantClms = !PROFILE && (!only || only.includes('clms') || clmsOnly !== undefined);
  // bench/encryption.ts: encrypted vs plain secret links, after the ICS rows (--only=encryption alone).
  const wantEncryption = !PROFILE && clmsOnly === undefined && (!only || only.includes('encryption'));
  // The multipath suite (bench/multipath.ts) only when asked for: --only=multipath.
  const wantMultipath = !PROFILE && only?.includes('multipath') === true;
  if (rows.length === 0 && !wantClms && !wantEncryption && !wantMultipath && !only?.includes('registry'))
    throw new Error(`--only: no such rows (have ${ROWS.map((r) => r.id).join(', ')}, encryption, clms, multipath, registry)`);
  const t0 = now();
  const icsRows = rows.length > 0 ? await icsMain(rows, profileRows) : [];
  if (icsRows === undefined) return; // profiled
  let encryptionRows: EncryptionRow[] = [];
  if (wantEncryption) {
    log('bench: encrypted vs plain secret links (bench/encryption.ts)');
    encryptionRows = await runEncryptionBench({ rounds: ROUNDS, seconds: SECONDS, warmup: WARMUP, log });
    if (!JSON_OUT) console.log(`\n${table(encryptionRows)}\n(ICS column: encrypted; baseline: encrypt: false on both sides)\n`);
  }
  let clmsRows: ClmsRow[] = [];
  if (wantClms) {
    log('bench: CLMS suite (bench/clms.ts)');
    const clms = await runClmsBench(clmsOnly ? { only: clmsOnly } : {});
    clmsRows = clms.rows;
    if (!JSON_OUT) {
      console.log();
      console.log(clmsTable(clmsRows));
      console.log();
      console.log('CLMS: baseline = the preset failure timeout (detection, callbacks, failover), 3 nodes formed the same way (formation),');
      console.log('the node count (-up rows), 3(N-1) frames (frames per transition); ratio = value / baseline. null: did not complete.');
      for (const n of clms.notes) console.log(`  ${n}`);
    }
  }
  const encryption = encryptionRows.map(({ suite, name, unit, better, value, baseline, ratio }) => ({
    suite,
    name,
    unit,
    better,
    value: round3(value),
    baseline: round3(baseline),
    ratio: round3(ratio),
  }));
  let multipathRows: MultipathRow[] = [];
  if (wantMultipath) {
    log('bench: multipath suite (bench/multipath.ts)');
    const mp = await runMultipathBench({ seconds: SECONDS, rounds: ROUNDS });
    multipathRows = mp.rows;
    if (!JSON_OUT) {
      console.log(clmsTable(multipathRows));
      for (const n of mp.notes) console.log(`  ${n}`);
    }
  }
  // The registry suite (bench/registry.ts): 3 and 16 processes, after the CLMS rows.
  let registryRows: RegistryRow[] = [];
  if (!PROFILE && (!only || only.includes('registry'))) {
    log('bench: registry suite (bench/registry.ts)');
    registryRows = await runRegistryBench();
    if (!JSON_OUT) console.log(`\n${clmsTable(registryRows)}\n\nregistry: baseline = one ICS echo call from the writer to the sequencer's node (sequential, or 64 in flight).`);
  }
  const fresh = [...icsRows, ...encryption, ...clmsRows, ...multipathRows, ...registryRows];
  // Every run replaces its own rows and keeps the others: a partial run (--only, --clms) those of
  // the last full run, a full run those that other scripts write (bench/dlm.ts, services.ts,
  // multipath.ts, the --plain rows), which it would otherwise drop.
  const all = mergedRows(`${BENCH_DIR}results.json`, fresh);
  writeFileSync(`${BENCH_DIR}results.json`, JSON.stringify(all, null, 2) + '\n');
  if (JSON_OUT) process.stdout.write(JSON.stringify(all, null, 2) + '\n');
  else console.log(`wrote bench/results.json (${((now() - t0) / 1000).toFixed(0)} s)`);
}

/** The ICS rows (undefined when profiling, which writes no results). */
async function icsMain(rows: RowSpec[], profileRows: RowSpec[]): Promise<ResultRow[] | undefined> {
  const secret = randomBytes(32).toString('hex');
  await buildLib();
  const { createIcs, tcp } = await loadLib();
  const ready = await startServer(secret);
  let ics: IcsSystem | undefined;
  let baseline: BaselineSystem | undefined;
  let references: ReferenceSystem[] = [];
  try {
    ics = new IcsSystem(
      createIcs({
        transport: tcp({ host: '127.0.0.1', port: 0, secret, ...(PLAIN ? { encrypt: false } : {}) }),
        clusterName: CLUSTER,
        nodeNum: CLIENT_NODE,
        peers: { [SERVER_NODE]: ready.ics },
      }),
    );
    baseline = new BaselineSystem(await dial(ready.rpcPort), await dial(ready.bulkPort));
    // Connect (and authenticate) before anything is timed.
    await ics.call(SMALL);
    await baseline.call(SMALL);
    if (ready.references) references = await connectReferences(ready.references);
    if (ALS) new AsyncLocalStorage<number>().run(1, () => undefined);

    if (PROFILE) {
      await profile(profileRows, [ics, baseline]);
      return undefined;
    }

    log(
      `bench: ${rows.length} rows x ${ROUNDS} rounds, ${SECONDS}s each (warm-up ${WARMUP}s, first round ${FIRST_WARMUP}s), ` +
        `node ${process.version}, ICS with a pre-shared secret over transport-tcp, ` +
        (USE_TSX ? 'ICS loaded from source under tsx (keepNames)' : 'ICS bundled like the published build'),
    );
    const results = new Map<string, Record<System['name'], Measured[]>>();
    for (const r of rows) results.set(r.id, { ics: [], baseline: [], moleculer: [], grpc: [] });
    const loads: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const row of rows) {
        // Rotate who goes first, so no system always runs on a warmer (or busier) machine.
        const all: System[] = [baseline, ics, ...references.filter((r) => REFERENCE_ROWS[r.name].includes(row.id))];
        const k = (round + ROWS.indexOf(row)) % all.length;
        const order = [...all.slice(k), ...all.slice(0, k)];
        loads.push(loadavg()[0]!);
        for (const sys of order) {
          await row.run(sys, round === 0 ? FIRST_WARMUP : WARMUP);
          const m = await withCpu(() => row.run(sys, SECONDS));
          results.get(row.id)![sys.name].push(m);
          log(`  round ${round + 1} ${row.id.padEnd(16)} ${sys.name.padEnd(8)} ${fmt(row.unit, m.value)} ${row.unit}${CPU_SPLIT ? cpuSplit(m, row.better) : ''}`);
        }
      }
    }

    const out: (ResultRow & { target?: number; rounds: { ics: number[]; baseline: number[] } })[] = [];
    for (const row of rows) {
      const r = results.get(row.id)!;
      const add = (name: string, pick: (m: Measured) => number, target: number | undefined): void => {
        const iv = r.ics.map(pick);
        const bv = r.baseline.map(pick);
        const value = median(iv);
        const base = median(bv);
        out.push({
          suite: 'ics-tcp',
          // --plain rows are kept beside the encrypted ones in results.json, not in their place.
          name: PLAIN ? `${name} [encrypt: false]` : name,
          unit: row.unit,
          better: row.better,
          value,
          baseline: base,
          ratio: value / base,
          target,
          rounds: { ics: iv, baseline: bv },
        });
      };
      add(row.name, (m) => m.value, row.target);
      for (const d of row.derived ?? []) add(d.name, (m) => m.extra![d.key]!, d.target);
      // The same work per CPU second of both processes: what the load of other jobs disturbs least.
      if (row.better === 'higher') add(`${row.name}, per cpu-second`, (m) => (m.value * m.extra!.wallS!) / m.extra!.cpuS!, undefined);
      else add(`${row.name}, cpu per call`, (m) => (m.extra!.cpuS! * 1e6) / m.extra!.calls!, undefined);
    }
    const refOut = referenceRows(rows, results);
    const load = `load average ${Math.min(...loads).toFixed(1)}-${Math.max(...loads).toFixed(1)} (1 min) during the rows, 2 cores`;
    const json: ResultRow[] = [...out, ...refOut].map(({ suite, name, unit, better, value, baseline: b, ratio }) => ({
      suite,
      name,
      unit,
      better,
      value: round3(value),
      baseline: round3(b),
      ratio: round3(ratio),
      note: load,
    }));
    if (!JSON_OUT) {
      console.log();
      console.log(table(out));
      console.log();
      console.log(`ratio = ICS / baseline (medians of ${ROUNDS} rounds); latency: lower is better, so the target is a ceiling.`);
      console.log('per round (ICS | baseline):');
      for (const r of out) {
        console.log(`  ${r.name}: ${r.rounds.ics.map((v) => fmt(r.unit, v)).join(', ')} | ${r.rounds.baseline.map((v) => fmt(r.unit, v)).join(', ')}`);
      }
      for (const row of rows) if (row.note) console.log(row.note);
      if (refOut.length > 0) {
        console.log(`\n${table(refOut, 'value')}\n(reference: value = the library named, baseline = net+msgpackr; ics/moleculer: value = ICS, baseline = Moleculer)`);
      }
      console.log(load);
    }
    return json;
  } finally {
    for (const r of references) await Promise.race([r.close(), new Promise((res) => setTimeout(res, 3000))]).catch(() => {});
    await Promise.race([ics?.close(), new Promise((r) => setTimeout(r, 3000))]).catch(() => {});
    await baseline?.close();
    await stopServer();
  }
}

const round3 = (v: number): number => Math.round(v * 1000) / 1000;

/** Runs a measurement and adds the wall time and the CPU time of both processes (client and server) it took. */
async function withCpu(run: () => Promise<Measured>): Promise<Measured> {
  const server0 = await ask<number>('cpu');
  const c0 = process.cpuUsage();
  const t0 = now();
  const m = await run();
  const wallS = (now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  const server = (await ask<number>('cpu')) - server0;
  return { ...m, extra: { ...m.extra, wallS, cpuS: (c.user + c.system + server) / 1e6, clientUserUs: c.user, clientSysUs: c.system, serverUs: server } };
}

/** `--cpu-split`: CPU microseconds per operation (a call, a message, a MB; for latency rows, per call) of each process. */
function cpuSplit(m: Measured, better: 'higher' | 'lower'): string {
  const e = m.extra!;
  const ops = better === 'higher' ? m.value * e.wallS! : e.calls!;
  const per = (us: number): string => (us / ops).toFixed(2);
  return ` | us per op: client user ${per(e.clientUserUs!)}, sys ${per(e.clientSysUs!)}; server ${per(e.serverUs!)}`;
}

type TableRow = ResultRow & { target?: number; rounds: { ics: number[]; baseline: number[] } };

/**
 * Rows of suite `ics-reference`: each reference library against the same
 * net+msgpackr baseline (`<lib>: <row>`), and ICS against Moleculer
 * (`ics/moleculer: <row>`, target >= 3x on throughput rows) and gRPC.
 */
function referenceRows(rows: RowSpec[], results: Map<string, Record<System['name'], Measured[]>>): TableRow[] {
  const out: TableRow[] = [];
  for (const row of rows) {
    const r = results.get(row.id)!;
    const pair = (name: string, a: Measured[], b: Measured[], target?: number): void => {
      if (a.length === 0 || b.length === 0) return;
      const av = a.map((m) => m.value);
      const bv = b.map((m) => m.value);
      const value = median(av);
      const base = median(bv);
      const ratio = value / base;
      out.push({ suite: 'ics-reference', name, unit: row.unit, better: row.better, value, baseline: base, ratio, target, rounds: { ics: av, baseline: bv } });
    };
    for (const lib of ['moleculer', 'grpc'] as const) pair(`${lib}: ${row.name}`, r[lib], r.baseline);
    // ICS against a library with --plain: kept beside the encrypted comparison, not in its place.
    const mode = PLAIN ? ' [encrypt: false]' : '';
    pair(`ics/moleculer: ${row.name}${mode}`, r.ics, r.moleculer, row.better === 'higher' ? 3 : undefined);
    pair(`ics/grpc: ${row.name}${mode}`, r.ics, r.grpc);
  }
  return out;
}

async function profile(rows: RowSpec[], systems: System[]): Promise<void> {
  const dir = `${BENCH_DIR}profiles`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/.gitignore`, '*\n');
  const top = Number(flag('top') ?? 12);
  for (const row of rows) {
    for (const sys of systems) {
      await row.run(sys, FIRST_WARMUP);
      type Stats = { messagesSent: number; messagesReceived: number };
      const before = sys.name === 'ics' ? await ask<Stats>('stats') : undefined;
      const clientBefore = sys instanceof IcsSystem ? sys.stats() : undefined;
      const p = new Profiler();
      const base = `${dir}/${row.id}-${sys.name}`;
      await ask('profile-start');
      await p.start();
      const m = await row.run(sys, SECONDS);
      const clientProfile = await p.stop();
      await ask('profile-stop', { file: `${base}-server.cpuprofile` });
      writeFileSync(`${base}-client.cpuprofile`, JSON.stringify(clientProfile));
      const serverProfile = JSON.parse(readFileSync(`${base}-server.cpuprofile`, 'utf8')) as CpuProfile;
      console.log(`\n=== ${row.id} / ${sys.name}: ${fmt(row.unit, m.value)} ${row.unit} while profiled`);
      if (before && clientBefore && sys instanceof IcsSystem) {
        const after = await ask<Stats>('stats');
        const c = sys.stats();
        console.log(
          `ICS frames: client sent ${c.messagesSent - clientBefore.messagesSent}, received ${c.messagesReceived - clientBefore.messagesReceived}; ` +
            `server sent ${after.messagesSent - before.messagesSent}, received ${after.messagesReceived - before.messagesReceived}`,
        );
      }
      console.log(formatSummary(`client (${base}-client.cpuprofile)`, clientProfile, top));
      console.log(formatSummary(`server (${base}-server.cpuprofile)`, serverProfile, top));
    }
  }
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    console.error('bench failed:', err instanceof Error ? err.stack : err);
    await stopServer().catch(() => {});
    process.exit(1);
  },
);
