/**
 * For the suites that run a whole cluster in this one process over
 * transport-tcp on 127.0.0.1 (dlm.ts, services.ts): nodes 1..size with one
 * secret, candidates 1–3, every other node as a seed, preset `local`; not
 * started. And the row every such suite writes.
 */
import { randomBytes } from 'node:crypto';
import { ClusterNode } from '../packages/core/src/index.js';
import { tcp } from '../packages/transport-tcp/src/index.js';
import { freePorts } from '../examples/lib/transports.js';
import type { ResultRow } from './common.js';

export async function tcpNodes(size: number, clusterName: string): Promise<ClusterNode[]> {
  const ports = await freePorts(size);
  const secret = randomBytes(32).toString('hex');
  return ports.map(
    (port, i) =>
      new ClusterNode({
        nodeNum: i + 1,
        clusterName,
        transport: tcp({ host: '127.0.0.1', port, secret }),
        candidates: [1, 2, 3].filter((c) => c <= size),
        seeds: ports.filter((p) => p !== port).map((p) => `127.0.0.1:${p}`),
        preset: 'local',
      }),
  );
}

const round3 = (v: number): number => Math.round(v * 1000) / 1000;

/** A results.json row of `suite`, figures rounded to 3 decimals. */
export function rowOf<S extends string>(suite: S): (name: string, unit: string, better: ResultRow['better'], value: number, baseline: number) => ResultRow<S> {
  return (name, unit, better, value, baseline) => ({ suite, name, unit, better, value: round3(value), baseline: round3(baseline), ratio: round3(value / baseline) });
}
