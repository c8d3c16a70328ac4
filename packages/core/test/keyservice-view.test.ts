/**
 * The key-service view (packages/core/src/keyservice/view.ts) by hand:
 * transitions in, the view and placement's memory out, no node, no clock.
 */
import { describe, expect, it } from 'vitest';
import type { MemberInfo, NodeState, Transition } from '@clusterinfra/core';
import { KeyServiceView, placement } from '../src/keyservice/index.js';

let number = 0;
type Phase = 'assigned' | 'ready' | 'vacant' | 'halted';

function ks(name: string, node: number, epoch: number, phase: Phase, handoverFrom?: number): Transition {
  return {
    number: ++number,
    term: 1,
    time: 0,
    kind: 'keyservice',
    node,
    incarnation: node * 10,
    from: 'Up',
    to: 'Up',
    cause: `${phase} on ${node}`,
    keyService: { name, epoch, phase, ...(handoverFrom !== undefined ? { handoverFrom } : {}) },
  };
}

function state(node: number, to: NodeState, keyServices?: { name: string; critical: boolean }[]): Transition {
  return { number: ++number, term: 1, time: 0, kind: 'state', node, incarnation: node * 10, from: 'Up', to, cause: 'test', ...(keyServices ? { keyServices } : {}) };
}

function member(node: number, state: NodeState, names: string[] = [], critical = false): MemberInfo {
  return { node, state, incarnation: node * 10, address: '', meta: {}, since: 1, keyServices: names.map((name) => ({ name, critical })) };
}

function apply(v: KeyServiceView, t: Transition, now = 0, critical = false): ReturnType<KeyServiceView['applyKeyService']> {
  return v.applyKeyService(t, t.keyService!, now, critical);
}

describe('key-service view', () => {
  it('follows assigned → ready → a newer epoch elsewhere, and reports what was before', () => {
    const v = new KeyServiceView();
    expect(apply(v, ks('a', 1, 1, 'assigned')).before).toBeUndefined();
    expect(v.info('a')).toMatchObject({ host: 1, epoch: 1, ready: false });
    apply(v, ks('a', 1, 1, 'ready'));
    expect(v.info('a')).toMatchObject({ host: 1, epoch: 1, ready: true });
    const change = apply(v, ks('a', 2, 2, 'assigned'));
    expect(change.before).toMatchObject({ host: 1, epoch: 1 });
    expect(change.info).toMatchObject({ host: 2, epoch: 2, ready: false });
    expect(v.hostIncarnationOf('a')).toBe(20);
    expect(v.unchangedSince('a', change.info.since)).toBe(true);
    expect(v.unchangedSince('a', change.info.since - 1)).toBe(false);
  });

  it('a vacancy remembers the host it came from, and placement waits a failure timeout after that host went down', () => {
    const v = new KeyServiceView();
    apply(v, ks('a', 2, 1, 'ready'));
    v.applyState(state(2, 'GoingDown'), 1_000);
    const vacancy = apply(v, ks('a', 1, 1, 'vacant'));
    expect(vacancy.info).toMatchObject({ host: undefined, reason: 'vacant on 1' });
    expect(v.hostIncarnationOf('a')).toBeUndefined();
    const members = [member(1, 'Up'), member(2, 'Down'), member(3, 'Up', ['a'])];
    const at = (now: number) => placement(v.placementInput({ now, members, member: (n) => members.find((m) => m.node === n), fenceWaitMs: 500, failureTimeoutMs: 500, moveEarly: false }));
    expect(at(1_200)).toEqual([{ kind: 'wait', ms: 300 }]);
    expect(at(1_600)).toEqual([
      { kind: 'forget-vacancy', name: 'a' },
      { kind: 'assign', name: 'a', node: 3, since: vacancy.info.since, previousHost: undefined, handoverFrom: undefined },
    ]);
  });

  it('counts a down from when it was first seen, and from now when it never was', () => {
    const v = new KeyServiceView();
    v.applyState(state(4, 'ShuttingDown'), 100);
    v.applyState(state(4, 'GoingDown'), 900);
    expect(v.downWaitLeft(4, 40, 500, 300, 500)).toBe(300);
    expect(v.downWaitLeft(5, 50, 500, 300, 500)).toBe(500);
    expect(v.downWaitLeft(5, 50, 500, 450, 500)).toBe(350);
  });

  it('is formed when every critical key service has a ready host that is Up, and says when that changes', () => {
    const v = new KeyServiceView();
    const members = [member(1, 'Up', ['a'], true), member(2, 'Up')];
    const of = (n: number) => members.find((m) => m.node === n);
    expect(v.updateFormed(members, of)).toBe(false);
    expect(v.formed).toBe(false);
    apply(v, ks('a', 1, 1, 'assigned'), 0, true);
    expect(v.updateFormed(members, of)).toBe(false);
    apply(v, ks('a', 1, 1, 'ready'), 0, true);
    expect(v.updateFormed(members, of)).toBe(true);
    expect(v.formed).toBe(true);
    members[0] = member(1, 'GoingDown', ['a'], true);
    expect(v.updateFormed(members, of)).toBe(true);
    expect(v.formed).toBe(false);
  });

  it('scans the members again only for a transition that may change formed (a key service, an announcer, a host, a new members list)', () => {
    const v = new KeyServiceView();
    const list = [member(1, 'Up', ['a'], true), member(2, 'Up'), member(3, 'Up')];
    let scans = 0;
    const members = new Proxy(list, { get: (target, p, r) => (p === Symbol.iterator && scans++, Reflect.get(target, p, r)) });
    const of = (n: number) => list.find((m) => m.node === n);
    apply(v, ks('a', 1, 1, 'ready'), 0, true);
    expect(v.updateFormed(members, of, ks('a', 1, 1, 'ready'))).toBe(true);
    expect(scans).toBe(1);
    // Node 3 announces nothing and hosts nothing: its transitions change nothing here (a formation of hundreds).
    list[2] = member(3, 'GoingDown');
    expect(v.updateFormed(members, of, state(3, 'GoingDown'))).toBe(false);
    expect(scans).toBe(1);
    // The host of a critical key service going down: scanned, and no longer formed.
    list[0] = member(1, 'GoingDown', ['a'], true);
    expect(v.updateFormed(members, of, state(1, 'GoingDown'))).toBe(true);
    expect([scans, v.formed]).toEqual([2, false]);
    // Another members list (a snapshot installed) is scanned whatever the transition.
    expect(v.updateFormed([...list], of, state(3, 'Down'))).toBe(false);
    expect(scans).toBe(2);
    // So is any list after a reset (here: nothing critical is left, so formed).
    v.reset();
    expect(v.updateFormed(members, of, state(2, 'Up'))).toBe(true);
    expect(scans).toBe(3);
  });

  it('a join announcing no key services (`[]`) is scanned only when an earlier incarnation of the node announced some', () => {
    const v = new KeyServiceView();
    // Node 2 announced critical 'b', which has no host: not formed.
    const list = [member(1, 'Up'), member(2, 'Up', ['b'], true), member(3, 'Up')];
    let scans = 0;
    const members = new Proxy(list, { get: (target, p, r) => (p === Symbol.iterator && scans++, Reflect.get(target, p, r)) });
    const of = (n: number) => list.find((m) => m.node === n);
    expect(v.updateFormed(members, of)).toBe(false);
    expect([scans, v.formed]).toEqual([1, false]);
    // Node 3 joins again announcing nothing, as hundreds of joiners do: no scan.
    list[2] = member(3, 'ComingUp');
    expect(v.updateFormed(members, of, state(3, 'ComingUp', []))).toBe(false);
    expect(scans).toBe(1);
    // Node 2 comes back as a new incarnation announcing nothing: 'b' is no
    // longer announced by anyone, so the cluster is formed (a scan saw it).
    list[1] = member(2, 'ComingUp');
    expect(v.updateFormed(members, of, state(2, 'ComingUp', []))).toBe(true);
    expect([scans, v.formed]).toEqual([2, true]);
    // From then on node 2 announces nothing either: no scan.
    list[1] = member(2, 'Up');
    expect(v.updateFormed(members, of, state(2, 'Up'))).toBe(false);
    expect(scans).toBe(2);
  });

  it('a joiner announcing a key service as critical makes it critical; halted ones are reported', () => {
    const v = new KeyServiceView();
    apply(v, ks('a', 1, 1, 'ready'));
    expect(v.info('a')?.critical).toBe(false);
    v.applyState(state(3, 'ComingUp', [{ name: 'a', critical: true }]), 0);
    expect(v.info('a')?.critical).toBe(true);
    expect(v.halted()).toBeUndefined();
    apply(v, ks('a', 1, 1, 'halted'), 0, true);
    expect(v.halted()).toEqual({ keyService: 'a', reason: 'halted on 1' });
  });

  it('reset forgets the view but keeps each epoch as a floor, so a new history places above it (K2)', () => {
    const v = new KeyServiceView();
    apply(v, ks('a', 1, 7, 'ready'));
    v.reset();
    expect(v.info('a')).toBeUndefined();
    expect(v.all()).toEqual([]);
    expect(v.epochOf('a')).toBe(7);
    expect(v.epochOf('b')).toBe(0);
  });
});
