/**
 * npm run sim -- --seeds N [--seed S] [--nodes K] [--profile ci|full|huge] [--workload dlm|registry] [--canary NAME] [--history-limit N] [--voters members|candidates] [--json] [--stop]
 * npm run sim -- --check-hashes [--seeds N] [--workers W] | --record-hashes [--workers W]
 *
 * Runs seeds S, S+1, … S+N-1 (S defaults to 1; --seed S alone runs that one
 * seed and prints its trace). Prints every failing seed with the command that
 * replays it and the last events before the violation, then a summary.
 * Exit code 1 when any seed failed. --workload runs a service (the lock
 * manager, the registry) on every node with its own invariants; --canary
 * then also takes that package's canaries.
 *
 * --check-hashes runs the seeds recorded in trace-hashes.json (W child
 * processes at once, default: one per core; --seeds N: only the first N)
 * and prints every seed whose trace hash changed; exit code 1 when one did
 * (see hashes.ts).
 */
import { parseArgs } from 'node:util';
import { getHeapStatistics } from 'node:v8';
import type { CanaryName } from '@clusterinfra/core/testing';
import { hashCommand } from './hashes.js';
import { runSeeds } from './run.js';
import { HUGE_HEAP_LIMIT_MIB, type Profile, PROFILES, type SimResult } from './sim.js';
import { isWorkloadName, type WorkloadCanary, WORKLOADS } from './workloads/index.js';

const OPTIONS = {
  seeds: { type: 'string' },
  seed: { type: 'string' },
  nodes: { type: 'string', default: '5' },
  profile: { type: 'string', default: 'full' },
  canary: { type: 'string' },
  workload: { type: 'string' },
  json: { type: 'boolean', default: false },
  stop: { type: 'boolean', default: false },
  verbose: { type: 'boolean', short: 'v', default: false },
  'check-hashes': { type: 'boolean', default: false },
  'record-hashes': { type: 'boolean', default: false },
  workers: { type: 'string' },
  'history-limit': { type: 'string' },
  voters: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

const USAGE = [
  `usage: npm run sim -- --seeds N [--seed S] [--nodes K] [--profile ci|full|huge] [--workload ${WORKLOADS.join('|')}] [--canary NAME] [--history-limit N] [--voters members|candidates] [--workers W] [--json] [--stop] [--verbose]`,
  '       npm run sim -- --seed S [--nodes K] ...          one seed, its trace and violations',
  '       npm run sim -- --check-hashes [--seeds N] [--workers W] | --record-hashes [--workers W]',
].join('\n');

const parsed = (() => {
  try {
    return parseArgs({ options: OPTIONS });
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
})();
if (parsed.values.help) {
  console.log(USAGE);
  process.exit(0);
}
const { values } = parsed;



if (values['check-hashes'] || values['record-hashes']) {
  const workers = values.workers !== undefined ? Number(values.workers) : undefined;
  const limit = values.seeds !== undefined ? Number(values.seeds) : undefined;
  const bad = (x: number | undefined): boolean => x !== undefined && (!Number.isInteger(x) || x < 1);
  if (bad(workers) || bad(limit) || (limit !== undefined && values['record-hashes'])) {
    console.error(USAGE);
    process.exit(2);
  }
  process.exit(await hashCommand(values['record-hashes'] ? 'record' : 'check', { ...(workers !== undefined ? { workers } : {}), ...(limit !== undefined ? { limit } : {}) }));
}

const nodes = Number(values.nodes);
const from = values.seed !== undefined ? Number(values.seed) : 1;
const count = values.seeds !== undefined ? Number(values.seeds) : values.seed !== undefined ? 1 : 100;
const single = values.seed !== undefined && values.seeds === undefined;
const profile = values.profile as Profile;
const workload = values.workload;
const historyLimit = values['history-limit'] !== undefined ? Number(values['history-limit']) : undefined;
const voters = values.voters;
if ((voters !== undefined && voters !== 'members' && voters !== 'candidates') || (historyLimit !== undefined && (!Number.isInteger(historyLimit) || historyLimit < 16)) || !Number.isInteger(nodes) || nodes < 1 || !Number.isInteger(from) || !Number.isInteger(count) || count < 1 || !PROFILES.includes(profile) || (workload !== undefined && !isWorkloadName(workload))) {
  console.error(USAGE);
  process.exit(2);
}

// The huge profile's bound (2 GiB resident) assumes V8's old space is capped:
// uncapped, V8 lets its heap grow to several times the live data between
// collections (4 GiB allowed on this machine) and the bound measures that
// slack, not the cluster.
if (profile === 'huge' && getHeapStatistics().heap_size_limit > HUGE_HEAP_LIMIT_MIB * 1.1 * 2 ** 20) {
  console.error(`note: the huge profile's 2 GiB bound is measured with NODE_OPTIONS=--max-old-space-size=${HUGE_HEAP_LIMIT_MIB} (this run's heap limit is ${Math.round(getHeapStatistics().heap_size_limit / 2 ** 20)} MiB)`);
}

function printFailure(r: SimResult): void {
  console.log(`\nFAIL seed ${r.seed}: ${r.violation!.invariant} at ${r.violation!.at} ms: ${r.violation!.detail}`);
  console.log(`  replay: ${r.replay}`);
  console.log(`  trace hash ${r.traceHash}`);
  console.log('  last events:');
  for (const l of r.tail.slice(-25)) console.log(`    ${l}`);
}

let done = 0;
const summary = await runSeeds({
  from,
  count,
  nodes,
  profile,
  ...(values.canary ? { canary: values.canary as CanaryName | WorkloadCanary } : {}),
  ...(workload !== undefined && isWorkloadName(workload) ? { workload } : {}),
  ...(historyLimit !== undefined ? { historyLimit } : {}),
  ...(voters === 'members' || voters === 'candidates' ? { voters } : {}),
  stopOnFailure: values.stop,
  onResult: (r) => {
    done++;
    if (values.json) console.log(JSON.stringify({ seed: r.seed, ok: r.ok, violation: r.violation, traceHash: r.traceHash, simMs: r.simMs, realMs: Math.round(r.realMs), events: r.events, ...(r.milestones.length > 0 ? { milestones: r.milestones } : {}) }));
    else if (single || values.verbose) {
      console.log(`seed ${r.seed}: ${r.ok ? 'ok' : 'FAIL'}  trace hash ${r.traceHash}  sim ${r.simMs} ms in ${Math.round(r.realMs)} ms, ${r.committed} transitions, ${r.calls} calls, ${r.generations} histories${r.workloadStats ? `, ${r.workload} ${JSON.stringify(r.workloadStats)}` : ''}`);
      for (const m of r.milestones) console.log(`  ${m.what} at ${Math.round(m.simMs)} ms simulated, ${(m.realMs / 1000).toFixed(1)} s real; ${m.links} links open, rss ${m.rssMiB} MiB, heap ${m.heapMiB} MiB`);
      if (single && r.ok) for (const l of r.tail) console.log(`    ${l}`);
    }
    if (!r.ok && !values.json) printFailure(r);
    if (!values.json && !single && !values.verbose && done % 100 === 0) console.error(`… ${done} seeds`);
  },
});

const line = {
  seeds: summary.seeds,
  nodes,
  profile,
  ...(workload !== undefined ? { workload } : {}),
  ...(historyLimit !== undefined ? { historyLimit } : {}),
  ...(voters !== undefined ? { voters } : {}),
  violations: summary.failed.length,
  failedSeeds: summary.failed.map((r) => ({ seed: r.seed, invariant: r.violation!.invariant })),
  realSeconds: +(summary.realMs / 1000).toFixed(1),
  seedsPerSec: +summary.seedsPerSec.toFixed(2),
  simToReal: +summary.ratio.toFixed(1),
  simToCpu: +summary.cpuRatio.toFixed(1),
  eventsPerSec: Math.round(summary.eventsPerSec),
  /** Peak resident set of this process (the huge profile's memory bound). */
  peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
};
console.log(values.json ? JSON.stringify(line) : `\nsummary: ${JSON.stringify(line, null, 1).replace(/\n\s*/g, ' ')}`);
process.exit(summary.failed.length > 0 ? 1 : 0);
