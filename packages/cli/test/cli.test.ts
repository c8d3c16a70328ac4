/**
 * The `cluster` command in-process (runCli with captured streams) against
 * real admin endpoints over a 3-node transport-mem cluster.
 */
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AdminServer, type HistoryView, type KeysView, serveAdmin, type StatusView } from '@clusterinfra/admin';
import { type CliIo, runCli } from '@clusterinfra/cli';
import { startCluster, type TestCluster, TOKEN, waitFor } from '../../admin/test/cluster.js';

let cluster: TestCluster;
const servers = new Map<number, AdminServer>();

beforeAll(async () => {
  cluster = await startCluster(3, { keyService: 'directory' });
  for (const [n, node] of cluster.nodes) servers.set(n, await serveAdmin(node, { token: TOKEN }));
}, 60_000);

afterAll(async () => {
  await Promise.all([...servers.values()].map((s) => s.close()));
  await cluster?.close();
});

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the command with `CLUSTER_URL`/`CLUSTER_TOKEN` pointing at node `via` unless `env` overrides them. */
async function run(args: string[], options: { via?: number; env?: Record<string, string | undefined>; tty?: boolean; signal?: AbortSignal; onOut?: (all: string) => void } = {}): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: {
      write: (s: string) => {
        stdout += s;
        options.onOut?.(stdout);
        return true;
      },
      isTTY: options.tty ?? false,
    },
    stderr: { write: (s: string) => (stderr += s) },
    env: { CLUSTER_URL: servers.get(options.via ?? 1)!.url, CLUSTER_TOKEN: TOKEN, ...options.env },
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
}

/** One line on stderr, nothing on stdout. */
function expectFailure(r: Result, pattern: RegExp): void {
  expect(r.code).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
}

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('read commands', () => {
  it('status: a table of members, healthy, exit 0', async () => {
    const r = await run(['status']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^cluster admin-test, answered by node 1/);
    expect(r.stdout).toMatch(/^NODE\s+STATE\s+INCARNATION\s+ADDRESS\s+KEY SERVICES$/m);
    const master = cluster.node(1).master!;
    const host = cluster.node(1).keyService('directory')!.host!;
    for (const n of [1, 2, 3]) {
      const row = r.stdout.split('\n').find((l) => l.startsWith(`${n} `))!;
      expect(row).toMatch(new RegExp(`^${n}${n === master ? ' \\*' : ''}\\s+Up\\s+${cluster.node(n).incarnation}\\s+node-${n}\\s+${n === host ? 'directory' : '-'}$`));
    }
    expect(r.stdout).toMatch(/\nhealthy\n$/);
    // Not a terminal: no escape codes.
    expect(r.stdout).not.toContain('\u001b[');
  });

  it('status --json: the endpoint\'s answer', async () => {
    const r = await run(['status', '--json'], { via: 2 });
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout) as StatusView;
    expect(s).toMatchObject({ cluster: 'admin-test', node: 2, hasQuorum: true, formed: true, health: { ok: true } });
    expect(s.members.map((m) => m.node)).toEqual([1, 2, 3]);
  });

  it('colour only on a terminal, and never with NO_COLOR', async () => {
    const tty = await run(['status'], { tty: true });
    expect(tty.stdout).toContain('\u001b[32mUp\u001b[39m');
    const noColor = await run(['status'], { tty: true, env: { NO_COLOR: '1' } });
    expect(noColor.stdout).not.toContain('\u001b[');
  });

  it('history: pages, --since, --limit and --json', async () => {
    const r = await run(['history', '--limit', '2']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^#\s+TERM\s+TIME \(UTC\)\s+TO\s+WHAT$/m);
    expect(r.stdout).toMatch(/^1\s+\d+\s+[\d:.]+\s+ComingUp\s+node \d NeverUp → ComingUp/m);
    expect(r.stdout).toContain('more: cluster history --since 3');
    const j = await run(['history', '--since', '2', '--limit', '3', '--json']);
    const h = JSON.parse(j.stdout) as HistoryView;
    expect(h.transitions.map((t) => t.number)).toEqual([2, 3, 4]);
    expect(h.last).toBe(cluster.node(1).lastTransition);
  });

  it('keys: key services with host and epoch', async () => {
    const r = await run(['keys']);
    expect(r.code).toBe(0);
    const k = cluster.node(1).keyService('directory')!;
    expect(r.stdout).toMatch(new RegExp(`^directory\\s+${k.host}\\s+${k.epoch}\\s+ready\\s+no\\s+${k.since}$`, 'm'));
    const j = JSON.parse((await run(['keys', '--json'])).stdout) as KeysView;
    expect(j.keyServices).toEqual([expect.objectContaining({ name: 'directory', host: k.host, epoch: k.epoch, ready: true })]);
  });

  it('--url and --token flags override the environment', async () => {
    const r = await run(['--url', servers.get(3)!.url, '--token', TOKEN, 'status', '--json'], { env: { CLUSTER_URL: 'http://127.0.0.1:1', CLUSTER_TOKEN: 'nope' } });
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as StatusView).node).toBe(3);
  });
});

describe('errors: exit 1 with one line on stderr', () => {
  it('a wrong or missing token', async () => {
    expectFailure(await run(['status'], { env: { CLUSTER_TOKEN: 'wrong-token-0123456789' } }), /ADMIN_ERR_UNAUTHORIZED/);
    expectFailure(await run(['status'], { env: { CLUSTER_TOKEN: undefined } }), /no admin token/);
  });

  it('an unreachable endpoint or a bad URL', async () => {
    const port = await closedPort();
    expectFailure(await run(['status'], { env: { CLUSTER_URL: `http://127.0.0.1:${port}` } }), /ADMIN_ERR_UNREACHABLE: cannot reach http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
    expectFailure(await run(['keys'], { env: { CLUSTER_URL: 'not a url' } }), /ADMIN_ERR_UNREACHABLE: not a URL/);
  });

  it('bad arguments', async () => {
    expectFailure(await run(['down', 'three']), /node must be a positive integer/);
    expectFailure(await run(['down']), /missing required argument/);
    expectFailure(await run(['history', '--since', '-1']), /--since/);
    expectFailure(await run(['frobnicate']), /unknown command/);
    expectFailure(await run(['status', '--bogus']), /unknown option/);
    expectFailure(await run(['status', 'extra']), /too many arguments|excess/i);
    expectFailure(await run(['down', '42']), /ADMIN_ERR_UNKNOWN_NODE/);
    expectFailure(await run(['sim', '3', '--preset', 'wan']), /--preset must be local or lan/);
  });

  it('--help is not an error', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    for (const c of ['status', 'history', 'keys', 'watch', 'down', 'leave', 'sim']) expect(r.stdout).toContain(c);
  });
});

describe('watch, down, leave and exit 2', () => {
  it('watch follows a declared-down live and exits 0 on Ctrl-C', async () => {
    const stop = new AbortController();
    let seen = false;
    // From the next transition on: whenever the stream opens, it misses nothing after this point.
    const since = cluster.node(2).lastTransition + 1;
    const watching = run(['watch', '--since', String(since)], { via: 2, signal: stop.signal, onOut: (all) => (seen = /node 3 Up → GoingDown \(from the cli\)/.test(all)) });
    const down = await run(['down', '3', '--reason', 'from the cli', '--json']);
    expect(down.code).toBe(0);
    expect(JSON.parse(down.stdout)).toEqual({ ok: true, node: 3 });
    await waitFor(() => seen, 20_000, 'the watch to print the GoingDown');
    stop.abort();
    const r = await watching;
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    await waitFor(() => cluster.settled(), 30_000, 'node 3 to rejoin');
  });

  it('watch --json --since replays as one JSON object per line', async () => {
    const stop = new AbortController();
    let lines: string[] = [];
    const watching = run(['watch', '--json', '--since', '1'], {
      signal: stop.signal,
      onOut: (all) => {
        lines = all.trimEnd().split('\n');
        if (lines.length >= 3) stop.abort();
      },
    });
    const r = await watching;
    expect(r.code).toBe(0);
    const events = lines.slice(0, 3).map((l) => JSON.parse(l) as { type: string; data: { number: number } });
    expect(events.map((e) => [e.type, e.data.number])).toEqual([
      ['transition', 1],
      ['transition', 2],
      ['transition', 3],
    ]);
  });

  it('leave, then status exits 2 once the cluster has lost its quorum', async () => {
    const r = await run(['leave'], { via: 3 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('node 3 left the cluster\n');
    await waitFor(() => cluster.node(1).info(3)?.state === 'Down', 30_000, 'node 3 to be Down');
    // With 3 gone, closing 2 leaves node 1 alone: no quorum.
    await servers.get(2)!.close();
    await cluster.node(2).close();
    await waitFor(() => !cluster.node(1).hasQuorum, 30_000, 'node 1 to lose its quorum');
    const s = await run(['status']);
    expect(s.code).toBe(2);
    expect(s.stdout).toMatch(/unhealthy: .*no quorum/);
    const j = await run(['status', '--json']);
    expect(j.code).toBe(2);
    expect((JSON.parse(j.stdout) as StatusView).health.ok).toBe(false);
  });
});
