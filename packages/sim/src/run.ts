/** Run a range of seeds and summarise: violations, seeds/s, simulated-to-real ratio, events/s. */
import type { VoterRule } from '@clusterinfra/core';
import type { CanaryName } from '@clusterinfra/core/testing';
import { type Profile, runSeed, type SimResult } from './sim.js';
import type { WorkloadCanary, WorkloadName } from './workloads/index.js';

export interface Summary {
  seeds: number;
  failed: SimResult[];
  realMs: number;
  /** CPU time of this process over the run (user + system, ms): on a shared machine it moves far less than real time. */
  cpuMs: number;
  simMs: number;
  events: number;
  seedsPerSec: number;
  ratio: number;
  /** Simulated ms per CPU ms. */
  cpuRatio: number;
  eventsPerSec: number;
}

export async function runSeeds(options: {
  from: number;
  count: number;
  nodes: number;
  profile?: Profile;
  canary?: CanaryName | WorkloadCanary;
  /** A service workload on every node (workloads/). */
  workload?: WorkloadName;
  /** Every node's historyLimit (SimOptions.historyLimit). */
  historyLimit?: number;
  /** Every node's voters rule (SimOptions.voters). */
  voters?: VoterRule;
  /** Stop at the first failing seed. */
  stopOnFailure?: boolean;
  onResult?: (r: SimResult) => void;
}): Promise<Summary> {
  const failed: SimResult[] = [];
  let simMs = 0;
  let events = 0;
  let seeds = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (let seed = options.from; seed < options.from + options.count; seed++) {
    const r = await runSeed({ seed, nodes: options.nodes, ...(options.profile ? { profile: options.profile } : {}), ...(options.canary ? { canary: options.canary } : {}), ...(options.workload ? { workload: options.workload } : {}), ...(options.historyLimit !== undefined ? { historyLimit: options.historyLimit } : {}), ...(options.voters ? { voters: options.voters } : {}) });
    seeds++;
    simMs += r.simMs;
    events += r.events;
    options.onResult?.(r);
    if (!r.ok) {
      failed.push(r);
      if (options.stopOnFailure) break;
    }
  }
  const realMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  return { seeds, failed, realMs, cpuMs, simMs, events, seedsPerSec: seeds / (realMs / 1000), ratio: simMs / realMs, cpuRatio: simMs / cpuMs, eventsPerSec: events / (realMs / 1000) };
}
