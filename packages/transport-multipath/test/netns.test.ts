/**
 * Real sockets over two paths: two network namespaces joined by two veth
 * pairs (path 0 and path 1), one ClusterNode over multipath(tcp, tcp) in
 * each, as separate processes (./netns-runner.ts). While node 1 calls node
 * 2 without pause, the test takes path 0's interface down, brings it back,
 * then takes path 1's down: no call may fail, no node may be declared
 * down, and node 2 must see every call once and in order.
 *
 * Linux and root only: without them (or without CAP_SYS_ADMIN) the test
 * says why and skips. It makes and deletes its own namespaces (and those of
 * crashed earlier runs), sends traffic only inside them, and ends by itself
 * (each phase has a ceiling; the children exit when stdin closes or after a
 * maximum life). Timing is not asserted: only outcomes, under ceilings.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cannotRun } from '../../core/test/netns/netns.js';
import { formatMultipathAddress } from '../src/index.js';
import type { RunnerConfig } from './netns-runner.js';

const run = promisify(execFile);
const RUNNER = fileURLToPath(new URL('./netns-runner.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const PREFIX = 'cimpns';
const A = `${PREFIX}${process.pid}-a`;
const B = `${PREFIX}${process.pid}-b`;
const octet = (process.pid % 250) + 1;
/** Host `h` (1 or 2) on path `p`. */
const ipOf = (p: number, h: number): string => `10.${216 + p}.${octet}.${h}`;
const PORT = 7100;
const TEST_TIMEOUT = 120_000;
const PHASE_MS = 30_000;

async function ip(...args: string[]): Promise<string> {
  try {
    return (await run('ip', args, { timeout: 15_000 })).stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`);
  }
}

async function deleteNamespace(ns: string): Promise<void> {
  const pids = await ip('netns', 'pids', ns).catch(() => '');
  for (const p of pids.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await ip('netns', 'del', ns).catch(() => undefined);
}

/** Namespaces of earlier runs whose process is gone. */
async function removeLeftovers(): Promise<void> {
  const list = await ip('netns', 'list').catch(() => '');
  for (const name of list.split('\n').map((l) => l.split(/\s/)[0] ?? '')) {
    const m = new RegExp(`^${PREFIX}(\\d+)-[ab]$`).exec(name);
    if (!m || Number(m[1]) === process.pid) continue;
    let alive = true;
    try {
      process.kill(Number(m[1]), 0);
    } catch (err) {
      alive = (err as NodeJS.ErrnoException).code === 'EPERM';
    }
    if (!alive) await deleteNamespace(name);
  }
}

interface Report {
  mp: string;
  [k: string]: unknown;
}

class Proc {
  readonly reports: Report[] = [];
  readonly output: string[] = [];
  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    changed: EventEmitter,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('{"mp":')) this.reports.push(JSON.parse(line) as Report);
      else this.output.push(line);
      changed.emit('change');
    });
    createInterface({ input: child.stderr! }).on('line', (line) => this.output.push(line));
    child.stdin!.on('error', () => {});
    child.once('exit', () => changed.emit('change'));
  }

  last(kind: string): Report | undefined {
    return this.reports.findLast((r) => r.mp === kind);
  }

  /** The last state reported for `path` of any link. */
  pathUp(path: number): boolean {
    return this.reports.findLast((r) => r.mp === 'path' && r.path === path)?.state === 'up';
  }

  get settled(): number {
    return (this.last('progress')?.settled as number | undefined) ?? 0;
  }

  describe(): string {
    const fatal = this.reports.filter((r) => r.mp === 'fatal').map((r) => r.error);
    return `${this.name}: last reports ${JSON.stringify(this.reports.slice(-4))}${fatal.length ? ` FATAL ${fatal.join(' | ')}` : ''}\n  output: ${this.output.slice(-5).join('\n  ')}`;
  }
}

const changes = new EventEmitter().setMaxListeners(0);
const procs: Proc[] = [];
let skipReason: string | undefined;

function until(pred: () => boolean, what: string, timeoutMs = PHASE_MS): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const fatal = procs.find((p) => p.last('fatal') !== undefined || p.child.exitCode !== null);
      if (fatal) {
        done();
        reject(new Error(`${fatal.name} failed while waiting for ${what}\n${procs.map((p) => p.describe()).join('\n')}`));
        return;
      }
      if (!pred()) return;
      done();
      resolve();
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${procs.map((p) => p.describe()).join('\n')}`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      changes.off('change', check);
    };
    changes.on('change', check);
    check();
  });
}

function start(name: string, ns: string, config: RunnerConfig, secret: string): Proc {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', RUNNER], {
    cwd: ROOT,
    env: { ...process.env, MP_NETNS: JSON.stringify(config), MP_SECRET: secret },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const p = new Proc(name, child, changes);
  procs.push(p);
  return p;
}

async function teardown(): Promise<void> {
  for (const p of procs) p.child.stdin?.end();
  await Promise.all(procs.map((p) => new Promise<void>((r) => (p.child.exitCode !== null ? r() : (p.child.once('exit', () => r()), setTimeout(r, 3000))))));
  for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  await deleteNamespace(A);
  await deleteNamespace(B);
}

beforeAll(async () => {
  skipReason = cannotRun();
  if (skipReason) {
    console.warn(`multipath netns test skipped: ${skipReason}`);
    return;
  }
  await removeLeftovers();
  await ip('netns', 'add', A);
  await ip('netns', 'add', B);
  for (const ns of [A, B]) await ip('-n', ns, 'link', 'set', 'lo', 'up');
  for (const p of [0, 1]) {
    await ip('-n', A, 'link', 'add', `mpa${p}`, 'type', 'veth', 'peer', 'name', `mpb${p}`, 'netns', B);
    await ip('-n', A, 'addr', 'add', `${ipOf(p, 1)}/24`, 'dev', `mpa${p}`);
    await ip('-n', B, 'addr', 'add', `${ipOf(p, 2)}/24`, 'dev', `mpb${p}`);
    await ip('-n', A, 'link', 'set', `mpa${p}`, 'up');
    await ip('-n', B, 'link', 'set', `mpb${p}`, 'up');
  }
}, 60_000);

afterAll(teardown, 30_000);

it(
  'two veth paths: taking one interface down, then the other, fails no call, downs no node, keeps order',
  async (ctx) => {
    if (skipReason) {
      ctx.skip(skipReason);
      return;
    }
    const secret = randomBytes(32).toString('hex');
    const life = 2 * TEST_TIMEOUT;
    const server = start('server', B, { role: 'server', nodeNum: 2, hosts: [ipOf(0, 2), ipOf(1, 2)], port: PORT, maxLifeMs: life }, secret);
    const peer = formatMultipathAddress([`${ipOf(0, 2)}:${PORT}`, `${ipOf(1, 2)}:${PORT}`]);
    const client = start('client', A, { role: 'client', nodeNum: 1, hosts: [ipOf(0, 1), ipOf(1, 1)], port: PORT, peer, maxLifeMs: life }, secret);
    await until(() => client.last('up') !== undefined && server.last('up') !== undefined, 'both nodes Up');
    client.child.stdin!.write('go\n');
    await until(() => client.settled >= 200, 'traffic to start');

    // Path 0 goes away under the traffic (the interface, not the process: nothing is reset).
    await ip('-n', A, 'link', 'set', 'mpa0', 'down');
    let from = client.settled;
    await until(() => !client.pathUp(0) && client.settled >= from + 300, 'traffic on path 1 alone');

    // It comes back and is used again; then path 1 goes away.
    await ip('-n', A, 'link', 'set', 'mpa0', 'up');
    await until(() => client.pathUp(0), 'path 0 to come back');
    await ip('-n', A, 'link', 'set', 'mpa1', 'down');
    from = client.settled;
    await until(() => !client.pathUp(1) && client.settled >= from + 300, 'traffic on path 0 alone');
    await ip('-n', A, 'link', 'set', 'mpa1', 'up');

    client.child.stdin!.write('stop\n');
    await until(() => client.last('done') !== undefined, 'the client to finish');
    server.child.stdin!.write('report\n');
    await until(() => server.last('report') !== undefined, 'the server report');
    const done = client.last('done')!;
    const report = server.last('report')!;
    expect(done.errors).toEqual([]);
    expect(done.failures).toBe(0);
    expect(done.inOrder).toBe(true);
    expect(done.nodedowns).toEqual([]);
    expect(report.nodedowns).toEqual([]);
    expect(report.count).toBe(done.settled);
    expect(report.duplicates).toBe(0);
    expect(report.inOrder).toBe(true);
    const paths = (done.health as { paths: { failures: number }[] }[]).flatMap((l) => l.paths);
    expect(paths.filter((p) => p.failures > 0).length).toBeGreaterThanOrEqual(2);
    expect(procs.flatMap((p) => p.reports.filter((r) => r.mp === 'fatal'))).toEqual([]);
  },
  TEST_TIMEOUT,
);
