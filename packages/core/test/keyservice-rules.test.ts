/**
 * The pure decisions of the key-service layer, by hand: routing a call by
 * name (keyservice/route.ts), hosting (keyservice/takeover.ts) and the
 * master's proposals (keyservice/proposals.ts). Their drivers (routing.ts,
 * host.ts, master.ts) do the calls, waits and timers; the scenarios in
 * test/scenarios/keyservices*.test.ts run them together.
 */
import { describe, expect, it } from 'vitest';
import type { KeyServiceInfo, MemberInfo, NodeState } from '@clusterinfra/core';
import { afterFailure, afterWait, changedSince, howToCall, isUnknown, route, type CallFailure } from '../src/keyservice/route.js';
import { applied, askNext, awaitsReady, collectNext, handoverAnswer, mayServe, pullAnswer, stoppedHere, survivors, takeoverSteps, type ActivationFacts } from '../src/keyservice/takeover.js';
import { afterWithdraw, announces, hostChange, moveAsked, moveChange, moveTarget, readyChange, stillCritical, vacancyChange, withdrawChange, withdrawStart } from '../src/keyservice/proposals.js';

function member(node: number, state: NodeState, ks: string[] = [], incarnation = node * 10): MemberInfo {
  return { node, state, incarnation, address: `n${node}`, meta: {}, since: 1, keyServices: ks.map((k) => ({ name: k.replace('!', ''), critical: k.endsWith('!'), subservice: 7, idempotent: ['get'] })) };
}

function info(extra: Partial<KeyServiceInfo> = {}): KeyServiceInfo {
  return { name: 'a', host: 2, epoch: 3, ready: true, critical: false, halted: false, since: 9, ...extra };
}

const failure = (f: Partial<CallFailure>): CallFailure => ({ code: undefined, sent: undefined, notHost: false, otherHistory: undefined, unreachable: false, ...f });
const timing = { idempotent: false, retried: false, now: 1000, deadline: 5000, rpcTimeoutMs: 100 };

describe('routing a call by name (route.ts)', () => {
  it('calls a ready host, fails a halted or unknown key service, waits otherwise', () => {
    const yes = (): boolean => true;
    const no = (): boolean => false;
    expect(route(info(), no)).toEqual({ kind: 'call', info: info() });
    expect(route(info({ host: undefined, ready: false, halted: true, reason: 'gone' }), no)).toEqual({ kind: 'halted', reason: 'gone' });
    expect(route(undefined, yes)).toEqual({ kind: 'unknown' });
    // Known to the view but vacant, and still announced: wait for a host.
    expect(route(info({ host: undefined, ready: false }), no)).toEqual({ kind: 'wait', epoch: 3 });
    // Assigned, not ready yet: wait, even when nobody announces it any more (it has a host).
    expect(route(info({ ready: false }), yes)).toEqual({ kind: 'wait', epoch: 3 });
    expect(route(undefined, no)).toEqual({ kind: 'wait', epoch: -1 });
  });

  it('a name is unknown only to a member, when neither it nor any member registers it', () => {
    const members = [member(1, 'Up', ['a']), member(2, 'Down', ['b'])];
    expect(isUnknown('c', false, true, members)).toBe(true);
    expect(isUnknown('b', false, true, members)).toBe(false);
    expect(isUnknown('c', true, true, members)).toBe(false);
    expect(isUnknown('c', false, false, members)).toBe(false);
  });

  it('takes subservice and idempotent methods from the local registration, else from an announcement', () => {
    expect(howToCall('a', { subservice: 3 }, [])).toEqual({ subservice: 3, idempotent: [] });
    expect(howToCall('a', undefined, [member(1, 'Up', ['a'])])).toEqual({ subservice: 7, idempotent: ['get'] });
    expect(() => howToCall('z', undefined, [member(1, 'Up', ['a'])])).toThrow(/not announced/);
  });

  it('a waiting call looks again on a newer epoch, a ready host (when waited for), a halt, an unknown name, or another history', () => {
    const start = { epoch: 3, history: 'h1', readyIsChange: false };
    const never = (): boolean => false;
    expect(changedSince(start, undefined, 'h2', never)).toBe(false);
    expect(changedSince(start, info({ ready: false }), 'h1', never)).toBe(false);
    expect(changedSince(start, info(), 'h1', never)).toBe(false);
    expect(changedSince({ ...start, readyIsChange: true }, info(), 'h1', never)).toBe(true);
    expect(changedSince(start, info({ epoch: 4, ready: false }), 'h1', never)).toBe(true);
    expect(changedSince(start, info({ ready: false, halted: true }), 'h1', never)).toBe(true);
    expect(changedSince(start, info({ host: undefined, ready: false }), 'h1', () => true)).toBe(true);
    // Another history, at the same epoch: its view names hosts afresh.
    expect(changedSince(start, info({ ready: false }), 'h2', never)).toBe(true);
    expect(changedSince(start, info({ ready: false }), null, never)).toBe(true);
  });

  it('a call that did not run goes to the next host; one that may have run is retried once, if idempotent', () => {
    expect(afterFailure(failure({ code: 'ICS_ERR_INTERNAL' }), timing)).toEqual({ kind: 'throw' });
    expect(afterFailure(failure({ code: 'ICS_ERR_REMOTE', notHost: true }), timing)).toEqual({ kind: 'retry', retried: false, until: 5000, onTimeout: 'throw' });
    expect(afterFailure(failure({ code: 'ICS_ERR_NODE_DOWN', sent: 'never-sent' }), timing)).toEqual({ kind: 'retry', retried: false, until: 5000, onTimeout: 'throw' });
    // May have run: only an idempotent method, only once.
    expect(afterFailure(failure({ code: 'ICS_ERR_NODE_DOWN', sent: 'may-have-run' }), timing)).toEqual({ kind: 'throw' });
    expect(afterFailure(failure({ code: 'ICS_ERR_NODE_DOWN', sent: 'may-have-run' }), { ...timing, idempotent: true })).toEqual({ kind: 'retry', retried: true, until: 5000, onTimeout: 'throw' });
    expect(afterFailure(failure({ code: 'ICS_ERR_UNAVAILABLE' }), { ...timing, idempotent: true, retried: true })).toEqual({ kind: 'throw' });
    // Unreachable before sending: look again after an RPC timeout, not only after a failover.
    expect(afterFailure(failure({ code: 'ICS_ERR_UNAVAILABLE', unreachable: true }), timing)).toEqual({ kind: 'retry', retried: false, until: 1100, onTimeout: 'again' });
    expect(afterFailure(failure({ code: 'ICS_ERR_UNAVAILABLE', unreachable: true }), { ...timing, deadline: 1050 })).toMatchObject({ until: 1050 });
  });

  it('a call refused by a host of another history did not run: it waits for a change, and says why if none comes', () => {
    const refused = afterFailure(failure({ code: 'ICS_ERR_REMOTE', otherHistory: { host: 'h2' } }), timing);
    expect(refused).toEqual({ kind: 'retry', retried: false, until: 5000, onTimeout: 'history' });
    expect(afterWait('history', true, 5000, 5000)).toBe('history');
    // Cancelled meanwhile: the cancellation, not the refusal.
    expect(afterWait('history', false, 2000, 5000)).toBe('rethrow');
    expect(afterWait('again', true, 1100, 5000)).toBe('again');
    expect(afterWait('again', true, 5000, 5000)).toBe('rethrow');
    expect(afterWait('throw', true, 2000, 5000)).toBe('rethrow');
  });
});

describe('hosting (takeover.ts)', () => {
  const me = { node: 2, incarnation: 20 };
  const active = (epoch: number, extra: Partial<ActivationFacts> = {}): ActivationFacts => ({ epoch, ended: false, serving: true, handingOver: false, ...extra });

  it('a newer epoch ends the activation here, or begins its hand-over when this node hands over; an assignment to this incarnation takes over', () => {
    expect(applied(me, active(1), { node: 3, incarnation: 30 }, { name: 'a', epoch: 2, phase: 'assigned' })).toEqual([{ kind: 'deactivate', why: 'a newer epoch began' }]);
    expect(applied(me, active(1), { node: 3, incarnation: 30 }, { name: 'a', epoch: 2, phase: 'assigned', handoverFrom: 2 })).toEqual([{ kind: 'begin-handover' }]);
    expect(applied(me, active(2), { node: 3, incarnation: 30 }, { name: 'a', epoch: 2, phase: 'ready' })).toEqual([]);
    expect(applied(me, undefined, { node: 2, incarnation: 20 }, { name: 'a', epoch: 4, phase: 'assigned', handoverFrom: 5 })).toEqual([{ kind: 'take-over', epoch: 4, handoverFrom: 5 }]);
    // Replayed from a former incarnation: not ours.
    expect(applied(me, undefined, { node: 2, incarnation: 19 }, { name: 'a', epoch: 4, phase: 'assigned' })).toEqual([]);
    // Reassigned to this node at a newer epoch: the old activation ends, a new takeover starts.
    expect(applied(me, active(3), { node: 2, incarnation: 20 }, { name: 'a', epoch: 4, phase: 'assigned' })).toEqual([
      { kind: 'deactivate', why: 'a newer epoch began' },
      { kind: 'take-over', epoch: 4, handoverFrom: undefined },
    ]);
  });

  it('serves only an activation that has not ended, serves, is not handing over, and holds its lease (asked last)', () => {
    let asked = 0;
    const lease = (ok: boolean) => (): boolean => (asked++, ok);
    expect(mayServe(active(1), lease(true))).toBe(true);
    expect(mayServe(active(1), lease(false))).toBe(false);
    expect(mayServe(active(1, { serving: false }), lease(true))).toBe(false);
    expect(mayServe(active(1, { handingOver: true }), lease(true))).toBe(false);
    asked = 0;
    expect(mayServe(active(1, { ended: true }), lease(true))).toBe(false);
    expect(mayServe(undefined, lease(true))).toBe(false);
    expect(asked).toBe(0);
  });

  it('a takeover collects the hand-over first, then failover, pulls every Up node that registered it but the old host, failoverData, ready', () => {
    const members = [member(1, 'Up', ['a']), member(2, 'Up'), member(3, 'ShuttingDown', ['a']), member(4, 'Up', ['b']), member(5, 'Down', ['a'])];
    expect(survivors('a', 2, undefined, members)).toEqual([1, 2]);
    expect(survivors('a', 2, 1, members)).toEqual([2]);
    expect(takeoverSteps(1, true)).toEqual([
      { kind: 'collect-handover', from: 1 },
      { kind: 'failover' },
      { kind: 'pull', run: true, skip: 1 },
      { kind: 'failover-data' },
      { kind: 'ready', reason: 'hand-over from node 1' },
    ]);
    expect(takeoverSteps(undefined, false)).toEqual([
      { kind: 'collect-handover', from: undefined },
      { kind: 'failover' },
      { kind: 'pull', run: false, skip: undefined },
      { kind: 'failover-data' },
      { kind: 'ready', reason: 'failover complete' },
    ]);
  });

  it('collecting a hand-over: ask until the bound, wait for a failing old host to be Down, then its lease out; give up after the bound', () => {
    const t = { rpcTimeoutMs: 100, failureTimeoutMs: 1000 };
    expect(collectNext({ kind: 'again' }, 0, 1000, t)).toEqual({ kind: 'call', timeoutMs: 1000 });
    expect(collectNext({ kind: 'call-failed', fromState: 'Up' }, 300, 1000, t)).toEqual({ kind: 'retry-after', ms: 100 });
    expect(collectNext({ kind: 'call-failed', fromState: 'GoingDown' }, 300, 1000, t)).toEqual({ kind: 'await-down', ms: 700 });
    expect(collectNext({ kind: 'call-failed', fromState: 'Down' }, 1200, 1000, t)).toEqual({ kind: 'await-down', ms: 0 });
    expect(collectNext({ kind: 'awaited-down', fromState: 'Down' }, 600, 1000, t)).toEqual({ kind: 'down' });
    // Not Down yet: ask again while the bound lasts.
    expect(collectNext({ kind: 'awaited-down', fromState: 'ShuttingDown' }, 600, 1000, t)).toEqual({ kind: 'call', timeoutMs: 400 });
    expect(collectNext({ kind: 'again' }, 1000, 1000, t)).toEqual({ kind: 'give-up', ms: 1000 });
  });

  it('asks the master: itself when it is the master, over the network otherwise, nobody while there is none, until the bound', () => {
    const same = { asked: 'h1', current: 'h1' };
    expect(askNext(2, 2, 0, 10, same)).toEqual({ kind: 'self' });
    expect(askNext(2, 1, 0, 10, same)).toEqual({ kind: 'call', master: 1 });
    expect(askNext(2, undefined, 0, 10, same)).toEqual({ kind: 'no-master' });
    expect(askNext(2, 1, 10, 10, same)).toEqual({ kind: 'give-up' });
  });

  it('gives a request up once this node follows another history than the one it was made in (seed 11644)', () => {
    // Node 2 asked "place ks.b again, I stopped it at epoch 1" in history h1,
    // was evicted (no history), then joined h2 and runs ks.b at epoch 1 there:
    // the request must not reach h2's master, itself or over the network.
    expect(askNext(2, 3, 0, 10, { asked: 'h1', current: null })).toEqual({ kind: 'give-up' });
    expect(askNext(2, 3, 0, 10, { asked: 'h1', current: 'h2' })).toEqual({ kind: 'give-up' });
    expect(askNext(2, 2, 0, 10, { asked: 'h1', current: 'h2' })).toEqual({ kind: 'give-up' });
    // Asked before any history: one founded or joined since is another.
    expect(askNext(2, 2, 0, 10, { asked: null, current: 'h2' })).toEqual({ kind: 'give-up' });
    expect(askNext(2, undefined, 0, 10, { asked: null, current: null })).toEqual({ kind: 'no-master' });
  });

  it('answers a pull only for the current epoch, and a hand-over only to the host the history names, once the hand-over began here', () => {
    expect(pullAnswer(false, info(), 3)).toBe('nothing');
    expect(pullAnswer(true, info({ epoch: 4 }), 3)).toBe('stale');
    expect(pullAnswer(true, info(), 3)).toBe('serve');
    expect(pullAnswer(true, undefined, 1)).toBe('serve');
    const going = active(2, { handingOver: true });
    expect(handoverAnswer(undefined, info(), 3, 2)).toBe('nothing');
    expect(handoverAnswer(active(3), info(), 3, 2)).toBe('nothing');
    expect(handoverAnswer(active(2), info(), 3, 2)).toBe('not-seen');
    expect(handoverAnswer(going, info(), 3, 4)).toBe('not-seen');
    expect(handoverAnswer(going, info({ epoch: 4 }), 3, 2)).toBe('not-seen');
    expect(handoverAnswer(going, info(), 3, 2)).toBe('serve');
  });

  it('owes a ready report while the history has it assigned here, not ready, and it runs that epoch', () => {
    expect(awaitsReady(info({ ready: false }), 2, 3, 3)).toBe(true);
    expect(awaitsReady(info(), 2, 3, 3)).toBe(false);
    expect(awaitsReady(info({ ready: false }), 2, 3, undefined)).toBe(false);
    expect(awaitsReady(info({ ready: false, host: 1 }), 2, 3, 3)).toBe(false);
  });

  it('asks for a new placement of what it is the recorded host of (as this incarnation) but no longer runs', () => {
    expect(stoppedHere(info(), 20, me, false, false)).toBe(true);
    expect(stoppedHere(info(), 19, me, false, false)).toBe(false);
    expect(stoppedHere(info(), 20, me, true, false)).toBe(false);
    expect(stoppedHere(info(), 20, me, false, true)).toBe(false);
    expect(stoppedHere(info({ halted: true }), 20, me, false, false)).toBe(false);
    expect(stoppedHere(info({ host: 1 }), 20, me, false, false)).toBe(false);
  });
});

describe('the master’s proposals (proposals.ts)', () => {
  it('a vacancy is the master’s own change, halted when critical', () => {
    expect(vacancyChange(1, member(1, 'ShuttingDown'), 'a', true, 4)).toEqual({
      kind: 'keyservice', node: 1, incarnation: 10, from: 'ShuttingDown', to: 'ShuttingDown',
      cause: 'no eligible node left for critical key service a', keyService: { name: 'a', epoch: 4, phase: 'halted' },
    });
    expect(vacancyChange(1, undefined, 'a', false, 4)).toMatchObject({ incarnation: 0, from: 'Up', cause: 'no eligible node for a', keyService: { phase: 'vacant' } });
  });

  it('an assignment goes to an Up target at the next epoch; a hand-over only while the old host is still leaving', () => {
    const a = { name: 'a', node: 3, previousHost: 2, handoverFrom: undefined };
    expect(hostChange(a, member(3, 'Up'), undefined, 4)).toMatchObject({ node: 3, incarnation: 30, cause: 'failover from node 2', keyService: { name: 'a', epoch: 5, phase: 'assigned' } });
    expect(hostChange({ ...a, previousHost: undefined }, member(3, 'Up'), undefined, 0)).toMatchObject({ cause: 'placed', keyService: { epoch: 1 } });
    expect(hostChange(a, member(3, 'ComingUp'), undefined, 4)).toBeUndefined();
    expect(hostChange(a, undefined, undefined, 4)).toBeUndefined();
    const h = { ...a, handoverFrom: 2 };
    expect(hostChange(h, member(3, 'Up'), 'ShuttingDown', 4)).toMatchObject({ cause: 'hand-over from node 2', keyService: { handoverFrom: 2 } });
    // The leaver failed meanwhile: a failover after its Down instead (K4).
    expect(hostChange(h, member(3, 'Up'), 'GoingDown', 4)).toBeUndefined();
  });

  it('a move is taken only from the host incarnation the history names, at its epoch, while it and the target are Up', () => {
    const p = { name: 'a', epoch: 3, handover: true };
    expect(moveAsked(info(), 20, p, 2, 20)).toBe(true);
    expect(moveAsked(info(), 20, p, 2, 21)).toBe(false);
    expect(moveAsked(info(), 20, { ...p, epoch: 2 }, 2, 20)).toBe(false);
    expect(moveAsked(undefined, 20, p, 2, 20)).toBe(false);
    expect(moveChange(p, 2, 'Up', 3, member(3, 'Up'), 3)).toMatchObject({ node: 3, cause: 'hand-over from node 2', keyService: { epoch: 4, handoverFrom: 2 } });
    expect(moveChange({ ...p, handover: false }, 2, 'Up', 3, member(3, 'Up'), 3)).toMatchObject({ cause: 'placed again (node 2 had stopped it)', keyService: { epoch: 4 } });
    expect(moveChange({ ...p, handover: false }, 2, 'Up', 3, member(3, 'Up'), 3)!.keyService).not.toHaveProperty('handoverFrom');
    expect(moveChange(p, 2, 'GoingDown', 3, member(3, 'Up'), 3)).toBeUndefined();
    expect(moveChange(p, 2, 'Up', 3, member(3, 'ShuttingDown'), 3)).toBeUndefined();
  });

  it('a move goes to the node that registers it first, not the leaver on a hand-over; none when not asked by the host', () => {
    const p = { name: 'a', epoch: 3, handover: true };
    const members = [member(1, 'Up', ['b', 'a']), member(2, 'Up', ['a']), member(3, 'Up', ['a'])];
    expect(moveTarget(info(), 20, p, 2, 20, members)).toBe(3);
    // Placed again (it stopped): it may get it back itself.
    expect(moveTarget(info(), 20, { ...p, handover: false }, 2, 20, members)).toBe(2);
    expect(moveTarget(info(), 20, p, 2, 21, members)).toBeUndefined();
    expect(moveTarget(info(), 20, p, 2, 20, [member(2, 'Up', ['a'])])).toBeUndefined();
  });

  it('a withdrawal of the recorded host places the name elsewhere, or nowhere; another incarnation asking is refused', () => {
    const m = member(2, 'Up', ['a']);
    expect(withdrawStart(m, 'a', 20)).toBe('drop');
    expect(withdrawStart(m, 'b', 20)).toBe('dropped');
    expect(withdrawStart(m, 'a', 21)).toBe('refuse');
    expect(withdrawStart(undefined, 'a', 20)).toBe('refuse');
    expect(afterWithdraw(info(), 20, 'a', 2, 20, [member(2, 'Up'), member(4, 'Up', ['a'])])).toEqual({ kind: 'assign', name: 'a', node: 4, since: 9, previousHost: 2, handoverFrom: undefined });
    expect(afterWithdraw(info(), 20, 'a', 2, 20, [member(2, 'Up'), member(5, 'Down', ['a!'])])).toEqual({ kind: 'vacate', name: 'a', critical: true, since: 9 });
    // Not its host (any more), or another incarnation: nothing to place.
    expect(afterWithdraw(info({ host: 3 }), 20, 'a', 2, 20, [member(4, 'Up', ['a'])])).toBeUndefined();
    expect(afterWithdraw(info(), 19, 'a', 2, 20, [member(4, 'Up', ['a'])])).toBeUndefined();
  });

  it('a withdrawal drops the name from what that incarnation announced, while it does', () => {
    const m = member(2, 'Up', ['a', 'b!']);
    expect(announces(m, 'a', 20)).toBe(true);
    expect(announces(m, 'a', 21)).toBe(false);
    expect(announces(member(2, 'ShuttingDown', ['a']), 'a', 20)).toBe(false);
    expect(withdrawChange(2, m, 'a', 20)).toEqual({ kind: 'meta', node: 2, incarnation: 20, from: 'Up', to: 'Up', cause: 'key service a unregistered', keyServices: [m.keyServices[1]] });
    expect(withdrawChange(2, m, 'c', 20)).toBeUndefined();
    expect(stillCritical('b', [member(1, 'Up'), member(5, 'Down', ['b!'])])).toBe(true);
    expect(stillCritical('a', [m])).toBe(false);
  });

  it('a ready report is committed for its epoch and host, once, while the host is Up', () => {
    const assigned = info({ ready: false });
    expect(readyChange(assigned, 'a', 3, 2, member(2, 'Up'))).toEqual({ kind: 'keyservice', node: 2, incarnation: 20, from: 'Up', to: 'Up', cause: 'failover complete', keyService: { name: 'a', epoch: 3, phase: 'ready' } });
    expect(readyChange(info(), 'a', 3, 2, member(2, 'Up'))).toBeUndefined();
    expect(readyChange(assigned, 'a', 2, 2, member(2, 'Up'))).toBeUndefined();
    expect(readyChange(assigned, 'a', 3, 1, member(1, 'Up'))).toBeUndefined();
    expect(readyChange(assigned, 'a', 3, 2, member(2, 'GoingDown'))).toBeUndefined();
  });
});
