/**
 * A learner's append answer carries the barrier reports the append's
 * entries make it owe (docs/protocol.md, "Reports in the append's answer"),
 * at most MAX_REPORTS_PER_CALL of them: the master refuses a longer list
 * whole (`appendAnswerReportsSchema`), so a catch-up append holding more
 * joins than that would otherwise have its reports refused at every resend.
 */
import { describe, expect, it } from 'vitest';
import type { Effect } from '../src/clms/protocol/core.js';
import { type AppendRequest, appendAnswerReportsSchema, MAX_REPORTS_PER_CALL, type Report } from '../src/clms/protocol/messages.js';
import { formedHistory, memberCore, stateChange } from './clms-fixtures.js';

function carriedAndSent(joins: number): { carried: Report[][]; sent: Report[][]; held: boolean } {
  const c = memberCore(2, formedHistory());
  const first = c.history.last + 1;
  // `joins` nodes admitted (ComingUp) in one append of committed entries, as a catch-up sends them.
  const entries = Array.from({ length: joins }, (_, i) => stateChange(first + i, 10 + i, 'NeverUp', 'ComingUp'));
  const req = { term: 1, history: c.history.id, commit: first + joins - 1, entries, reports: true } as AppendRequest;
  c.step({ type: 'append', id: 1, from: 1, req, now: 0, wall: 0 });
  const before = c.ready();
  const held = !before.some((e) => e.type === 'reply' || e.type === 'respond');
  // The driver ran nodeup for each (no subsystem): this member owes a report for each.
  for (const t of entries) c.step({ type: 'owe', report: { kind: 'nodeup-done', node: t.node, incarnation: t.incarnation }, now: 0, wall: 0 });
  const effects: Effect[] = [...before, ...c.ready()];
  // The master answers each `reports` call (one under way at a time; what is owed meanwhile goes in the next).
  for (let i = 0; i < effects.length; i++) {
    const e = effects[i]!;
    if (e.type !== 'call' || e.method !== 'reports') continue;
    const n = (e.args as { reports: Report[] }).reports.length;
    c.step({ type: 'answer', call: e.call, value: { ok: Array.from({ length: n }, () => true) }, now: 0, wall: 0 });
    effects.push(...c.ready());
  }
  // A held answer is given as `respond` (reports.ts), one given at once as `reply`.
  const carried = effects.flatMap((e) => ((e.type === 'reply' || e.type === 'respond') && (e.value as { reports?: Report[] } | undefined)?.reports ? [(e.value as { reports: Report[] }).reports] : []));
  const sent = effects.flatMap((e) => (e.type === 'call' && e.method === 'reports' ? [(e.args as { reports: Report[] }).reports] : []));
  return { carried, sent, held };
}

describe('reports carried in a learner append answer', () => {
  it('all go in the answer when they fit', () => {
    const { carried, sent, held } = carriedAndSent(40);
    expect(held).toBe(true);
    expect(carried.map((rs) => rs.length)).toEqual([40]);
    expect(sent).toEqual([]);
  });

  it('an answer carries at most MAX_REPORTS_PER_CALL, a list the master accepts; the rest go in reports calls', () => {
    const joins = MAX_REPORTS_PER_CALL + 44;
    const { carried, sent } = carriedAndSent(joins);
    expect(carried.map((rs) => rs.length)).toEqual([MAX_REPORTS_PER_CALL]);
    expect(appendAnswerReportsSchema.safeParse(carried[0]).success).toBe(true);
    expect(sent.flat()).toHaveLength(44);
    // Every report goes once, in order.
    expect([...carried[0]!, ...sent.flat()].map((r) => r.node)).toEqual(Array.from({ length: joins }, (_, i) => 10 + i));
  });
});
