/**
 * `cluster sim <n>`: a local cluster of OS-process nodes (the launcher in
 * ./local), each with an admin endpoint the other commands can talk to.
 *
 * Without --keep it is a smoke check: start, wait until every node sees
 * every node Up, print the nodes and stop them (exit 0; 1 if it did not
 * form). With --keep it runs until Ctrl-C, printing the merged timeline,
 * then stops every process.
 */
import { AdminClient } from './client.js';
import type { Style } from './format.js';

export interface SimOptions {
  nodes: number;
  keep: boolean;
  basePort: number | undefined;
  preset: 'local' | 'lan';
  keyService: boolean;
  json: boolean;
  /** The admin token (at least 16 characters); random when absent. */
  token: string | undefined;
  /** How long the cluster may take to form without --keep. @default 60000 */
  formTimeoutMs?: number;
}

export interface SimIo {
  out(s: string): void;
  style: Style;
  signal: AbortSignal | undefined;
}

export async function runSim(o: SimOptions, io: SimIo): Promise<number> {
  // Loaded only here: the launcher forks processes and is not needed by the other commands.
  const { startLocalCluster, formatEvent } = await import('./local/index.js');
  if (o.nodes > 32) throw new Error('a local cluster has at most 32 nodes');
  let following = false;
  const cluster = await startLocalCluster({
    nodes: o.nodes,
    ...(o.basePort === undefined ? {} : { basePort: o.basePort }),
    preset: o.preset,
    keyService: o.keyService,
    ...(o.token === undefined ? {} : { adminToken: o.token }),
    ...(io.signal ? { signal: io.signal } : {}),
    onEvent: (e) => {
      if (!following || o.json) return;
      const line = formatEvent(e);
      if (line) io.out(io.style.dim(line));
    },
  });
  try {
    const nodes = cluster.nodes.map((n) => ({ node: n.node, pid: n.pid, address: n.address, adminUrl: n.adminUrl ?? null }));
    if (o.json) io.out(JSON.stringify({ token: cluster.token, nodes }, null, 2));
    else {
      io.out(`${o.nodes} node${o.nodes === 1 ? '' : 's'} on 127.0.0.1:`);
      for (const n of nodes) io.out(`  node ${n.node}  pid ${n.pid}  ${n.address}  admin ${n.adminUrl ?? io.style.red('none')}`);
      const first = nodes.find((n) => n.adminUrl);
      if (first) io.out(`\nexport CLUSTER_URL=${first.adminUrl} CLUSTER_TOKEN=${cluster.token}\n`);
    }
    if (!o.keep) {
      await formed(nodes, cluster.token, o.nodes, o.formTimeoutMs ?? 60_000, io.signal);
      if (!o.json) io.out(io.style.green('formed: every node sees every node Up; stopping (use --keep to keep it running)'));
      return 0;
    }
    following = true;
    if (!o.json) io.out(io.style.dim('following the timeline; Ctrl-C stops every node'));
    await new Promise<void>((resolve) => {
      if (!io.signal || io.signal.aborted) return resolve();
      io.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    return 0;
  } finally {
    await cluster.close();
  }
}

/** Poll every node's admin endpoint until each one reports all `n` members Up and a healthy cluster. */
async function formed(nodes: { adminUrl: string | null }[], token: string, n: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
  const clients = nodes.map((x) => (x.adminUrl ? new AdminClient({ url: x.adminUrl, token, timeoutMs: 5_000 }) : undefined));
  if (clients.some((c) => c === undefined)) throw new Error('a node has no admin endpoint');
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (signal?.aborted) throw new Error('interrupted before the cluster formed');
    try {
      const views = await Promise.all(clients.map((c) => c!.status()));
      const bad = views.find((v) => !v.health.ok || v.members.length !== n || v.members.some((m) => m.state !== 'Up'));
      if (!bad) return;
      last = `node ${bad.node}: ${bad.health.problems.join('; ') || bad.members.map((m) => `${m.node} ${m.state}`).join(', ')}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the cluster did not form within ${timeoutMs} ms (${last})`);
}
