/**
 * large-cluster: who votes, and what it costs a large cluster to form.
 *
 * By default every Up member votes and acknowledges (`voters: 'members'`):
 * the cluster keeps deciding while any majority of its members is up, but
 * each node's Up changes the voters, so the Ups of a join storm go one
 * append round each. With `voters: 'candidates'` only the Up candidates
 * vote: the other members' Ups go several to a round. That pays at a few
 * hundred nodes (256 in one process: 73 k frames instead of 169 k, about
 * half the time; bench/results.json); at 64 the two are close, and below
 * that the difference is noise. The price shows at the end: with two of the
 * three candidates gone, the candidates' cluster decides nothing, however
 * many members are still up; the members' cluster carries on.
 *
 * Every node runs in this process (the in-memory network unless `--tcp`):
 *
 *   npx tsx examples/large-cluster.ts            # 64 nodes, memory network
 *   npx tsx examples/large-cluster.ts 128        # more nodes
 *   npx tsx examples/large-cluster.ts --tcp      # over TCP on 127.0.0.1
 */
import { pathToFileURL } from 'node:url';
import { ClusterNode, type VoterRule } from '@clusterinfra/core';
import { exampleNetwork, type TransportKind } from './lib/transports.js';
import { until } from './lib/wait.js';

export interface Formation {
  voters: VoterRule;
  /** Start of the first node to every node seeing all of them Up. */
  ms: number;
  /** ICS frames every node sent meanwhile. */
  frames: number;
  /** After two of the three candidates crashed: did the survivors commit the master's GoingDown? */
  decidedAfterLosingTwoCandidates: boolean;
}

async function formAndBreak(voters: VoterRule, size: number, kind: TransportKind, say: (line: string) => void): Promise<Formation> {
  const net = await exampleNetwork(kind, size);
  const candidates = [1, 2, 3];
  const nodes = Array.from(
    { length: size },
    (_, i) =>
      new ClusterNode({
        nodeNum: i + 1,
        clusterName: `large-${voters}`,
        transport: net.transport(i + 1),
        candidates,
        seeds: candidates.filter((c) => c !== i + 1).map((c) => net.address(c)),
        voters,
        // The lan timers: one process runs every node, and its event loop is busy while they form.
        preset: 'lan',
      }),
  );
  try {
    const t0 = performance.now();
    for (const n of nodes) void n.start().catch(() => {});
    const allUp = (): boolean => nodes.every((n) => n.membership().members.length === size && n.membership().members.every((m) => m.state === 'Up'));
    await until(allUp, `${size} nodes Up (voters: '${voters}')`, 120_000, 25);
    const ms = performance.now() - t0;
    const frames = nodes.reduce((a, n) => a + n.communication.stats().messagesSent, 0);
    say(`voters: '${voters}': ${size} nodes formed in ${Math.round(ms)} ms, ${frames} frames sent`);

    // The master and one more candidate go: close() without leave(), which the others see as a crash (their links end).
    const master = nodes[0]!.master!;
    const other = candidates.find((c) => c !== master)!;
    await Promise.all([nodes[master - 1]!.close(), nodes[other - 1]!.close()]);
    const left = nodes.filter((n) => n.nodeNum !== master && n.nodeNum !== other);
    const downEverywhere = (): boolean => left.every((n) => ['GoingDown', 'Down'].includes(n.info(master)?.state ?? ''));
    // Every member voting, the rest decide as soon as they can (waited for up to 30 s);
    // with the candidates voting they never can, which 3 s of watching shows.
    let decided = true;
    try {
      await until(downEverywhere, `node ${master}'s GoingDown everywhere`, voters === 'members' ? 30_000 : 3_000, 25);
    } catch {
      decided = false;
    }
    say(`  candidates ${master} and ${other} gone, ${left.length} nodes left: ${decided ? 'the rest elected a master and committed the GoingDown' : 'nothing decided (a quorum of the candidates is gone)'}`);
    return { voters, ms, frames, decidedAfterLosingTwoCandidates: decided };
  } finally {
    await Promise.all(nodes.map((n) => n.close().catch(() => {})));
  }
}

export async function main(size = 64, kind: TransportKind = 'memory', say: (line: string) => void = console.log): Promise<Formation[]> {
  const out: Formation[] = [];
  for (const voters of ['members', 'candidates'] as const) out.push(await formAndBreak(voters, size, kind, say));
  return out;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const size = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 64);
  main(size, process.argv.includes('--tcp') ? 'tcp' : 'memory').then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
