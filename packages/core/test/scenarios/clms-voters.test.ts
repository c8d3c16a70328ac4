/**
 * The `voters` option (docs/membership.md, "Voters"): with `'candidates'`
 * only the Up candidates vote and acknowledge. Memory network, virtual
 * clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ClusterNode, type VoterRule } from '@clusterinfra/core';
import { createMemoryNetwork, memory } from '@clusterinfra/transport-mem';
import { range, type SimCluster, simCluster } from './clms-harness.js';

let cluster: SimCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const allUp = (c: SimCluster, nodes: number[]): boolean => nodes.every((n) => nodes.every((m) => c.node(n).info(m)?.state === 'Up'));

/** Eight nodes, candidates 1, 2, 3, formed. */
async function formed(voters: VoterRule): Promise<SimCluster> {
  const c = simCluster(8, { candidates: [1, 2, 3], extra: () => ({ voters }) });
  await c.until(() => allUp(c, range(8)) && c.converged(range(8)), 30_000, 'formation');
  return c;
}

describe('voters', () => {
  it("'candidates': the cluster forms, and takes a non-candidate's crash and rejoin like the default", async () => {
    cluster = await formed('candidates');
    const c = cluster;
    c.kill(7);
    await c.until(() => c.node(1).info(7)?.state === 'Down', 10_000, 'node 7 down');
    c.start(7);
    await c.until(() => allUp(c, range(8)) && c.converged(range(8)), 10_000, 'node 7 back');
  });

  it("'candidates': with two of the three candidates gone the rest decide nothing, however many members are up; every member voting, they go on", async () => {
    const after = async (voters: VoterRule): Promise<{ downCommitted: boolean; quorum: boolean }> => {
      const c = await formed(voters);
      cluster = c;
      const master = c.node(4).master!;
      const others = [1, 2, 3].filter((n) => n !== master);
      // The master and one other candidate crash together: five members and one candidate remain.
      c.kill(master);
      c.kill(others[0]!);
      await c.clock.advance(10_000);
      const survivor = others[1]!;
      const left = [survivor, 4, 5, 6, 7, 8];
      const downCommitted = left.every((n) => c.node(n).info(master)?.state === 'Down' || c.node(n).info(master)?.state === 'GoingDown');
      const quorum = c.node(survivor).hasQuorum;
      await c.close();
      cluster = undefined;
      return { downCommitted, quorum };
    };
    expect(await after('candidates')).toEqual({ downCommitted: false, quorum: false });
    expect(await after('members')).toEqual({ downCommitted: true, quorum: true });
  });

  it("'candidates': the members that vote on nothing cost two frames a transition in a crash and rejoin (they hear each once committed), not up to five", async () => {
    const perTransition = async (voters: VoterRule): Promise<{ frames: number; transitions: number }> => {
      const n = 12;
      const c = simCluster(n, { candidates: [1, 2, 3], extra: () => ({ voters }) });
      cluster = c;
      await c.until(() => allUp(c, range(n)) && c.converged(range(n)), 30_000, 'formation');
      await c.clock.advance(1_000);
      const ever = new Set(c.nodes.values());
      const frames = (): number => [...ever].reduce((a, node) => a + node.communication.stats().messagesSent, 0);
      const f0 = frames();
      const h0 = c.node(1).lastTransition;
      c.kill(n);
      await c.until(() => range(n - 1).every((m) => c.node(m).info(n)?.state === 'Down'), 10_000, `node ${n} down`);
      ever.add(c.start(n));
      await c.until(() => allUp(c, range(n)) && c.converged(range(n)), 10_000, `node ${n} back`);
      const result = { frames: frames() - f0, transitions: c.node(1).lastTransition - h0 };
      await c.close();
      cluster = undefined;
      return result;
    };
    const learners = await perTransition('candidates');
    const members = await perTransition('members');
    expect(learners.transitions).toBe(members.transitions);
    expect(learners.transitions).toBeGreaterThanOrEqual(4);
    // Per cycle (GoingDown, Down, ComingUp, Up) each of the 8 other members that vote on
    // nothing costs 2 frames a transition instead of 5 for the two with a barrier and 3 for
    // the others: 8 frames less each. Heartbeats and the rejoin's own frames are the same
    // either way, so the difference is the learners' alone; at least 6 each.
    expect(members.frames - learners.frames).toBeGreaterThanOrEqual(6 * 8);
  });

  it('an unknown rule is refused by validation, with the option named', () => {
    cluster = undefined;
    const make = (): ClusterNode => new ClusterNode({ nodeNum: 1, clusterName: 'x', transport: memory({ network: createMemoryNetwork(), address: 'n1' }), candidates: [1], voters: 'everyone' as VoterRule });
    expect(make).toThrow(expect.objectContaining({ code: 'CONFIG_ERR_INVALID_OPTION', path: 'voters' }));
  });
});
