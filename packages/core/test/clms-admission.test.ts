/** The master's admission decisions (clms/protocol/admission.ts): who may join, answered or queued, duplicates and incarnations, the waiter cap. */
import { describe, expect, it } from 'vitest';
import { comingUp, hookVerdict, JoinQueue, MAX_JOIN_WAITERS, placeJoin, queued, screenJoin, waitedJoin } from '../src/clms/protocol/admission.js';

const join = { incarnation: 7, address: '10.0.0.4:7000', meta: { zone: 'a' }, keyServices: [] };
const screen = (over: Partial<Parameters<typeof screenJoin>[0]> = {}) =>
  screenJoin({ isMaster: true, node: 4, linkIncarnation: 7, join, allow: undefined, retryAfterMs: 50, ...over });
const place = (over: Partial<Parameters<typeof placeJoin>[0]> = {}) =>
  placeJoin({ node: 4, incarnation: 7, held: undefined, occupied: 3, maxNodes: 16, retryAfterMs: 50, ...over });

describe('screenJoin', () => {
  it('passes a join from the link it names, at a master, with no allow-lists', () => {
    expect(screen()).toEqual({ type: 'pass' });
  });

  it('a node that is not the master answers so, with a retry time, and records nothing', () => {
    expect(screen({ isMaster: false })).toEqual({ type: 'answer', answer: { ok: false, reason: 'not the master', retryAfterMs: 50 } });
  });

  it('a join that names another incarnation than its link is answered, not recorded', () => {
    expect(screen({ linkIncarnation: 6 })).toEqual({ type: 'answer', answer: { ok: false, reason: 'incarnation does not match the link' } });
  });

  it('the allow-lists refuse (recorded) a node or an address they do not name', () => {
    expect(screen({ allow: { nodes: [1, 2, 3] } })).toEqual({ type: 'refuse', reason: 'node 4 is not on the allow-list' });
    expect(screen({ allow: { addresses: ['10.0.0.5:7000'] } })).toEqual({ type: 'refuse', reason: 'address 10.0.0.4:7000 is not on the allow-list' });
    expect(screen({ allow: { nodes: [4], addresses: ['10.0.0.4:7000'] } })).toEqual({ type: 'pass' });
  });
});

describe('hookVerdict', () => {
  it('only `true` admits; a string is the reason; anything else is the policy saying no', () => {
    expect(hookVerdict(true)).toEqual({ type: 'pass' });
    expect(hookVerdict('zone full')).toEqual({ type: 'refuse', reason: 'zone full' });
    expect(hookVerdict(false)).toEqual({ type: 'refuse', reason: 'refused by the admission policy' });
  });
});

describe('placeJoin', () => {
  it('an unknown node, or one whose former incarnation is Down, goes on to be proposed', () => {
    expect(place()).toEqual({ type: 'pass' });
    expect(place({ held: { node: 4, incarnation: 5, state: 'Down' } })).toEqual({ type: 'pass' });
    expect(place({ held: { node: 4, incarnation: 5, state: 'NeverUp' } })).toEqual({ type: 'pass' });
  });

  it('the same incarnation already ComingUp or Up is a member: answered with the history (a duplicate join)', () => {
    expect(place({ held: { node: 4, incarnation: 7, state: 'ComingUp' } })).toEqual({ type: 'member' });
    expect(place({ held: { node: 4, incarnation: 7, state: 'Up' } })).toEqual({ type: 'member' });
  });

  it('the same incarnation on its way down or out must start again as a new one (M8)', () => {
    for (const state of ['GoingDown', 'ShuttingDown', 'Down'] as const) {
      expect(place({ held: { node: 4, incarnation: 7, state } }), state).toEqual({
        type: 'answer',
        answer: { ok: false, reason: `incarnation 7 of node 4 is ${state}: start again as a new incarnation`, evicted: true },
      });
    }
  });

  it('a former incarnation still Up or ComingUp is retired, and the joiner waits for its cleanup (C1)', () => {
    expect(place({ held: { node: 4, incarnation: 5, state: 'Up' } })).toEqual({
      type: 'retire',
      node: 4,
      incarnation: 5,
      answer: { ok: false, reason: "node 4's former incarnation is Up: waiting for its cleanup", retryAfterMs: 50 },
    });
    expect(place({ held: { node: 4, incarnation: 5, state: 'ComingUp' } }).type).toBe('retire');
  });

  it('a former incarnation on its way down keeps the joiner waiting, and is not retired twice', () => {
    for (const state of ['GoingDown', 'ShuttingDown'] as const) {
      expect(place({ held: { node: 4, incarnation: 5, state } }), state).toEqual({
        type: 'answer',
        answer: { ok: false, reason: `node 4's former incarnation is ${state}: waiting for its cleanup`, retryAfterMs: 50 },
      });
    }
  });

  it('a full cluster refuses (recorded), after the checks that let a member in again', () => {
    expect(place({ occupied: 16 })).toEqual({ type: 'refuse', reason: 'the cluster has maxNodes members' });
    expect(place({ occupied: 15 })).toEqual({ type: 'pass' });
    expect(place({ occupied: 16, held: { node: 4, incarnation: 7, state: 'Up' } })).toEqual({ type: 'member' });
  });
});

describe('comingUp', () => {
  it('builds the ComingUp of the joining incarnation from NeverUp or Down, and nothing once another came first', () => {
    expect(comingUp('NeverUp', 4, join)).toEqual({ kind: 'state', node: 4, incarnation: 7, from: 'NeverUp', to: 'ComingUp', cause: 'joined', address: join.address, meta: join.meta, keyServices: [] });
    expect(comingUp('Down', 4, join)?.from).toBe('Down');
    for (const state of ['ComingUp', 'Up', 'GoingDown', 'ShuttingDown'] as const) expect(comingUp(state, 4, join), state).toBeUndefined();
  });
});

describe('waitedJoin and queued', () => {
  it('a committed join is a member; a failed one says so; one that waited too long is queued', () => {
    expect(waitedJoin('committed', 50)).toBe('member');
    expect(waitedJoin('failed', 50)).toEqual({ ok: false, reason: 'could not commit the join', retryAfterMs: 50 });
    expect(waitedJoin('timed-out', 50)).toEqual(queued(50));
    expect(queued(50)).toEqual({ ok: false, reason: 'the join is queued', queued: true, retryAfterMs: 50 });
  });
});

describe('JoinQueue', () => {
  it('one proposal per joining incarnation: asked again, the same; a new incarnation replaces it', () => {
    const q = new JoinQueue<string>();
    expect(q.underWay(4, 7)).toBeUndefined();
    const settled7 = q.begin(4, 7, 'p7');
    expect(q.underWay(4, 7)).toBe('p7');
    expect(q.isJoining(4, 7)).toBe(true);
    expect(q.underWay(4, 8)).toBeUndefined();
    expect(q.isJoining(4, 8)).toBe(false);
    const settled8 = q.begin(4, 8, 'p8');
    // The former proposal settling does not remove the newer one.
    settled7();
    expect(q.underWay(4, 8)).toBe('p8');
    settled8();
    expect(q.underWay(4, 8)).toBeUndefined();
    expect(q.isJoining(4, 8)).toBe(false);
  });

  it(`at most ${MAX_JOIN_WAITERS} handlers wait at once; a slot frees when one ends`, () => {
    const q = new JoinQueue<string>();
    for (let i = 0; i < MAX_JOIN_WAITERS; i++) expect(q.mayWait()).toBe(true);
    expect(q.mayWait()).toBe(false);
    q.waitEnded();
    expect(q.mayWait()).toBe(true);
    expect(q.mayWait()).toBe(false);
    expect(new JoinQueue<string>(1).mayWait()).toBe(true);
  });
});
