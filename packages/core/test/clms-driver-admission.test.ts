/**
 * The master's join handler (clms/driver/admission.ts) over a fake port: no
 * ClusterNode, no network, a virtual clock. What the driver does with each
 * decision of protocol/admission.ts: records refusals, retires a former
 * incarnation, proposes once per joining incarnation, waits (bounded) and
 * answers `queued` past the cap or the wait.
 */
import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../src/clock/index.js';
import { type AdmissionPort, Admissions } from '../src/clms/driver/admission.js';
import { MAX_JOIN_WAITERS } from '../src/clms/protocol/admission.js';
import type { Build, Core } from '../src/clms/protocol/core.js';
import { silentLogger } from '../src/logging/index.js';
import type { DecisionRecord, MemberInfo, NodeState, Transition } from '../src/clms/types.js';

interface Proposal {
  build: Build;
  node: number | undefined;
  settle(t: Transition | undefined): void;
  fail(err: Error): void;
}

function setup(over: { isMaster?: boolean; members?: MemberInfo[]; allow?: AdmissionPort['opts']['allow']; admit?: AdmissionPort['opts']['admit']; maxNodes?: number } = {}) {
  const clock = new VirtualClock();
  const members = new Map((over.members ?? []).map((m) => [m.node, m]));
  const snapshot = { id: 'h1', number: 3, term: 2, members: [], tail: [] };
  const core = {
    isMaster: over.isMaster ?? true,
    term: 2,
    history: {
      member: (n: number) => members.get(n),
      stateOf: (n: number): NodeState => members.get(n)?.state ?? 'NeverUp',
      nodesIn: (...states: NodeState[]) => [...members.values()].filter((m) => states.includes(m.state)).map((m) => m.node),
      snapshot: () => snapshot,
    },
  } as unknown as Core;
  const records: DecisionRecord[] = [];
  const steps: unknown[] = [];
  const proposals: Proposal[] = [];
  const port: AdmissionPort = {
    nodeNum: 1,
    core,
    clock,
    log: silentLogger,
    timing: { joinRetryMs: 50, rpcTimeoutMs: 100 },
    opts: { allow: over.allow, admit: over.admit, maxNodes: over.maxNodes ?? 16 },
    ics: () => {
      throw new Error('not used by join');
    },
    step: (input) => void steps.push(input),
    propose: (build, node) => new Promise((settle, fail) => proposals.push({ build, node, settle, fail })),
    record: (r) => void records.push(r),
    leaving: () => undefined,
    evicted: async () => {},
    close: async () => {},
  };
  return { admissions: new Admissions(port), clock, records, steps, proposals, snapshot, members };
}

const caller = (nodeNum: number, incarnation: number) => ({ nodeNum, incarnation }) as Parameters<Admissions['join']>[1];
const request = (incarnation: number) => ({ incarnation, address: `10.0.0.4:${incarnation}`, meta: {}, keyServices: [] });
const tick = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

describe('Admissions.join (driver)', () => {
  it('a node that is not the master answers so and proposes nothing, records nothing', async () => {
    const s = setup({ isMaster: false });
    expect(await s.admissions.join(request(7), caller(4, 7))).toEqual({ ok: false, reason: 'not the master', retryAfterMs: 50 });
    expect(s.proposals).toHaveLength(0);
    expect(s.records).toHaveLength(0);
  });

  it('a refusal by the allow-list or the admit hook is recorded, with the reason', async () => {
    const s = setup({ allow: { nodes: [2, 3] } });
    expect(await s.admissions.join(request(7), caller(4, 7))).toEqual({ ok: false, reason: 'node 4 is not on the allow-list' });
    const h = setup({ admit: async ({ node }) => (node === 4 ? 'rack 4 is being serviced' : true) });
    expect(await h.admissions.join(request(7), caller(4, 7))).toEqual({ ok: false, reason: 'rack 4 is being serviced' });
    for (const x of [s, h]) {
      expect(x.records).toHaveLength(1);
      expect(x.records[0]).toMatchObject({ kind: 'refused-join', node: 4, term: 2 });
      expect(x.proposals).toHaveLength(0);
    }
  });

  it('a former incarnation still Up is taken down, and the newcomer told to wait for its cleanup', async () => {
    const s = setup({ members: [{ node: 4, state: 'Up', incarnation: 5, since: 2 } as MemberInfo] });
    const r = await s.admissions.join(request(7), caller(4, 7));
    expect(r).toEqual({ ok: false, reason: "node 4's former incarnation is Up: waiting for its cleanup", retryAfterMs: 50 });
    expect(s.steps).toEqual([{ type: 'down', node: 4, incarnation: 5, reason: 'restarted as a new incarnation', observers: { master: 'saw a new incarnation join' } }]);
    expect(s.proposals).toHaveLength(0);
  });

  it('one proposal per joining incarnation; both askers get the history once it commits, and the joiner may fetch meanwhile', async () => {
    const s = setup();
    const a = s.admissions.join(request(7), caller(4, 7));
    const b = s.admissions.join(request(7), caller(4, 7));
    await tick();
    expect(s.proposals).toHaveLength(1);
    expect(s.proposals[0]!.node).toBe(4);
    expect(s.proposals[0]!.build()).toMatchObject({ node: 4, incarnation: 7, from: 'NeverUp', to: 'ComingUp', cause: 'joined' });
    expect(s.admissions.isJoining(4, 7)).toBe(true);
    expect(s.admissions.isJoining(4, 8)).toBe(false);
    s.proposals[0]!.settle({ number: 4 } as Transition);
    expect(await a).toEqual({ ok: true, snapshot: s.snapshot });
    expect(await b).toEqual({ ok: true, snapshot: s.snapshot });
    await tick();
    expect(s.admissions.isJoining(4, 7)).toBe(false);
  });

  it('a proposal that fails or is dropped answers "could not commit the join"', async () => {
    const s = setup();
    const a = s.admissions.join(request(7), caller(4, 7));
    await tick();
    s.proposals[0]!.fail(new Error('no quorum'));
    expect(await a).toEqual({ ok: false, reason: 'could not commit the join', retryAfterMs: 50 });
  });

  it(`at most ${MAX_JOIN_WAITERS} handlers wait; the next is queued at once, and a wait longer than two RPC timeouts is queued too`, async () => {
    const s = setup({ maxNodes: 1000 });
    const waiting = Array.from({ length: MAX_JOIN_WAITERS }, (_, i) => s.admissions.join(request(7), caller(100 + i, 7)));
    await tick();
    expect(s.proposals).toHaveLength(MAX_JOIN_WAITERS);
    expect(await s.admissions.join(request(7), caller(99, 7))).toEqual({ ok: false, reason: 'the join is queued', queued: true, retryAfterMs: 50 });
    // The over-the-cap join was proposed all the same: it waits in the master's queue.
    expect(s.proposals).toHaveLength(MAX_JOIN_WAITERS + 1);
    await s.clock.advance(200);
    for (const r of await Promise.all(waiting)) expect(r).toEqual({ ok: false, reason: 'the join is queued', queued: true, retryAfterMs: 50 });
    // The slots are free again: the joiner that asks again waits on its same proposal, which commits.
    const again = s.admissions.join(request(7), caller(99, 7));
    await tick();
    expect(s.proposals).toHaveLength(MAX_JOIN_WAITERS + 1);
    s.proposals.at(-1)!.settle({ number: 9 } as Transition);
    expect(await again).toEqual({ ok: true, snapshot: s.snapshot });
  });
});
