/**
 * What the encryption of `secret` links costs: ICS over transport-tcp with a
 * pre-shared secret, encrypted (the default) against the same with
 * `encrypt: false` on both sides, in the same run, between two OS processes
 * on 127.0.0.1. Rows: pipelined small RPC, one-way small messages, bulk
 * 1 MiB values (out of line). See bench/README.md.
 *
 * Run by run.ts (`npm run bench`, or alone: `npm run bench -- --only=encryption`),
 * which writes the rows into bench/results.json (suite "tcp-encryption").
 * This file is also the server process: run.ts's child mode is
 * `encryption.ts --serve`, forked over IPC.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import {
  BENCH_SERVICE,
  CLIENT_NODE,
  CLUSTER,
  MiB1,
  OneWayCounter,
  type OneWayTarget,
  SERVER_NODE,
  SMALL,
  benchHandlers,
  closedLoopRate,
  median,
  oneWayRate,
} from './common.js';
import { type IcsLib, buildLib, loadLib } from './load.js';

type Ics = ReturnType<IcsLib['createIcs']>;

export interface EncryptionRow {
  suite: 'tcp-encryption';
  name: string;
  unit: string;
  better: 'higher';
  /** Encrypted. */
  value: number;
  /** The same with `encrypt: false` on both sides. */
  baseline: number;
  ratio: number;
  target: number;
  /** Per round: `ics` encrypted, `baseline` plain (the shape run.ts's table prints). */
  rounds: { ics: number[]; baseline: number[] };
}

const PIPELINE = 64;
const BULK_IN_FLIGHT = 4;
const ONEWAY_BATCH = 1024;
const TIMEOUT = { timeoutMs: 15_000 };

/** The two servers: one ICS per mode, each serving the bench service (common.ts). */
async function serve(secret: string): Promise<void> {
  const { createIcs, tcp } = await loadLib();
  const counter = new OneWayCounter();
  const addresses: Record<string, string> = {};
  const servers: Ics[] = [];
  for (const encrypt of [true, false]) {
    const ics = createIcs({ transport: tcp({ host: '127.0.0.1', port: 0, secret, encrypt }), clusterName: CLUSTER, nodeNum: SERVER_NODE });
    await ics.start();
    ics.registerService({ ...BENCH_SERVICE, name: 'bench', handlers: benchHandlers(counter) });
    servers.push(ics);
    addresses[encrypt ? 'encrypted' : 'plain'] = ics.address!;
  }
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'exit') void Promise.all(servers.map((s) => s.close())).then(() => process.exit(0));
  });
  process.on('disconnect', () => process.exit(0));
  process.send!({ ready: true, ...addresses });
}

interface Mode {
  name: 'encrypted' | 'plain';
  ics: Ics;
}

/** The one-way measurement's view of an ICS client. */
function oneWayTarget(ics: Ics): OneWayTarget {
  return {
    trySend: (payload) => ics.trySend(SERVER_NODE, BENCH_SERVICE, 'note', payload),
    drained: () => new Promise<void>((r) => ics.once('drain', () => r())),
    reset: () => ics.call(SERVER_NODE, BENCH_SERVICE, 'reset', null, TIMEOUT),
    waitCount: (n) => ics.call(SERVER_NODE, BENCH_SERVICE, 'waitCount', n, TIMEOUT),
  };
}

const ROWS: Array<{ name: string; unit: string; target: number; run: (ics: Ics, seconds: number) => Promise<number> }> = [
  {
    name: `encrypted/plain: pipelined rpc, ${PIPELINE} in flight (small)`,
    unit: 'calls/s',
    target: 0.7,
    run: (ics, s) => closedLoopRate(s, PIPELINE, () => ics.call(SERVER_NODE, BENCH_SERVICE, 'echo', SMALL, TIMEOUT)),
  },
  {
    name: 'encrypted/plain: one-way messages (small)',
    unit: 'msgs/s',
    target: 0.7,
    run: async (ics, s) => (await oneWayRate(oneWayTarget(ics), s, SMALL, ONEWAY_BATCH)).rate,
  },
  {
    name: `encrypted/plain: bulk 1 MiB values, ${BULK_IN_FLIGHT} in flight`,
    unit: 'MB/s',
    target: 0.5,
    run: async (ics, s) => (await closedLoopRate(s, BULK_IN_FLIGHT, () => ics.call(SERVER_NODE, BENCH_SERVICE, 'sink', MiB1, TIMEOUT))) * (MiB1.byteLength / 1e6),
  },
];

export async function runEncryptionBench(options: { rounds: number; seconds: number; warmup: number; log?: (line: string) => void }): Promise<EncryptionRow[]> {
  const log = options.log ?? (() => {});
  const secret = randomBytes(32).toString('base64');
  await buildLib();
  const child = fork(fileURLToPath(import.meta.url), ['--serve'], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, BENCH_SECRET: secret },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const modes: Mode[] = [];
  try {
    const ready = await new Promise<{ encrypted: string; plain: string }>((resolve, reject) => {
      child.once('message', (m) => resolve(m as { encrypted: string; plain: string }));
      child.once('exit', (code) => reject(new Error(`encryption bench server exited (${code})`)));
    });
    const { createIcs, tcp } = await loadLib();
    for (const name of ['encrypted', 'plain'] as const) {
      const ics = createIcs({
        transport: tcp({ host: '127.0.0.1', port: 0, secret, encrypt: name === 'encrypted' }),
        clusterName: CLUSTER,
        nodeNum: CLIENT_NODE,
        peers: { [SERVER_NODE]: ready[name] },
      });
      await ics.call(SERVER_NODE, BENCH_SERVICE, 'echo', SMALL, TIMEOUT); // connect and authenticate before timing
      modes.push({ name, ics });
    }
    const results = ROWS.map(() => ({ encrypted: [] as number[], plain: [] as number[] }));
    for (let round = 0; round < options.rounds; round++) {
      for (const [i, row] of ROWS.entries()) {
        // Alternate who goes first, so neither always runs on a warmer (or busier) machine.
        const order = (round + i) % 2 === 0 ? modes : [...modes].reverse();
        for (const m of order) {
          await row.run(m.ics, round === 0 ? Math.max(1, options.warmup) : options.warmup);
          const v = await row.run(m.ics, options.seconds);
          results[i]![m.name].push(v);
          log(`  round ${round + 1} ${row.name.padEnd(58)} ${m.name.padEnd(9)} ${v.toFixed(1)} ${row.unit}`);
        }
      }
    }
    return ROWS.map((row, i) => {
      const r = results[i]!;
      const value = median(r.encrypted);
      const baseline = median(r.plain);
      const rounds = { ics: r.encrypted, baseline: r.plain };
      return { suite: 'tcp-encryption', name: row.name, unit: row.unit, better: 'higher', value, baseline, ratio: value / baseline, target: row.target, rounds };
    });
  } finally {
    await Promise.race([Promise.all(modes.map((m) => m.ics.close())), new Promise((r) => setTimeout(r, 3000))]).catch(() => {});
    child.send({ cmd: 'exit' });
    const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
    clearTimeout(killer);
  }
}

if (process.argv.includes('--serve')) {
  const secret = process.env.BENCH_SECRET;
  if (!secret || typeof process.send !== 'function') {
    console.error('bench/encryption.ts --serve is started by bench/encryption.ts');
    process.exit(2);
  }
  await serve(secret);
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rows = await runEncryptionBench({ rounds: 3, seconds: 1.5, warmup: 0.25, log: (l) => console.error(l) });
  console.log(JSON.stringify(rows, null, 2));
}
