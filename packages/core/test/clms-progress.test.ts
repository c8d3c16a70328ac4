/**
 * Two ways the master and its members save frames in a join storm
 * (docs/membership.md, "Batching"), by hand on the protocol core: barrier
 * reports travel together (`clms.reports`, one call under way per master
 * and term), and the master remembers what it sent each member
 * (`MemberProgress`), so a round's append carries what a member was not
 * sent yet and a heartbeat finding it behind appends only when no append
 * to it is under way (test/scripted/heartbeat-waits-for-append.txt shows
 * that one step by step). An append also stands for the member's next
 * heartbeat, and carries what that heartbeat would (the master's health).
 */
import { describe, expect, it } from 'vitest';
import { Core, type Effect, type Message } from '../src/clms/protocol/core.js';
import type { History } from '../src/clms/protocol/history.js';
import { type Report, reportsSchema, type Transition } from '../src/clms/protocol/messages.js';
import { OwedReports } from '../src/clms/protocol/barriers.js';
import { MemberProgress } from '../src/clms/protocol/replication.js';
import { formedHistory, memberCore, stateChange } from './clms-fixtures.js';

const t = stateChange;

/** The formed cluster; then nodes 4, 5, 6 ComingUp (#8-#10) and, with `gone`, 4 GoingDown (#11). */
function history(gone = false): History {
  const h = formedHistory();
  let n = h.last;
  for (const node of [4, 5, 6]) h.append(t(++n, node, 'NeverUp', 'ComingUp'));
  if (gone) h.append(t(++n, 4, 'ComingUp', 'GoingDown'));
  return h;
}

const core = memberCore;

let clock = 0;
function step(c: Core, m: Message): Effect[] {
  c.step({ ...m, now: clock, wall: clock } as never);
  return c.ready();
}

const calls = (effects: Effect[], method: string): Extract<Effect, { type: 'call' }>[] => effects.flatMap((e) => (e.type === 'call' && e.method === method ? [e] : []));
const nodeupDone = (node: number): Report => ({ kind: 'nodeup-done', node, incarnation: node * 10 });
const reportedNodes = (call: Extract<Effect, { type: 'call' }>): number[] => (call.args as { reports: Report[] }).reports.map((r) => r.node);

describe('barrier reports travel together (clms.reports)', () => {
  it('one call under way per master: reports owed meanwhile go together once it is answered', () => {
    const m = core(2, history());
    const first = calls(step(m, { type: 'owe', report: nodeupDone(4) }), 'reports');
    expect(first.map((c) => [c.to, reportedNodes(c)])).toEqual([[1, [4]]]);
    // Owed while that call is under way: nothing goes yet.
    expect(calls(step(m, { type: 'owe', report: nodeupDone(5) }), 'reports')).toEqual([]);
    expect(calls(step(m, { type: 'owe', report: nodeupDone(6) }), 'reports')).toEqual([]);
    expect(calls(step(m, { type: 'owe', report: nodeupDone(5) }), 'reports')).toEqual([]);
    // The answer: the two owed since go in one call (5 once, though owed twice: the second replaced the first).
    const second = calls(step(m, { type: 'answer', call: first[0]!.call, value: { ok: [true] } }), 'reports');
    expect(second.map(reportedNodes)).toEqual([[6, 5]]);
    // 6 refused (the master had not applied its join yet): owed still, sent again at the next interval; 4 and 5 are not.
    expect(calls(step(m, { type: 'answer', call: second[0]!.call, value: { ok: [false, true] } }), 'reports')).toEqual([]);
    clock += 100;
    expect(calls(step(m, { type: 'interval' }), 'reports').map(reportedNodes)).toEqual([[6]]);
  });

  it('a failed call lets the queued reports go at once, and a new master gets every report still owed', () => {
    const m = core(2, history());
    const first = calls(step(m, { type: 'owe', report: nodeupDone(4) }), 'reports');
    step(m, { type: 'owe', report: nodeupDone(5) });
    const next = calls(step(m, { type: 'failed', call: first[0]!.call, code: 'ICS_ERR_DEADLINE_EXCEEDED' }), 'reports');
    expect(next.map(reportedNodes)).toEqual([[5]]);
    // Master 3 in term 2: both reports go to it (4 failed; 5 was sent to master 1 only).
    const moved = calls(step(m, { type: 'master', master: 3, term: 2 }), 'reports');
    expect(moved.map((c) => [c.to, reportedNodes(c)])).toEqual([[3, [4]]]);
    const rest = calls(step(m, { type: 'answer', call: moved[0]!.call, value: { ok: [true] } }), 'reports');
    expect(rest.map((c) => [c.to, reportedNodes(c)])).toEqual([[3, [5]]]);
    // The late answer of the call to master 1 sends nothing more.
    expect(calls(step(m, { type: 'answer', call: next[0]!.call, value: { ok: [true] } }), 'reports')).toEqual([]);
  });

  it('the master answers a flag per report, as it answers each alone', () => {
    const master = core(1, history(true));
    master.master = 1;
    const reports = [nodeupDone(5), { kind: 'cleanup-done', node: 4, incarnation: 40 }, { kind: 'cleanup-done', node: 6, incarnation: 60 }, nodeupDone(9)] as Report[];
    const effects = step(master, { type: 'reports', id: 7, from: 2, reports });
    // 5 is ComingUp and 4 going down: counted; 6 is not going down and 9 unknown: refused, sent again later.
    expect(effects.find((e) => e.type === 'reply')).toEqual({ type: 'reply', id: 7, value: { ok: [true, true, false, false] } });
    // Not master: every flag false.
    const member = core(2, history(true));
    expect(step(member, { type: 'reports', id: 8, from: 3, reports }).find((e) => e.type === 'reply')).toEqual({ type: 'reply', id: 8, value: { ok: [false, false, false, false] } });
  });

  it('the message carries barrier reports only, 1 to 256 of them', () => {
    expect(reportsSchema.safeParse({ reports: [nodeupDone(4)] }).success).toBe(true);
    expect(reportsSchema.safeParse({ reports: [] }).success).toBe(false);
    expect(reportsSchema.safeParse({ reports: Array.from({ length: 257 }, () => nodeupDone(4)) }).success).toBe(false);
    expect(reportsSchema.safeParse({ reports: [{ kind: 'leave', node: 4, incarnation: 40 }] }).success).toBe(false);
    expect(reportsSchema.safeParse({ reports: [{ ...nodeupDone(4), extra: 1 }] }).success).toBe(false);
  });
});

describe('what the master sent each member (MemberProgress)', () => {
  it('records the highest entry sent and the appends under way, per term', () => {
    const p = new MemberProgress();
    expect(p.sentUpTo(1, 2)).toBeUndefined();
    p.sending(1, 2, 8);
    p.sending(1, 2, 9);
    expect([p.sentUpTo(1, 2), p.busy(1, 2)]).toEqual([9, true]);
    p.ended(1, 2, 'ok');
    expect([p.sentUpTo(1, 2), p.busy(1, 2)]).toEqual([9, true]);
    p.ended(1, 2, 'ok');
    expect([p.sentUpTo(1, 2), p.busy(1, 2)]).toEqual([9, false]);
    // Another term knows nothing of this one.
    expect([p.sentUpTo(2, 2), p.busy(2, 2)]).toEqual([undefined, false]);
  });

  it('a refusal lowers the record to what the member holds; a failure forgets it', () => {
    const p = new MemberProgress();
    p.sending(1, 3, 9);
    p.sending(1, 3, 10);
    p.ended(1, 3, { holds: 7 });
    expect([p.sentUpTo(1, 3), p.busy(1, 3)]).toEqual([7, true]);
    p.ended(1, 3, 'failed');
    expect([p.sentUpTo(1, 3), p.busy(1, 3)]).toEqual([undefined, false]);
  });

  it('a new term or a restart starts afresh; an answer of a former term changes nothing', () => {
    const p = new MemberProgress();
    p.sending(1, 2, 9);
    p.sending(2, 3, 12);
    expect([p.sentUpTo(1, 2), p.sentUpTo(2, 3), p.busy(2, 3)]).toEqual([undefined, 12, true]);
    p.ended(1, 3, 'failed');
    expect(p.sentUpTo(2, 3)).toBe(12);
    p.clear();
    expect([p.sentUpTo(2, 3), p.busy(2, 3)]).toEqual([undefined, false]);
  });

  it('a round appends to a member what was not sent to it yet, so one refusal does not make the next append refused too', () => {
    const master = core(1, history());
    const entriesTo = (effects: Effect[], n: number): number[] => (calls(effects, 'append').find((c) => c.to === n)!.args as { entries: Transition[] }).entries.map((e) => e.number);
    const up = (id: number, node: number): Message => ({ type: 'propose', id, build: () => ({ kind: 'state', node, incarnation: node * 10, from: 'ComingUp', to: 'Up', cause: 'test' }), node });
    const ok = (call: Extract<Effect, { type: 'call' }>): Message => ({ type: 'answer', call: call.call, value: { term: 1, ok: true, last: 10 } });
    // Round A (#11, Up of 5): node 2 answers, a quorum of voters 1, 2, 3: committed.
    const a = step(master, up(1, 5));
    expect(entriesTo(a, 3)).toEqual([11]);
    step(master, ok(calls(a, 'append').find((c) => c.to === 2)!));
    step(master, { type: 'advance' });
    expect(master.history.last).toBe(11);
    // Round B (#12, Up of 6) goes out while node 3 has not answered A yet.
    const b = step(master, up(2, 6));
    expect(entriesTo(b, 3)).toEqual([12]);
    // Node 3 refuses A: it holds only #9. The resend carries #10 and #11; B, sent before it, will be refused too.
    const resend = calls(step(master, { type: 'answer', call: calls(a, 'append').find((c) => c.to === 3)!.call, value: { term: 1, ok: false, last: 9 } }), 'append');
    expect(resend.map((c) => [c.to, (c.args as { entries: Transition[] }).entries.map((e) => e.number)])).toEqual([[3, [10, 11]]]);
    // B commits with 2 and 5 (voters 1, 2, 3, 5).
    for (const n of [2, 5]) step(master, ok(calls(b, 'append').find((c) => c.to === n)!));
    step(master, { type: 'advance' });
    expect(master.history.last).toBe(12);
    // Round C (#13, Up of 4): node 3 was sent up to #11 (the resend), so its append starts at #12 and
    // arrives after the resend without a gap. Before the record it carried #13 alone: refused again, for good.
    const c = step(master, up(3, 4));
    expect(entriesTo(c, 3)).toEqual([12, 13]);
    expect(entriesTo(c, 2)).toEqual([13]);
  });
});

describe('ready reports', () => {
  it('go again every tick until the history shows them, acknowledged or not (a new master may not know the assignment yet)', () => {
    const owed = new OwedReports();
    const ready: Report = { kind: 'keyservice-ready', node: 3, incarnation: 30, keyService: 'ks.a', epoch: 5 };
    const barrier = nodeupDone(4);
    owed.owe(ready);
    owed.owe(barrier);
    for (const r of [ready, barrier]) owed.answered(r, owed.sending(r, '2:7'), '2:7', true);
    expect([...owed.due('2:7')]).toEqual([ready]);
    owed.forget(ready);
    expect([...owed.due('2:7')]).toEqual([]);
  });
});

describe('an append stands for the next heartbeat (heartbeatAll)', () => {
  // The master skips the heartbeat of a member that answered an append sent
  // within the last interval (test/scripted/heartbeat-skipped-after-append.txt),
  // so the append tells the member what that heartbeat would have: the
  // master's own lateness, which stretches the member's patience.
  const silentFor = (health: number | undefined): Effect[] => {
    const m = core(2, formedHistory());
    clock = 10_000;
    step(m, { type: 'append', id: 1, from: 1, req: { term: 1, history: m.history.id, commit: 7, entries: [], ...(health !== undefined ? { health } : {}) } });
    clock += 2_500; // two and a half failure timeouts of silence
    return step(m, { type: 'interval' });
  };
  const lostQuorum = (effects: Effect[]): boolean => effects.some((e) => e.type === 'quorum' && !e.has);

  it("a member allows a master that said it runs 4 times late 4 failure timeouts of silence, as after that master's heartbeat", () => {
    expect(lostQuorum(silentFor(4))).toBe(false);
    expect(lostQuorum(silentFor(undefined))).toBe(true);
  });
});
