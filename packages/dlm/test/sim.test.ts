/**
 * The lock manager as a workload of the deterministic simulator
 * (packages/sim): real ClusterNodes on the memory network under the
 * simulator's seeded faults (crashes, restarts, pauses, partitions, loss,
 * duplication, latency), with a Dlm on every node and two workers per node
 * locking, writing value blocks and unlocking while the faults run.
 *
 * Under partitions and pauses a cut-off holder may still believe it holds
 * a lock the cluster gave to another: that is what fencing tokens are for,
 * and a paused master that wakes may still grant in its old round, with a
 * token below the newer round's (a fencing store refuses it). So the checks
 * here are the ones that hold regardless (invariants.ts): no token is
 * granted twice within one cluster history, valid value blocks never go back in token order, a
 * departed lock is dropped at most once; and the simulator's own
 * invariants (membership, cleanup barrier, RPC, quiescence) must still pass
 * with the DLM's subsystem and traffic in the cluster.
 */
import type { ClusterNode } from '@clusterinfra/core';
import { runSeed, type World } from '@clusterinfra/sim';
import { expect, it } from 'vitest';
import { createDlm, type Dlm, isDlmError, LOCK_MODES } from '../src/index.js';
import { Invariants } from './invariants.js';

const RESOURCES = ['a', 'b', 'c'];

async function dlmSeed(seed: number, nodes: number): Promise<{ violation: string | undefined; grants: number; failures: unknown[]; replay: string }> {
  const check = new Invariants();
  const failures: unknown[] = [];
  const guard = (f: () => void): void => {
    try {
      f();
    } catch (err) {
      failures.push(err);
    }
  };
  const dlms = new Map<ClusterNode, Dlm>();
  const worker = async (world: World, node: ClusterNode, dlm: Dlm, k: number): Promise<void> => {
    const clock = world.slot(node.nodeNum).clock!;
    const rng = (world as unknown as { rng: { fork(l: string): { int(n: number): number } } }).rng.fork(`dlm/${node.nodeNum}/${node.incarnation}/${k}`);
    const healing = (): boolean => (world as unknown as { healing: boolean }).healing;
    while (!healing() && world.slot(node.nodeNum).node === node) {
      try {
        const lock = await dlm.lock(RESOURCES[rng.int(RESOURCES.length)]!, LOCK_MODES[rng.int(LOCK_MODES.length)]!, { timeoutMs: 200 + rng.int(3_000) });
        await sleepOn(clock, rng.int(200));
        if (lock.mode !== null) await lock.unlock(lock.mode === 'PW' || lock.mode === 'EX' ? { value: new Uint8Array([node.nodeNum, rng.int(256)]) } : {});
      } catch (err) {
        if (!isDlmError(err)) failures.push(err);
      }
      await sleepOn(clock, 50 + rng.int(300));
    }
  };
  const r = await runSeed({
    seed,
    nodes,
    profile: 'ci',
    hooks: {
      nodeStarted(node, world) {
        const dlm = createDlm({ node, clock: world.slot(node.nodeNum).clock!, deadlockTimeoutMs: 5_000 });
        dlms.set(node, dlm);
        // Tokens are ordered within one cluster history: a cluster that re-forms from nothing
        // (every node gone) numbers its transitions, and so its rounds, from 1 again.
        const history = (): string => {
          const t1 = node.transition(1);
          return t1 ? `${t1.time}/${t1.node}` : `joined-late/${node.nodeNum}/${node.incarnation}`;
        };
        dlm.on('granted', (e) => guard(() => check.granted({ resource: `${history()}/${e.resource}`, mode: e.mode, token: e.token, vb: e.value }, false)));
        // Whether the node is really dead or a cut-off zombie, the cluster dropped it: at most once.
        dlm.on('departed', (e) => guard(() => check.departedLock(e.node, e.incarnation, e.id, true)));
        for (let k = 0; k < 2; k++) void worker(world, node, dlm, k);
      },
    },
  });
  for (const d of dlms.values()) await d.close();
  return { violation: r.violation ? `${r.violation.invariant}: ${r.violation.detail}` : undefined, grants: check.issued.size, failures, replay: r.replay };
}

function sleepOn(clock: { setTimeout(fn: () => void, ms: number): unknown }, ms: number): Promise<void> {
  return new Promise((resolve) => void clock.setTimeout(resolve, ms));
}

it('simulator seeds with a DLM workload: the DLM invariants and the simulator’s hold', async () => {
  const seeds = Number(process.env.DLM_SIM_SEEDS ?? 8);
  let grants = 0;
  for (let seed = 1; seed <= seeds; seed++) {
    const r = await dlmSeed(seed, 3);
    expect(r.failures.map(String), `seed ${seed} (${r.replay})`).toEqual([]);
    expect(r.violation, `seed ${seed} (${r.replay})`).toBeUndefined();
    grants += r.grants;
  }
  expect(grants).toBeGreaterThan(seeds * 20);
}, 300_000);
