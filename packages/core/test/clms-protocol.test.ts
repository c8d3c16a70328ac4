/**
 * The pure pieces of CLMS (packages/core/src/clms/protocol/), by hand: no
 * network, no clock, no node. History, quorum, leases, barriers and owed
 * reports, verification.
 */
import { describe, expect, it } from 'vitest';
import { Barriers, OwedReports } from '../src/clms/protocol/barriers.js';
import { History, historyIdOf } from '../src/clms/protocol/history.js';
import { Lease } from '../src/clms/protocol/lease.js';
import type { MemberInfo, NodeState, Report, Transition } from '../src/clms/protocol/messages.js';
import { hasQuorum, isVoter, votersOf } from '../src/clms/protocol/quorum.js';
import { changesVoters } from '../src/clms/protocol/replication.js';
import { UnreachableReports, Verification } from '../src/clms/protocol/verification.js';

let number = 0;
/** A state transition with the next number (reset with `number = 0`). */
function tr(node: number, from: NodeState, to: NodeState, extra: Partial<Transition> = {}): Transition {
  number++;
  return { number, term: 1, kind: 'state', node, incarnation: node * 10, from, to, cause: 'test', time: 1000 + number, ...extra };
}

describe('History', () => {
  it('appends consecutive numbers only, names itself after its first transition, and tracks members', () => {
    number = 0;
    const h = new History(100);
    expect([h.id, h.last, h.lastTerm, h.stateOf(1)]).toEqual([null, 0, 0, 'NeverUp']);
    const first = tr(2, 'NeverUp', 'ComingUp', { address: 'n2', meta: { zone: 'a' }, keyServices: [{ name: 'ks', critical: true }] });
    h.append(first);
    expect(h.id).toBe(historyIdOf(first));
    expect(historyIdOf(first)).toBe(`2.20.${first.time}`);
    h.append(tr(1, 'NeverUp', 'ComingUp', { address: 'n1' }));
    // Meta and key services not mentioned by a later transition are kept.
    const info = h.append(tr(2, 'ComingUp', 'Up', { term: 3 }));
    expect(info).toEqual({ node: 2, state: 'Up', incarnation: 20, address: 'n2', meta: { zone: 'a' }, keyServices: [{ name: 'ks', critical: true }], since: 3 });
    expect([h.last, h.lastTerm]).toEqual([3, 3]);
    expect(h.members().map((m) => m.node)).toEqual([1, 2]);
    expect(h.nodesIn('Up')).toEqual([2]);
    expect(h.nodesIn('Up', 'ComingUp')).toEqual([1, 2]);
    expect(() => h.append({ ...tr(1, 'ComingUp', 'Up'), number: 5 })).toThrow('transition 5 does not follow 3');
    expect(() => h.append({ ...tr(1, 'ComingUp', 'Up'), number: 3 })).toThrow('transition 3 does not follow 3');
    expect(h.last).toBe(3);
  });

  it('keeps at most `limit` transitions; the rest lives on in its snapshot, which a late joiner installs', () => {
    number = 0;
    const h = new History(2);
    h.append(tr(1, 'NeverUp', 'ComingUp', { address: 'n1' }));
    h.append(tr(1, 'ComingUp', 'Up'));
    h.append(tr(2, 'NeverUp', 'ComingUp', { address: 'n2' }));
    h.append(tr(2, 'ComingUp', 'Up', { term: 2 }));
    expect([h.first, h.last]).toEqual([3, 4]);
    expect(h.get(2)).toBeUndefined();
    expect(h.get(3)?.node).toBe(2);
    expect(h.since(0).map((t) => t.number)).toEqual([3, 4]);
    expect(h.since(3).map((t) => t.number)).toEqual([4]);
    expect(h.since(2, 1).map((t) => t.number)).toEqual([3]);
    const s = h.snapshot();
    expect([s.number, s.term, s.members.map((m) => `${m.node}:${m.state}`), s.tail.length]).toEqual([2, 1, ['1:Up'], 2]);
    const late = new History(100);
    late.install(s);
    expect([late.id, late.first, late.last, late.lastTerm]).toEqual([h.id, 3, 4, 2]);
    expect(late.members()).toEqual(h.members());
    // No key service compacted: the snapshot says nothing of them (as before the field existed).
    expect('keyServices' in s).toBe(false);
  });

  it('its snapshot keeps the last keyservice transition of each key service it compacted; a late joiner installs them', () => {
    number = 0;
    const ks = (node: number, name: string, epoch: number, phase: 'assigned' | 'ready') =>
      tr(node, 'Up', 'Up', { kind: 'keyservice', keyService: { name, epoch, phase }, cause: 'placed' });
    const h = new History(2);
    h.append(tr(1, 'NeverUp', 'ComingUp', { address: 'n1' }));
    h.append(ks(1, 'a', 1, 'assigned'));
    h.append(ks(1, 'a', 1, 'ready'));
    h.append(ks(1, 'b', 1, 'assigned'));
    h.append(ks(1, 'a', 2, 'assigned'));
    h.append(tr(2, 'NeverUp', 'ComingUp', { address: 'n2' }));
    h.append(tr(2, 'ComingUp', 'Up'));
    // #1-#5 compacted: a's last is #5 (epoch 2), b's is #4; #2 and #3 were superseded.
    expect(h.first).toBe(6);
    expect(h.keyServiceBase().map((t) => [t.number, t.keyService?.name, t.keyService?.epoch])).toEqual([[4, 'b', 1], [5, 'a', 2]]);
    const s = h.snapshot();
    expect(s.keyServices?.map((t) => t.number)).toEqual([4, 5]);
    const late = new History(100);
    late.install(s);
    expect(late.keyServiceBase()).toEqual(h.keyServiceBase());
    // What it compacts later goes on from there.
    late.append(ks(2, 'b', 2, 'assigned'));
    const tight = new History(1);
    tight.install(late.snapshot());
    tight.append(tr(2, 'Up', 'Up', { kind: 'meta', meta: {} }));
    expect(tight.keyServiceBase().map((t) => [t.keyService?.name, t.keyService?.epoch])).toEqual([['a', 2], ['b', 2]]);
  });
});

describe('quorum', () => {
  const voters = [1, 2, 3];
  it('majority: more than half of the voters; acknowledgements of non-voters do not count', () => {
    expect(hasQuorum('majority', new Set([1, 2]), voters)).toBe(true);
    expect(hasQuorum('majority', new Set([1]), voters)).toBe(false);
    expect(hasQuorum('majority', new Set([1, 4, 5]), voters)).toBe(false);
    expect(hasQuorum('majority', new Set([1, 2]), [1, 2, 3, 4])).toBe(false);
    expect(hasQuorum('majority', new Set([1, 2, 3]), [1, 2, 3, 4])).toBe(true);
    expect(hasQuorum('majority', new Set(), [])).toBe(false);
  });

  it('none: the master decides alone', () => {
    expect(hasQuorum('none', new Set(), voters)).toBe(true);
  });

  it('size: at least that many voters, or all of them when there are fewer', () => {
    expect(hasQuorum({ size: 2 }, new Set([3, 1]), voters)).toBe(true);
    expect(hasQuorum({ size: 2 }, new Set([3]), voters)).toBe(false);
    expect(hasQuorum({ size: 5 }, new Set([1, 2, 3]), voters)).toBe(true);
    expect(hasQuorum({ size: 5 }, new Set([1, 2]), voters)).toBe(false);
  });

  it('tieBreaker: a majority, or exactly half when it includes the tie-breaker (a voter)', () => {
    const four = [1, 2, 3, 4];
    expect(hasQuorum({ tieBreaker: 2 }, new Set([1, 2]), four)).toBe(true);
    expect(hasQuorum({ tieBreaker: 2 }, new Set([3, 4]), four)).toBe(false);
    expect(hasQuorum({ tieBreaker: 2 }, new Set([1, 3, 4]), four)).toBe(true);
    expect(hasQuorum({ tieBreaker: 9 }, new Set([1, 9]), [1, 2])).toBe(false);
  });

  it("voters: every Up member, or (voters 'candidates') the Up candidates; every candidate while none of them is Up", () => {
    expect(votersOf([1, 2, 4, 5], [1, 2, 3], 'members')).toEqual([1, 2, 4, 5]);
    expect(votersOf([1, 2, 4, 5], [1, 2, 3], 'candidates')).toEqual([1, 2]);
    expect(votersOf([4, 5], [1, 2, 3], 'candidates')).toEqual([1, 2, 3]);
    expect(votersOf([], [1, 2, 3], 'members')).toEqual([1, 2, 3]);
    expect([isVoter('members', [1, 2, 3], 7), isVoter('candidates', [1, 2, 3], 7), isVoter('candidates', [1, 2, 3], 2)]).toEqual([true, false, true]);
  });

  it("an Up of a node that does not vote changes no voter (batching goes on past it); a candidate's Up or down does", () => {
    number = 0;
    const h = new History(100);
    for (const node of [1, 2, 3]) {
      h.append(tr(node, 'NeverUp', 'ComingUp'));
      h.append(tr(node, 'ComingUp', 'Up'));
    }
    h.append(tr(7, 'NeverUp', 'ComingUp'));
    const up7 = { ...tr(7, 'ComingUp', 'Up'), number: h.last + 1 };
    const down2 = { ...tr(2, 'Up', 'GoingDown'), number: h.last + 1 };
    const candidatesVote = (n: number): boolean => isVoter('candidates', [1, 2, 3], n);
    expect([changesVoters(h, up7), changesVoters(h, up7, candidatesVote)]).toEqual([true, false]);
    expect([changesVoters(h, down2), changesVoters(h, down2, candidatesVote)]).toEqual([true, true]);
  });
});

describe('Lease', () => {
  it("a member's lease runs a failure timeout from the sending of the last granted request", () => {
    const l = new Lease(1000, 'majority');
    expect(l.memberHolds(0)).toBe(false);
    l.granted(500);
    expect([l.memberHolds(1500), l.memberHolds(1501)]).toEqual([true, false]);
    // A late answer to an older request does not move it back.
    l.granted(100);
    expect(l.memberHolds(1500)).toBe(true);
  });

  it("a master's lease: a quorum of the voters heard within the failure timeout, counted from the sending", () => {
    const l = new Lease(1000, 'majority');
    const voters = [1, 2, 3];
    l.elected(voters, 0);
    expect(l.masterHolds(1, voters, 1000)).toBe(true);
    expect([...l.heard(1, voters, 1001)]).toEqual([1]);
    expect(l.masterHolds(1, voters, 1001)).toBe(false);
    l.ack(3, 900);
    l.ack(3, 200); // an older request answered late
    expect([...l.heard(1, voters, 1900)]).toEqual([1, 3]);
    expect(l.masterHolds(1, voters, 1901)).toBe(false);
    // A member never heard of counts from when the master first expects it.
    l.expect([3, 4], 1500);
    expect([...l.heard(1, [1, 3, 4], 2500)]).toEqual([1, 4]);
    l.forgetAcks();
    expect([...l.heard(1, voters, 9999)]).toEqual([1, 2, 3]);
  });
});

describe('Barriers', () => {
  it('a barrier opens with the last report of its incarnation, once', () => {
    const b = new Barriers();
    b.start('nodeup', 4, 40, [1, 2, 4]);
    expect(b.report('nodeup', 4, 40, 1)).toBeUndefined();
    expect(b.report('nodeup', 4, 41, 2)).toBeUndefined(); // another incarnation's report
    expect(b.report('cleanup', 4, 40, 2)).toBeUndefined(); // another kind
    expect(b.report('nodeup', 4, 40, 2)).toBeUndefined();
    expect(b.report('nodeup', 4, 40, 4)).toMatchObject({ kind: 'nodeup', node: 4, incarnation: 40 });
    expect(b.report('nodeup', 4, 40, 4)).toBeUndefined();
  });

  it('members that went down are dropped from every barrier; what opens comes back nodeup first', () => {
    const b = new Barriers();
    b.start('cleanup', 5, 50, [1, 2, 3]);
    b.start('nodeup', 6, 60, [1, 3, 6]);
    b.start('nodeup', 7, 70, [1, 2]);
    expect(b.prune(new Set([1, 2, 3, 6]))).toEqual([]);
    const opened = b.prune(new Set([6]));
    expect(opened.map((x) => `${x.kind}:${x.node}`)).toEqual(['nodeup:7', 'cleanup:5']);
    expect(b.report('nodeup', 6, 60, 6)).toMatchObject({ node: 6 });
  });

  it('the skipCleanupBarrier canary empties cleanup barriers only', () => {
    const b = new Barriers();
    b.start('cleanup', 5, 50, [1, 2]);
    b.start('nodeup', 6, 60, [1, 2]);
    expect(b.prune(new Set([1, 2]), true).map((x) => x.node)).toEqual([5]);
  });

  it('a new master rebuilds them from the members: nodeup for ComingUp, cleanup for GoingDown and ShuttingDown', () => {
    const m = (node: number, state: NodeState): MemberInfo => ({ node, state, incarnation: node * 10, address: '', meta: {}, keyServices: [], since: 1 });
    const b = new Barriers();
    b.rebuild([m(1, 'Up'), m(2, 'ComingUp'), m(3, 'GoingDown'), m(4, 'ShuttingDown'), m(5, 'Down'), m(6, 'Up')], [1, 2, 6]);
    // The ComingUp node reports for itself too; a node going down does not.
    for (const from of [1, 6]) expect(b.report('nodeup', 2, 20, from)).toBeUndefined();
    expect(b.report('nodeup', 2, 20, 2)).toMatchObject({ node: 2 });
    expect(b.prune(new Set([1, 2, 6]))).toEqual([]);
    expect(b.prune(new Set([2]))).toEqual([]);
    expect(b.prune(new Set()).map((x) => x.node)).toEqual([3, 4]);
    expect(b.report('nodeup', 5, 50, 1)).toBeUndefined();
  });
});

describe('OwedReports', () => {
  const done = (node: number): Report => ({ kind: 'cleanup-done', node, incarnation: node * 10 });
  it('barrier and ready reports are due until sent to (and acknowledged by) this master and term', () => {
    const o = new OwedReports();
    const r5 = done(5);
    o.owe(r5);
    o.owe({ kind: 'nodeup-done', node: 6, incarnation: 60 });
    o.owe({ kind: 'suspect', node: 7, incarnation: 70 });
    o.owe({ kind: 'keyservice-ready', node: 1, incarnation: 10, keyService: 'ks', epoch: 3 });
    expect([...o.due('1:2')].map((r) => `${r.kind}:${r.node}`)).toEqual(['cleanup-done:5', 'nodeup-done:6', 'keyservice-ready:1']);
    const sent = o.sending(r5, '1:2');
    expect([...o.due('1:2')].map((r) => r.node)).toEqual([6, 1]);
    // A new master or term gets it again.
    expect([...o.due('2:3')].map((r) => r.node)).toEqual([5, 6, 1]);
    // Not acknowledged: due again. Acknowledged: still owed (the history must show it), not due to that master.
    o.answered(r5, sent, '1:2', false);
    expect([...o.due('1:2')].map((r) => r.node)).toEqual([5, 6, 1]);
    o.answered(r5, o.sending(r5, '1:2'), '1:2', true);
    expect([...o.reports()].map((r) => r.node)).toEqual([5, 6, 7, 1]);
    expect([...o.due('1:2')].map((r) => r.node)).toEqual([6, 1]);
    o.settle('cleanup-done', 5, 50);
    o.settle('nodeup-done', 6, 61); // another incarnation: still owed
    expect([...o.reports()].map((r) => r.node)).toEqual([6, 7, 1]);
  });

  it('the tick takes at most so many due reports, oldest first, skipping those under way (a join storm owes hundreds)', () => {
    const o = new OwedReports();
    for (let n = 1; n <= 20; n++) o.owe({ kind: 'nodeup-done', node: n, incarnation: n * 10 });
    o.owe({ kind: 'suspect', node: 30, incarnation: 300 });
    const first = [...o.due('1:2', 8)];
    expect(first.map((r) => r.node)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    for (const r of first) o.sending(r, '1:2');
    expect([...o.due('1:2', 8)].map((r) => r.node)).toEqual([9, 10, 11, 12, 13, 14, 15, 16]);
    expect([...o.due('1:2')]).toHaveLength(12);
  });

  it('due and reports(kind) answer as a walk over every entry would, whatever was owed, sent, answered, settled or forgotten (its counts skip the walk)', () => {
    // A model of the rules kept naively: key -> { report, sentTo }, in insertion order.
    const o = new OwedReports();
    type Entry = { r: Report; sentTo?: string | undefined };
    const model = new Map<string, Entry>();
    const kinds = ['nodeup-done', 'cleanup-done', 'keyservice-ready', 'suspect'] as const;
    const keyOf = (r: Report): string => `${r.kind}:${r.node}:${r.incarnation}${r.keyService ? `:${r.keyService}:${r.epoch}` : ''}`;
    const masters = ['1:1', '2:2', '1:3'];
    let seed = 7;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const made: Report[] = [];
    const inFlight: { r: Report; owed: ReturnType<OwedReports['sending']>; entry: Entry | undefined; to: string }[] = [];
    for (let step = 0; step < 3000; step++) {
      const op = rnd(6);
      const to = masters[rnd(masters.length)]!;
      if (op === 0 || made.length === 0) {
        const kind = kinds[rnd(kinds.length)]!;
        const node = 1 + rnd(6);
        const r: Report = kind === 'keyservice-ready' ? { kind, node, incarnation: node * 10, keyService: 'ks', epoch: rnd(2) } : { kind, node, incarnation: node * 10 };
        made.push(r);
        o.owe(r);
        model.set(keyOf(r), { r });
      } else if (op === 1) {
        const r = made[rnd(made.length)]!;
        const entry = model.get(keyOf(r));
        inFlight.push({ r, owed: o.sending(r, to), entry, to });
        if (entry?.r === r) entry.sentTo = to;
      } else if (op === 2 && inFlight.length > 0) {
        const f = inFlight.splice(rnd(inFlight.length), 1)[0]!;
        const ok = rnd(2) === 0;
        o.answered(f.r, f.owed, f.to, ok);
        if (ok && (f.r.kind === 'suspect' || f.r.kind === 'leave' || f.r.kind === 'down')) model.delete(keyOf(f.r));
        if (!ok && f.entry?.sentTo === f.to) f.entry.sentTo = undefined;
      } else if (op === 3) {
        const node = 1 + rnd(6);
        const kind = rnd(2) === 0 ? 'nodeup-done' : 'cleanup-done';
        o.settle(kind, node, node * 10);
        model.delete(`${kind}:${node}:${node * 10}`);
      } else if (op === 4) {
        const r = made[rnd(made.length)]!;
        o.forget(r);
        model.delete(keyOf(r));
      } else if (rnd(50) === 0) {
        o.clear();
        model.clear();
      }
      for (const m of masters) {
        const want = [...model.values()].filter((e) => e.r.kind !== 'suspect' && e.sentTo !== m).map((e) => e.r);
        expect([...o.due(m)]).toEqual(want);
      }
      for (const kind of kinds) expect([...o.reports(kind)]).toEqual([...model.values()].filter((e) => e.r.kind === kind).map((e) => e.r));
      expect([...o.reports()]).toEqual([...model.values()].map((e) => e.r));
    }
  });

  it('requests are owed until acknowledged; a later report of the same thing replaces the earlier', () => {
    const o = new OwedReports();
    const s1: Report = { kind: 'suspect', node: 7, incarnation: 70, reason: 'link lost' };
    const s2: Report = { kind: 'suspect', node: 7, incarnation: 70, reason: 'silent' };
    o.owe(s1);
    const sent = o.sending(s1, '1:2');
    o.owe(s2);
    // The answer to the first send is about the same thing: acknowledged, nothing is owed.
    o.answered(s1, sent, '1:2', true);
    expect([...o.reports()]).toEqual([]);
    o.owe(s2);
    o.forget(s2);
    expect([...o.reports()]).toEqual([]);
  });
});

describe('Verification', () => {
  const start = (up: number[], reports = new UnreachableReports(), now = 0) => {
    const observers: Record<string, string> = {};
    // Master 1 verifies node 9 (incarnation 90); failure timeout 1000.
    const v = new Verification({ node: 9, incarnation: 90, self: 1, up, observers, reports, failureTimeoutMs: 1000, now });
    return { v, observers, reports };
  };

  it('asks up to five Up members, neither the node nor the master', () => {
    expect(start([1, 2, 3, 4, 5, 6, 7, 8, 9]).v.helpers).toEqual([2, 3, 4, 5, 6]);
  });

  it('reachable as soon as the node answers or a helper reaches it, decided once', () => {
    const a = start([1, 2, 3, 9]);
    expect(a.v.probeAnswered(2, false, 10)).toBeUndefined();
    expect(a.v.aliveAnswered()).toBe('reachable');
    expect(a.v.aliveAnswered()).toBeUndefined();
    expect(a.observers).toEqual({ '1': 'answered', '2': 'could not reach it' });
    const b = start([1, 2, 3, 9]);
    expect(b.v.aliveFailed('ICS_ERR_TIMEOUT', 10)).toBeUndefined();
    expect(b.v.probeAnswered(3, true, 20)).toBe('reachable');
    expect(b.v.outcome).toBe('reachable');
  });

  it('the master failing to reach it is not enough: it also needs three helpers, or every helper back and one of them saying so', () => {
    const { v, observers } = start([1, 2, 3, 4, 5, 9]);
    expect(v.probeAnswered(2, false, 10)).toBeUndefined();
    expect(v.probeAnswered(3, false, 10)).toBeUndefined();
    expect(v.probeAnswered(4, false, 10)).toBeUndefined(); // three say so, but the master has not failed yet
    expect(v.aliveFailed(undefined, 20)).toBe('unreachable');
    expect(observers).toEqual({ '1': 'no answer', '2': 'could not reach it', '3': 'could not reach it', '4': 'could not reach it' });
    // With fewer helpers: every one back, one of them could not reach it.
    const few = start([1, 2, 3, 9]);
    expect(few.v.aliveFailed('X', 0)).toBeUndefined();
    expect(few.v.probeFailed(2, 5)).toBeUndefined();
    expect(few.v.probeAnswered(3, false, 6)).toBe('unreachable');
    expect(few.observers['2']).toBe('did not answer');
    // No helper at all (two nodes): the master's own failure is all there is.
    expect(start([1, 9]).v.aliveFailed('X', 0)).toBe('unreachable');
  });

  it("a probe that never came back is no evidence: nobody could say, the suspicion stays open (the master's own trouble)", () => {
    const { v } = start([1, 2, 3, 4, 9]);
    expect(v.aliveFailed('ICS_ERR_UNAVAILABLE', 0)).toBeUndefined();
    expect(v.probeFailed(2, 1)).toBeUndefined();
    expect(v.probeFailed(3, 1)).toBeUndefined();
    expect(v.probeFailed(4, 1)).toBe('unknown');
    expect(v.outcome).toBe('unknown');
  });

  it("members' own reports within the failure timeout count as helpers that could not reach it", () => {
    const reports = new UnreachableReports();
    const { v, observers } = start([1, 2, 3, 4, 5, 6, 9], reports);
    reports.note(9, 90, 2, 100);
    reports.note(9, 90, 4, 1500);
    expect(v.aliveFailed('ICS_ERR_TIMEOUT', 2000)).toBeUndefined(); // 2's report is too old by now; 4's counts
    expect(observers['4']).toBe('reported it unreachable');
    expect(observers['2']).toBeUndefined();
    reports.note(9, 90, 5, 2100);
    expect(v.reported(2100)).toBeUndefined();
    expect(v.probeAnswered(6, false, 2200)).toBe('unreachable');
    expect([...reports.of(9, 90)!.keys()]).toEqual([2, 4, 5]);
    // A report about another incarnation starts afresh.
    reports.note(9, 91, 3, 2300);
    expect(reports.of(9, 90)).toBeUndefined();
    expect([...reports.of(9, 91)!.keys()]).toEqual([3]);
    reports.forget(9);
    expect(reports.of(9, 91)).toBeUndefined();
  });

  it('a member that reported it already is not asked to dial it again, and counts', () => {
    const reports = new UnreachableReports();
    reports.note(9, 90, 3, 50);
    const { v, observers } = start([1, 2, 3, 4, 9], reports, 100);
    expect(v.helpers).toEqual([2, 4]);
    expect(observers['3']).toBe('reported it unreachable');
    expect(v.aliveFailed('X', 110)).toBeUndefined();
    expect(v.probeAnswered(2, false, 120)).toBeUndefined();
    expect(v.probeAnswered(4, false, 130)).toBe('unreachable');
  });
});
