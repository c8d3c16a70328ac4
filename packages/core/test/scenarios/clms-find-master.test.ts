/**
 * Finding the master (driver/seeds.ts, docs/membership.md "Joining"): a
 * joining node asks a few addresses first, the candidates it knows of
 * before others, and every other address only when those few name no
 * master, in the same round. Memory network, virtual clock.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type AdmissionRequest, ClusterNode, Ics, presets, seededRandom, silentLogger } from '@clusterinfra/core';
import { memory } from '@clusterinfra/transport-mem';
import { FIRST_WAVE } from '../../src/clms/driver/seeds.js';
import { range, type SimCluster, simCluster } from './clms-harness.js';

let cluster: SimCluster | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await cluster?.close();
  cluster = undefined;
});

/** Count the `whoIsMaster` calls node `nodeNum` makes from now on, by the node asked. */
function countProbes(nodeNum: number): Map<number, number> {
  const asked = new Map<number, number>();
  const call = Ics.prototype.call;
  vi.spyOn(Ics.prototype, 'call').mockImplementation(function (this: Ics, target, service, method, ...rest) {
    if (method === 'whoIsMaster' && this.nodeNum === nodeNum) asked.set(target, (asked.get(target) ?? 0) + 1);
    return call.call(this, target, service, method, ...rest);
  });
  return asked;
}

const up = (node: ClusterNode): boolean => node.info(node.nodeNum)?.state === 'Up';

/** Start node `n` (not a candidate) joining `c` with `seeds`, on the cluster's clock. */
function startJoiner(c: SimCluster, n: number, seeds: string[], seed: string): ClusterNode {
  const joiner = new ClusterNode({
    nodeNum: n,
    clusterName: 'sim',
    transport: memory({ network: c.network, address: `node-${n}` }),
    candidates: [1, 2, 3],
    seeds,
    preset: 'local',
    clock: c.clock,
    random: seededRandom(seed),
    logger: silentLogger,
  });
  void joiner.start().catch(() => {});
  return joiner;
}

/** Close `node`, moving the virtual clock while it leaves. */
async function close(c: SimCluster, node: ClusterNode): Promise<void> {
  let done = false;
  const closing = node.close().then(() => (done = true));
  await c.until(() => done, 30_000, `node ${node.nodeNum} closed`);
  await closing;
}

describe('finding the master', () => {
  it(`a node joining a formed cluster of 12 that lists every node as a seed asks ${FIRST_WAVE} of them, not 12`, async () => {
    cluster = simCluster(12);
    await cluster.until(() => cluster!.converged(range(12)) && range(12).every((n) => up(cluster!.node(n))), 30_000, 'formation');
    const asked = countProbes(13);
    const joiner = startJoiner(cluster, 13, range(12).map((n) => `node-${n}`), 'find-master/13');
    await cluster.until(() => up(joiner), 10_000, 'the join');
    const total = [...asked.values()].reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(0);
    expect(total).toBeLessThanOrEqual(FIRST_WAVE);
    await close(cluster, joiner);
  });

  it('after a master that did not take the join, the next round asks every address at once', async () => {
    // Every master refuses node 13's first join (the admit hook), then admits it.
    let refusals = 0;
    const admit = (r: AdmissionRequest): boolean | string => (r.node === 13 && refusals++ === 0 ? 'not yet' : true);
    cluster = simCluster(12, { extra: () => ({ admit }) });
    await cluster.until(() => cluster!.converged(range(12)) && range(12).every((n) => up(cluster!.node(n))), 30_000, 'formation');
    const rounds: number[] = [];
    const asked = countProbes(13);
    const joiner = startJoiner(cluster, 13, range(12).map((n) => `node-${n}`), 'find-master/13-wide');
    let seen = 0;
    await cluster.until(
      () => {
        const total = [...asked.values()].reduce((a, b) => a + b, 0);
        if (total !== seen) {
          rounds.push(total - seen);
          seen = total;
        }
        return up(joiner);
      },
      10_000,
      'the join after a refusal',
    );
    expect(refusals).toBeGreaterThanOrEqual(2);
    // The first round asks a few; the round after the refusal asks all twelve.
    expect(rounds[0]).toBeLessThanOrEqual(FIRST_WAVE);
    expect([...asked.keys()].sort((a, b) => a - b)).toEqual(range(12));
    await close(cluster, joiner);
  });

  it('when the first few name no master, the same round asks the rest: one live seed among many dead ones is found at once', async () => {
    cluster = simCluster(3);
    await cluster.until(() => cluster!.converged(range(3)) && range(3).every((n) => up(cluster!.node(n))), 30_000, 'formation');
    // Nine seeds nothing listens at, and node-2: whatever the order, the first wave may hold only dead ones.
    const dead = range(9).map((i) => `nobody-${i}`);
    for (const rotation of range(4)) {
      vi.restoreAllMocks();
      const n = 20 + rotation;
      const asked = countProbes(n);
      const began = cluster.clock.now();
      const joiner = startJoiner(cluster, n, [...dead.slice(0, rotation * 2), 'node-2', ...dead.slice(rotation * 2)], `find-master/${n}`);
      await cluster.until(() => up(joiner), 10_000, `the join of node ${n}`);
      // One round: found before the first retry was due.
      expect(cluster.clock.now() - began).toBeLessThan(presets.local.joinRetryMs);
      expect([...asked.keys()]).toEqual([2]);
      await close(cluster, joiner);
    }
  });
});
