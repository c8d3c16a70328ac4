/**
 * tcp-cluster-cli: three nodes over TCP, each its own process, and the
 * `cluster` command looking at them through their admin endpoints.
 *
 * It starts the cluster with the local-cluster launcher (`startLocalCluster`
 * from packages/cli/src/local, the same one `npm run demo` and
 * `npm run cluster -- sim 3` use), waits until every node sees every node
 * Up, and prints each node's admin URL and the token. Then:
 *
 *   npx tsx examples/tcp-cluster-cli.ts           # stays up: run the printed commands in another terminal, Ctrl-C ends it
 *   npx tsx examples/tcp-cluster-cli.ts --check   # runs `cluster status` on every node itself, checks they agree, exits
 *
 * In another terminal, with the URL and token printed:
 *
 *   npm run cluster -- status  --url http://127.0.0.1:PORT --token TOKEN
 *   npm run cluster -- history --url ... --token ...
 *   npm run cluster -- keys    --url ... --token ...
 *   npm run cluster -- watch   --url ... --token ...    # live; try the next one meanwhile
 *   npm run cluster -- leave   --url <another node's URL> --token ...
 *
 * (or `export CLUSTER_URL=... CLUSTER_TOKEN=...` once, then `npm run cluster -- status`).
 */
import { execFile } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startLocalCluster } from '../packages/cli/src/local/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = fileURLToPath(new URL('../packages/cli/src/cli.ts', import.meta.url));

export interface TcpClusterOptions {
  /** Check status through every admin endpoint with the `cluster` command, then stop. @default false: stay up until `signal` aborts */
  check?: boolean;
  signal?: AbortSignal;
  print?: (line: string) => void;
}

export interface NodeStatus {
  node: number;
  exitCode: number;
  master: number | null;
  members: { node: number; state: string }[];
}

/** `cluster status --json` against one node's admin endpoint: the real command, as a user runs it. */
function clusterStatus(url: string, token: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', CLI, 'status', '--json', '--url', url],
      // The token through the environment, not the command line (where `ps` shows it).
      { cwd: ROOT, env: { ...process.env, CLUSTER_TOKEN: token }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ exitCode: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

export async function main(options: TcpClusterOptions = {}): Promise<NodeStatus[]> {
  const print = options.print ?? ((l: string) => console.log(l));
  const cluster = await startLocalCluster({ nodes: 3, keyService: true, ...(options.signal ? { signal: options.signal } : {}) });
  try {
    await cluster.allUp({ timeoutMs: 60_000 });
    // And formed: the `ledger` key service (critical) has a ready host, as each node last said.
    const formed = (k: number): boolean => {
      const e = cluster.events.findLast((x) => x.node === k && x.type === 'formed');
      return e?.type === 'formed' && e.formed;
    };
    await cluster.waitFor(() => cluster.nodes.every((n) => formed(n.node)), { timeoutMs: 60_000, what: 'every node formed' });
    print('Three nodes over TCP on 127.0.0.1, one process each:');
    for (const n of cluster.nodes) print(`  node ${n.node}  pid ${n.pid}  transport ${n.address}  admin ${n.adminUrl ?? '(none)'}`);
    print(`  token ${cluster.token}`);
    const first = cluster.nodes[0]!.adminUrl;
    print(`\nTry:  npm run cluster -- status --url ${first} --token ${cluster.token}`);

    if (!options.check) {
      print('Ctrl-C stops every node.');
      await new Promise<void>((resolve) => {
        if (!options.signal || options.signal.aborted) return resolve();
        options.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      return [];
    }

    // --check: the command's answer from every node, which must agree.
    const statuses: NodeStatus[] = [];
    for (const n of cluster.nodes) {
      if (!n.adminUrl) throw new Error(`node ${n.node} has no admin endpoint`);
      const r = await clusterStatus(n.adminUrl, cluster.token);
      if (r.exitCode !== 0) throw new Error(`cluster status on node ${n.node} exited ${r.exitCode}: ${r.stderr.trim()}`);
      const s = JSON.parse(r.stdout) as { master: number | null; members: { node: number; state: string }[] };
      statuses.push({ node: n.node, exitCode: r.exitCode, master: s.master, members: s.members.map((m) => ({ node: m.node, state: m.state })) });
      print(`cluster status --url ${n.adminUrl}: exit ${r.exitCode}, master ${s.master}, ${s.members.map((m) => `node ${m.node} ${m.state}`).join(', ')}`);
    }
    const masters = new Set(statuses.map((s) => s.master));
    if (masters.size !== 1) throw new Error(`the nodes disagree on the master: ${[...masters].join(', ')}`);
    print(`every node agrees: master is node ${[...masters][0]}, all three Up`);
    return statuses;
  } finally {
    await cluster.close();
    print('every node stopped');
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const abort = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => abort.abort());
  main({ check: process.argv.includes('--check'), signal: abort.signal }).then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(`tcp-cluster-cli: ${(err as Error)?.message ?? String(err)}`);
      process.exit(1);
    },
  );
}
