/**
 * `cluster sim <n>`: a local cluster of OS-process nodes (the launcher in
 * ./local), each with an admin endpoint the other commands can talk to.
 *
 * Without --keep it is a smoke check: start, wait until every node sees
 * every node Up, print the nodes and stop them (exit 0; 1 if it did not
 * form). With --keep it runs until Ctrl-C, printing the merged timeline,
 * then stops every process.
 */
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
      await cluster.waitFor((e) => e.type === 'nodeup' && countNodeups(cluster.events, o.nodes), { timeoutMs: o.formTimeoutMs ?? 60_000, what: 'every node to see every node up' }).catch(() => {
        throw new Error(`the cluster did not form within ${o.formTimeoutMs ?? 60_000} ms`);
      });
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

/** Every node reported nodeup for every node (a node counts itself through its own nodeup). */
function countNodeups(events: readonly { type: string; node: number; of?: number }[], n: number): boolean {
  const seen = new Set<string>();
  for (const e of events) if (e.type === 'nodeup' && e.of !== undefined) seen.add(`${e.node}:${e.of}`);
  return seen.size >= n * n;
}
