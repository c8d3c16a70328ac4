export { runSeed, replayCommand, World, type Profile, type SimHooks, type SimOptions, type SimResult } from './sim.js';
export { Checker, type InvariantId, type Violation } from './checker.js';
export { NodeClock, SimClock } from './clock.js';
export { runSeeds, type Summary } from './run.js';
export { compareHashes, readHashFile, traceHashes, type HashChange, type HashFile, type HashRun } from './hashes.js';
export { createWorkload, isWorkloadName, WORKLOAD_CANARIES, WORKLOADS, type Workload, type WorkloadCanary, type WorkloadName } from './workloads/index.js';
