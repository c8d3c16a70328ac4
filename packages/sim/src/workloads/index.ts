/**
 * Service workloads: packages built on core (the lock manager, the
 * registry) running on every simulated node through the simulator's hooks,
 * with invariants of their own checked after every step and reported as
 * violations like the simulator's (`npm run sim -- --workload dlm`).
 * Each lists the test-only canaries of its package that its invariants
 * must catch (test/workloads.test.ts).
 */
import type { SimHooks } from '../sim.js';
import { DLM_CANARIES, DLM_KILL_HOLDER_CANARIES, dlmWorkload, type DlmWorkloadCanary } from './dlm.js';
import { REGISTRY_CANARIES, registryWorkload, type RegistryWorkloadCanary } from './registry.js';

export const WORKLOADS = ['dlm', 'registry', 'dlm-kill-holder'] as const;
export type WorkloadName = (typeof WORKLOADS)[number];
export type WorkloadCanary = DlmWorkloadCanary | RegistryWorkloadCanary;

export interface Workload {
  readonly name: WorkloadName;
  /** The canaries its invariants catch. */
  readonly canaries: readonly WorkloadCanary[];
  readonly hooks: SimHooks;
  /** Turn a canary of this workload's package on or off (test-only). */
  plant(canary: WorkloadCanary, on: boolean): void;
  /** Counters of what it did (operations, grants, writes), for the summary. */
  stats(): Record<string, number>;
  /** Stop what still runs (after the simulator shut down). */
  close(): Promise<void>;
}

export const WORKLOAD_CANARIES: Record<WorkloadName, readonly WorkloadCanary[]> = { dlm: DLM_CANARIES, registry: REGISTRY_CANARIES, 'dlm-kill-holder': DLM_KILL_HOLDER_CANARIES };

export function createWorkload(name: WorkloadName): Workload {
  switch (name) {
    case 'dlm':
    case 'dlm-kill-holder':
      return dlmWorkload(name);
    case 'registry':
      return registryWorkload();
  }
}

export function isWorkloadName(x: unknown): x is WorkloadName {
  return (WORKLOADS as readonly unknown[]).includes(x);
}
