/**
 * A checker that never fails proves nothing: each canary plants a known bug
 * (src/canaries.ts) and the workload or scenario that should catch it must
 * fail with it, then pass again without it.
 */
import { afterEach, expect, it } from 'vitest';
import { registryCanaries } from '../src/canaries.js';
import { staleReplicaRebuild, workload } from './workload.js';

afterEach(() => {
  registryCanaries.ackBeforeReplicated = false;
  registryCanaries.applyOutOfOrder = false;
  registryCanaries.stalestRebuild = false;
});

/** The first seed of 1–6 whose workload fails, and how. */
async function firstFailure(): Promise<string | undefined> {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const err = await workload(seed).then(
      () => undefined,
      (e: unknown) => String(e),
    );
    if (err !== undefined) return `seed ${seed}: ${err.split('\n')[0]}`;
  }
  return undefined;
}

it('applyOutOfOrder (a replica applies a change across a gap) is caught by RG2 or RG5', async () => {
  registryCanaries.applyOutOfOrder = true;
  expect(await firstFailure()).toMatch(/RG[245]/);
}, 600_000);

it('ackBeforeReplicated (the sequencer acknowledges before the replicas applied) is caught by RG5', async () => {
  registryCanaries.ackBeforeReplicated = true;
  expect(await firstFailure()).toMatch(/RG5/);
}, 600_000);

it('stalestRebuild (the new sequencer takes the stalest replica) is caught by the stale-replica scenario, which passes without it', async () => {
  registryCanaries.stalestRebuild = true;
  await expect(staleReplicaRebuild()).rejects.toThrow();
  registryCanaries.stalestRebuild = false;
  await staleReplicaRebuild();
}, 120_000);
