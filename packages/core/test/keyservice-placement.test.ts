/**
 * Key-service placement (packages/core/src/keyservice/placement.ts) as the
 * pure function it is: a view, members and a time in, steps out. Each rule
 * of docs/key-services.md, by hand.
 */
import { describe, expect, it } from 'vitest';
import type { KeyServiceInfo, MemberInfo, NodeState } from '@clusterinfra/core';
import { eligibleHost, hostStateOf, placement, type PlacementInput } from '../src/keyservice/index.js';

/** Node n, incarnation n*10, announcing `ks` in that order (critical when the name ends with '!'). */
function member(node: number, state: NodeState, ks: string[] = [], incarnation = node * 10): MemberInfo {
  return { node, state, incarnation, address: `n${node}`, meta: {}, since: 1, keyServices: ks.map((k) => ({ name: k.replace('!', ''), critical: k.endsWith('!') })) };
}

function hosted(name: string, host: number | undefined, extra: Partial<KeyServiceInfo> = {}): KeyServiceInfo {
  return { name, host, epoch: 1, ready: host !== undefined, critical: false, halted: false, since: 5, ...extra };
}

function input(members: MemberInfo[], view: KeyServiceInfo[], more: Partial<PlacementInput> = {}): PlacementInput {
  const byNode = new Map(members.map((m) => [m.node, m]));
  return {
    now: 10_000,
    members,
    member: (n) => byNode.get(n),
    view: new Map(view.map((v) => [v.name, v])),
    hostIncarnation: new Map(view.filter((v) => v.host !== undefined).map((v) => [v.name, v.host! * 10])),
    handoverSource: new Map(),
    vacatedFrom: new Map(),
    downSince: new Map(),
    fenceWaitMs: 1000,
    failureTimeoutMs: 1000,
    moveEarly: false,
    ...more,
  };
}

describe('key-service placement', () => {
  it('places each announced key service on the Up node that listed it earliest, then the lowest number', () => {
    const members = [member(1, 'Up', ['b', 'a']), member(2, 'Up', ['a']), member(3, 'ComingUp', ['c']), member(4, 'Up', ['b'])];
    expect(placement(input(members, []))).toEqual([
      { kind: 'assign', name: 'b', node: 1, since: undefined, previousHost: undefined, handoverFrom: undefined },
      { kind: 'assign', name: 'a', node: 2, since: undefined, previousHost: undefined, handoverFrom: undefined },
    ]);
    // c: announced only by a node not Up yet, and not in the view: nothing to place.
    expect(eligibleHost('a', members, 2)).toBe(1);
    expect(eligibleHost('c', members)).toBeUndefined();
  });

  it('leaves alone a key service whose host is Up or ComingUp, and one whose host is GoingDown (its Down first, K4)', () => {
    const members = [member(1, 'Up', ['a', 'b']), member(2, 'ComingUp', ['b']), member(3, 'GoingDown', ['c']), member(4, 'Up', ['c'])];
    expect(placement(input(members, [hosted('a', 1), hosted('b', 2), hosted('c', 3)]))).toEqual([]);
  });

  it('hands a leaving host\'s key service over to the next eligible node', () => {
    const members = [member(1, 'Up', ['a']), member(2, 'ShuttingDown', ['a'])];
    expect(placement(input(members, [hosted('a', 2)]))).toEqual([{ kind: 'assign', name: 'a', node: 1, since: 5, previousHost: 2, handoverFrom: 2 }]);
  });

  it('fails over only once the fence wait since the host went down has passed (K1, K4)', () => {
    const members = [member(1, 'Up', ['a']), member(2, 'Down', ['a'])];
    const view = [hosted('a', 2)];
    const downSince = new Map([['2:20', 9_500]]);
    expect(placement(input(members, view, { downSince }))).toEqual([{ kind: 'wait', ms: 500 }]);
    expect(placement(input(members, view, { downSince, now: 10_500 }))).toEqual([{ kind: 'assign', name: 'a', node: 1, since: 5, previousHost: 2, handoverFrom: undefined }]);
    // The canary moves at once.
    expect(placement(input(members, view, { downSince, moveEarly: true }))[0]).toMatchObject({ kind: 'assign', node: 1 });
  });

  it('a host gone before this node saw it go counts from now, once for all it hosted', () => {
    const members = [member(1, 'Up', ['a', 'b']), member(2, 'Down', ['a', 'b'])];
    expect(placement(input(members, [hosted('a', 2), hosted('b', 2)]))).toEqual([
      { kind: 'down-seen', node: 2, incarnation: 20 },
      { kind: 'wait', ms: 1000 },
      { kind: 'wait', ms: 1000 },
    ]);
  });

  it('a newer incarnation of the host is not the host: the key service fails over', () => {
    const members = [member(1, 'Up', ['a']), member(2, 'Up', ['a'], 21)];
    expect(hostStateOf('a', 2, (n) => members.find((m) => m.node === n), new Map([['a', 20]]))).toBe('Down');
    const steps = placement(input(members, [hosted('a', 2)], { downSince: new Map([['2:20', 0]]) }));
    expect(steps).toEqual([{ kind: 'assign', name: 'a', node: 1, since: 5, previousHost: 2, handoverFrom: undefined }]);
  });

  it('with no eligible node: a critical key service halts, another goes vacant, once', () => {
    const members = [member(1, 'Up', ['x!']), member(2, 'Down', ['a', 'x'])];
    const downSince = new Map([['2:20', 0]]);
    expect(placement(input([member(1, 'Up'), member(2, 'Down')], [hosted('a', 2), hosted('x', 2, { critical: true })], { downSince }))).toEqual([
      { kind: 'vacate', name: 'a', critical: false, since: 5 },
      { kind: 'vacate', name: 'x', critical: true, since: 5 },
    ]);
    // Already vacant (no host), or already halted: nothing more.
    expect(placement(input([member(1, 'Up')], [hosted('a', undefined), hosted('x', undefined, { critical: true, halted: true })]))).toEqual([]);
    // A halted critical key service is placed again once an eligible node is Up.
    expect(placement(input(members, [hosted('x', undefined, { critical: true, halted: true })]))).toEqual([
      { kind: 'assign', name: 'x', node: 1, since: 5, previousHost: undefined, handoverFrom: undefined },
    ]);
  });

  it('after a hand-over that never completed, nothing is placed until a failure timeout after the assignment', () => {
    const members = [member(1, 'Up', ['a']), member(3, 'Down', ['a'])];
    const view = [hosted('a', 3, { ready: false })];
    const handoverSource = new Map([['a', { node: 2, at: 9_800 }]]);
    const downSince = new Map([['3:30', 0]]);
    expect(placement(input(members, view, { handoverSource, downSince }))).toEqual([{ kind: 'wait', ms: 800 }]);
    expect(placement(input(members, view, { handoverSource, downSince, now: 10_800 }))).toEqual([
      { kind: 'forget-handover', name: 'a' },
      { kind: 'assign', name: 'a', node: 1, since: 5, previousHost: 3, handoverFrom: undefined },
    ]);
  });

  it('a key service vacated while its host was going down waits a failure timeout from that down; if the host is back, not at all', () => {
    const view = [hosted('a', undefined)];
    const vacatedFrom = new Map([['a', { node: 2, incarnation: 20 }]]);
    const downSince = new Map([['2:20', 9_700]]);
    const going = [member(1, 'Up', ['a']), member(2, 'GoingDown', ['a'])];
    expect(placement(input(going, view, { vacatedFrom, downSince }))).toEqual([{ kind: 'wait', ms: 700 }]);
    expect(placement(input(going, view, { vacatedFrom, downSince, now: 10_700 }))).toEqual([
      { kind: 'forget-vacancy', name: 'a' },
      { kind: 'assign', name: 'a', node: 1, since: 5, previousHost: undefined, handoverFrom: undefined },
    ]);
    const back = [member(1, 'Up', ['a']), member(2, 'Up', ['a'])];
    expect(placement(input(back, view, { vacatedFrom, downSince }))).toEqual([
      { kind: 'forget-vacancy', name: 'a' },
      { kind: 'assign', name: 'a', node: 1, since: 5, previousHost: undefined, handoverFrom: undefined },
    ]);
  });
});
