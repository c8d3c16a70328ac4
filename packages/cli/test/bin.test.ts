/**
 * The `cluster` bin as a real process (exit codes, Ctrl-C ends `watch` with
 * 0), and `cluster sim`, which starts OS-process nodes through the
 * local-cluster launcher and must leave none behind.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AdminServer, serveAdmin } from '@clusterinfra/admin';
import { runCli } from '@clusterinfra/cli';
import { startCluster, type TestCluster, TOKEN } from '../../admin/test/cluster.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = 'packages/cli/src/cli.ts';

interface Proc {
  code: Promise<number | null>;
  out: () => string;
  err: () => string;
  kill(signal: NodeJS.Signals): void;
}

function bin(args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', BIN, ...args], { cwd: ROOT, env: { ...process.env, NO_COLOR: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
  // A ceiling, not a measurement: every run here ends by itself long before.
  const ceiling = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const code = new Promise<number | null>((resolve) =>
    child.on('exit', (c) => {
      clearTimeout(ceiling);
      resolve(c);
    }),
  );
  return { code, out: () => out, err: () => err, kill: (s) => child.kill(s) };
}

async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the bin', () => {
  let cluster: TestCluster;
  let admin: AdminServer;
  beforeAll(async () => {
    cluster = await startCluster(3);
    admin = await serveAdmin(cluster.node(1), { token: TOKEN });
  }, 60_000);
  afterAll(async () => {
    await admin?.close();
    await cluster?.close();
  });

  it('exits 0 on a healthy status and 1 with one line on a refused token', async () => {
    const ok = bin(['status'], { CLUSTER_URL: admin.url, CLUSTER_TOKEN: TOKEN });
    expect(await ok.code).toBe(0);
    expect(ok.out()).toContain('healthy');
    const refused = bin(['status'], { CLUSTER_URL: admin.url, CLUSTER_TOKEN: 'wrong-token-0123456789' });
    expect(await refused.code).toBe(1);
    expect(refused.err().trimEnd().split('\n')).toEqual([expect.stringMatching(/^cluster: ADMIN_ERR_UNAUTHORIZED/)]);
    expect(refused.out()).toBe('');
  }, 120_000);

  it('watch runs until SIGINT, then exits 0', async () => {
    const w = bin(['watch', '--since', '1'], { CLUSTER_URL: admin.url, CLUSTER_TOKEN: TOKEN });
    await until(() => w.out().includes('#1  node'), 60_000, 'the replayed history');
    w.kill('SIGINT');
    expect(await w.code).toBe(0);
    expect(w.err()).toBe('');
  }, 120_000);
});

describe('cluster sim', () => {
  it('starts N node processes with admin endpoints, waits until formed, and stops them all', async () => {
    let out = '';
    let err = '';
    const code = await runCli(['sim', '2', '--json'], { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) }, env: {} });
    expect(err).toBe('');
    expect(code).toBe(0);
    const started = JSON.parse(out) as { token: string; nodes: { node: number; pid: number; address: string; adminUrl: string | null }[] };
    expect(started.token.length).toBeGreaterThanOrEqual(16);
    expect(started.nodes.map((n) => n.node)).toEqual([1, 2]);
    for (const n of started.nodes) {
      expect(n.address).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(n.adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      // Gone: signal 0 only checks that the pid exists.
      expect(() => process.kill(n.pid, 0)).toThrow();
    }
  }, 180_000);
});
