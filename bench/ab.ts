/**
 * A/B of two versions of ICS + transport-tcp in one run
 * (`npx tsx bench/ab.ts [--ref=HEAD] [--rows=pipelined-small,oneway,...]`,
 * not part of `npm run bench`): the working tree ("new") against the
 * sources of a git ref ("old"), each bundled as load.ts bundles the library
 * under test, both loaded into the same two OS processes (this one and a
 * forked server). Every round measures each row on old and new back to back,
 * alternating which goes first, and the CPU time both processes spent on
 * it; the table gives medians, and `ratio` is the median of the rounds'
 * new/old ratios (one round sees one load of a shared machine).
 *
 *   --ref=<git ref>   the old version (default HEAD: uncommitted changes against the last commit)
 *   --rows=<ids>      pipelined-small, pipelined-64k, oneway, bulk, latency (default: the four throughput rows)
 *   --rounds=<n>      (7)   --seconds=<s> per measurement (1.5)   --plain (links with encrypt: false)
 *   --build-only      bundle both into bench/.build/ab/{old,new}.mjs and stop (for profiling either one)
 */
import { execFileSync, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { BENCH_SERVICE, benchHandlers, bundleLikePublished, CLIENT_NODE, closedLoopRate, CLUSTER, KiB64, median, MiB1, OneWayCounter, oneWayRate, SERVER_NODE, SMALL } from './common.js';
import type { IcsLib } from './load.js';

type Ics = ReturnType<IcsLib['createIcs']>;
type Version = 'old' | 'new';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUT = fileURLToPath(new URL('./.build/ab/', import.meta.url));
const TIMEOUT = { timeoutMs: 15_000 };

function flag(name: string, dflt: string): string {
  const a = process.argv.slice(2).find((x) => x.startsWith(`--${name}=`) || x === `--${name}`);
  if (a === undefined) return dflt;
  return a.includes('=') ? a.slice(a.indexOf('=') + 1) : '';
}

const ROWS: Record<string, { unit: string; run: (ics: Ics, seconds: number) => Promise<number> }> = {
  latency: {
    unit: 'calls/s',
    run: (ics, s) => closedLoopRate(s, 1, () => ics.call(SERVER_NODE, BENCH_SERVICE, 'echo', SMALL, TIMEOUT)),
  },
  'pipelined-small': {
    unit: 'calls/s',
    run: (ics, s) => closedLoopRate(s, 64, () => ics.call(SERVER_NODE, BENCH_SERVICE, 'echo', SMALL, TIMEOUT)),
  },
  'pipelined-64k': {
    unit: 'calls/s',
    run: (ics, s) => closedLoopRate(s, 64, () => ics.call(SERVER_NODE, BENCH_SERVICE, 'echo', KiB64, TIMEOUT)),
  },
  oneway: {
    unit: 'msgs/s',
    run: async (ics, s) =>
      (
        await oneWayRate(
          {
            trySend: (p) => ics.trySend(SERVER_NODE, BENCH_SERVICE, 'note', p),
            drained: () => new Promise<void>((r) => ics.once('drain', () => r())),
            reset: () => ics.call(SERVER_NODE, BENCH_SERVICE, 'reset', null, TIMEOUT),
            waitCount: (n) => ics.call(SERVER_NODE, BENCH_SERVICE, 'waitCount', n, TIMEOUT),
          },
          s,
          SMALL,
        )
      ).rate,
  },
  bulk: {
    unit: 'MB/s',
    run: async (ics, s) => (await closedLoopRate(s, 4, () => ics.call(SERVER_NODE, BENCH_SERVICE, 'sink', MiB1, TIMEOUT))) * (MiB1.byteLength / 1e6),
  },
};

/** Bundle the library from `src` (a tree holding packages/core and packages/transport-tcp) into OUT/<version>.mjs. */
async function bundle(version: Version, src: string): Promise<void> {
  const entry = `${OUT}${version}-entry.ts`;
  writeFileSync(entry, `export { createIcs } from '${src}packages/core/src/index.ts';\nexport { tcp } from '${src}packages/transport-tcp/src/index.ts';\n`);
  writeFileSync(
    `${OUT}${version}-tsconfig.json`,
    JSON.stringify({ compilerOptions: { baseUrl: src, paths: { '@clusterinfra/core': ['packages/core/src/index.ts'] } } }),
  );
  await bundleLikePublished(entry, `${OUT}${version}.mjs`, { tsconfig: `${OUT}${version}-tsconfig.json`, sourcemap: true });
}

const load = async (version: Version): Promise<IcsLib> => (await import(pathToFileURL(`${OUT}${version}.mjs`).href)) as IcsLib;

async function serve(): Promise<void> {
  const secret = process.env.BENCH_SECRET!;
  const plain = process.env.BENCH_PLAIN === '1';
  const counter = new OneWayCounter();
  const addresses: Record<string, string> = {};
  const servers: Ics[] = [];
  for (const version of ['old', 'new'] as const) {
    const { createIcs, tcp } = await load(version);
    const ics = createIcs({ transport: tcp({ host: '127.0.0.1', port: 0, secret, ...(plain ? { encrypt: false } : {}) }), clusterName: CLUSTER, nodeNum: SERVER_NODE });
    await ics.start();
    ics.registerService({ ...BENCH_SERVICE, name: 'bench', handlers: benchHandlers(counter) });
    servers.push(ics);
    addresses[version] = ics.address!;
  }
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'cpu') {
      const c = process.cpuUsage();
      process.send!({ cpu: c.user + c.system });
    } else if (m.cmd === 'exit') void Promise.all(servers.map((s) => s.close())).then(() => process.exit(0));
  });
  process.on('disconnect', () => process.exit(0));
  process.send!({ ready: true, ...addresses });
}

async function main(): Promise<void> {
  const ref = flag('ref', 'HEAD');
  const rows = flag('rows', 'pipelined-small,pipelined-64k,oneway,bulk').split(',').filter(Boolean);
  for (const r of rows) if (!ROWS[r]) throw new Error(`--rows: no row ${r} (have ${Object.keys(ROWS).join(', ')})`);
  const rounds = Number(flag('rounds', '7'));
  const seconds = Number(flag('seconds', '1.5'));
  const plain = process.argv.includes('--plain');
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(`${OUT}old-src`, { recursive: true });
  writeFileSync(`${OUT}../.gitignore`, '*\n');
  const tar = execFileSync('git', ['-C', ROOT, 'archive', ref, 'packages/core/src', 'packages/transport-tcp/src'], { maxBuffer: 1 << 28 });
  execFileSync('tar', ['-x', '-C', `${OUT}old-src`], { input: tar });
  await bundle('old', `${OUT}old-src/`);
  await bundle('new', ROOT);
  if (process.argv.includes('--build-only')) return;

  const secret = randomBytes(32).toString('hex');
  const child = fork(fileURLToPath(import.meta.url), ['--serve'], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, BENCH_SECRET: secret, BENCH_PLAIN: plain ? '1' : '0' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const clients = new Map<Version, Ics>();
  try {
    const ready = await new Promise<Record<Version, string>>((resolve, reject) => {
      child.once('message', (m) => resolve(m as Record<Version, string>));
      child.once('exit', (code) => reject(new Error(`ab server exited (${code})`)));
    });
    const serverCpu = (): Promise<number> =>
      new Promise((resolve) => {
        child.once('message', (m) => resolve((m as { cpu: number }).cpu));
        child.send({ cmd: 'cpu' });
      });
    for (const version of ['old', 'new'] as const) {
      const { createIcs, tcp } = await load(version);
      const ics = createIcs({
        transport: tcp({ host: '127.0.0.1', port: 0, secret, ...(plain ? { encrypt: false } : {}) }),
        clusterName: CLUSTER,
        nodeNum: CLIENT_NODE,
        peers: { [SERVER_NODE]: ready[version] },
      });
      await ics.call(SERVER_NODE, BENCH_SERVICE, 'echo', SMALL, TIMEOUT);
      clients.set(version, ics);
    }
    const results = new Map(rows.map((r) => [r, { old: [] as { wall: number; cpu: number }[], new: [] as { wall: number; cpu: number }[] }]));
    for (let round = 0; round < rounds; round++) {
      for (const [i, id] of rows.entries()) {
        const row = ROWS[id]!;
        const order: Version[] = (round + i) % 2 === 0 ? ['old', 'new'] : ['new', 'old'];
        for (const v of order) {
          const ics = clients.get(v)!;
          await row.run(ics, round === 0 ? 1 : 0.25);
          const s0 = await serverCpu();
          const c0 = process.cpuUsage();
          const t0 = performance.now();
          const rate = await row.run(ics, seconds);
          const wallS = (performance.now() - t0) / 1000;
          const c = process.cpuUsage(c0);
          const cpuS = (c.user + c.system + (await serverCpu()) - s0) / 1e6;
          results.get(id)![v].push({ wall: rate, cpu: (rate * wallS) / cpuS });
          console.error(`  round ${round + 1} ${id.padEnd(16)} ${v} ${rate.toFixed(0)} ${row.unit}, ${((rate * wallS) / cpuS).toFixed(0)} per cpu-second`);
        }
      }
    }
    console.log(`\nA/B: new = working tree, old = ${ref}${plain ? ' (encrypt: false)' : ''}; medians of ${rounds} rounds; ratio = median of per-round new/old`);
    console.log('| row | unit | old | new | new/old | old per cpu-s | new per cpu-s | new/old per cpu-s |');
    console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const id of rows) {
      const r = results.get(id)!;
      const ratio = (k: 'wall' | 'cpu'): number => median(r.new.map((n, i) => n[k] / r.old[i]![k]));
      const med = (v: Version, k: 'wall' | 'cpu'): string => median(r[v].map((x) => x[k])).toFixed(0);
      console.log(`| ${id} | ${ROWS[id]!.unit} | ${med('old', 'wall')} | ${med('new', 'wall')} | ${ratio('wall').toFixed(2)} | ${med('old', 'cpu')} | ${med('new', 'cpu')} | ${ratio('cpu').toFixed(2)} |`);
    }
  } finally {
    await Promise.race([Promise.all([...clients.values()].map((c) => c.close())), new Promise((r) => setTimeout(r, 3000))]).catch(() => {});
    child.send({ cmd: 'exit' });
    const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
    clearTimeout(killer);
  }
}

if (process.argv.includes('--serve')) await serve();
else
  await main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error('ab failed:', err);
      process.exit(1);
    },
  );
