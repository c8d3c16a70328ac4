/**
 * Batched replication (docs/membership.md, "Batching"), by hand on the
 * protocol core: which queued changes share an append round (`batchOf`),
 * and how a member holds several appended entries and applies them only
 * when the master that sent them says they are committed. The rounds as a
 * whole are shown by the scripts batch-*.txt in test/scripted/.
 */
import { describe, expect, it } from 'vitest';
import { Core, type Effect } from '../src/clms/protocol/core.js';
import { History } from '../src/clms/protocol/history.js';
import type { AppendRequest, Transition } from '../src/clms/protocol/messages.js';
import { type Batched, batchOf, MAX_BATCH } from '../src/clms/protocol/replication.js';
import { formedHistory, memberCore, stateChange } from './clms-fixtures.js';

const base = stateChange;

/** Node 2 of the formed cluster, a member that heard master 1 in term 1. */
const member = (): Core => memberCore(2, formedHistory());

const join = (number: number, node: number, term = 1): Transition => base(number, node, 'NeverUp', 'ComingUp', term);

function append(c: Core, from: number, term: number, commit: number, entries: Transition[]): { reply: unknown; effects: Effect[] } {
  const req = { term, history: c.history.id, commit, entries } as AppendRequest;
  c.step({ type: 'append', id: 1, from, req, now: 0, wall: 0 });
  const effects = c.ready();
  const reply = effects.find((e) => e.type === 'reply');
  return { reply: reply?.type === 'reply' ? reply.value : undefined, effects };
}

const applied = (effects: Effect[]): number[] => effects.flatMap((e) => (e.type === 'apply' ? [e.t.number] : []));
const held = (c: Core): string[] => c.pendingEntries.map((t) => `${t.number}@${t.term}`);

describe('a member holding a batch', () => {
  it('holds every entry of a round and applies them when the next append carries their commit', () => {
    const c = member();
    const first = append(c, 1, 1, 7, [join(8, 4), join(9, 5)]);
    expect(first.reply).toEqual({ term: 1, ok: true, last: 7 });
    expect(held(c)).toEqual(['8@1', '9@1']);
    const next = append(c, 1, 1, 9, [base(10, 4, 'ComingUp', 'Up')]);
    expect(applied(next.effects)).toEqual([8, 9]);
    expect(held(c)).toEqual(['10@1']);
    expect(next.reply).toEqual({ term: 1, ok: true, last: 9 });
  });

  it('a later master commits only the held entries it sent itself, and fetches the rest', () => {
    const c = member();
    append(c, 1, 1, 7, [join(8, 4), join(9, 5)]);
    // Master 3 of term 2 sends the same entry 8 (carried): 9 stays held (it conflicts with nothing), not vouched by 3.
    const r = append(c, 3, 2, 7, [join(8, 4)]);
    expect(r.reply).toEqual({ term: 2, ok: true, last: 7 });
    expect(held(c)).toEqual(['8@1', '9@1']);
    c.step({ type: 'commit', from: 3, req: { term: 2, history: c.history.id, commit: 9 }, now: 0, wall: 0 });
    const effects = c.ready();
    expect(applied(effects)).toEqual([8]);
    expect(effects.some((e) => e.type === 'call' && e.method === 'fetch' && e.to === 3)).toBe(true);
    expect(c.history.last).toBe(8);
  });

  it('an entry that differs from the one held at its number replaces it and everything held after it', () => {
    const c = member();
    append(c, 1, 1, 7, [join(8, 4), join(9, 5)]);
    append(c, 3, 2, 7, [join(8, 6, 2)]);
    expect(held(c)).toEqual(['8@2']);
  });

  it('a stale append with fewer entries drops none of those held', () => {
    const c = member();
    append(c, 1, 1, 7, [join(8, 4), join(9, 5)]);
    expect(append(c, 1, 1, 7, [join(8, 4)]).reply).toEqual({ term: 1, ok: true, last: 7 });
    expect(held(c)).toEqual(['8@1', '9@1']);
  });

  it('refuses entries after a gap, and after held entries another master sent, so the master sends from the start', () => {
    const c = member();
    expect(append(c, 1, 1, 7, [join(9, 5)]).reply).toEqual({ term: 1, ok: false, last: 7 });
    append(c, 1, 1, 7, [join(8, 4)]);
    expect(append(c, 3, 2, 7, [join(9, 5, 2)]).reply).toEqual({ term: 2, ok: false, last: 7 });
    expect(held(c)).toEqual(['8@1']);
  });
});

describe('a master carrying several entries', () => {
  it('keeps holding the entries it has still to propose again while the first of them replicates', () => {
    const c = member();
    append(c, 1, 1, 7, [join(8, 4), join(9, 5)]);
    // Master 1 is gone: node 2 stands, and 3 grants the pre-vote and the vote.
    c.step({ type: 'master', master: undefined, term: 1, now: 0, wall: 0 });
    c.step({ type: 'campaign', id: 1, bootstrap: false, now: 0, wall: 0 });
    const grant = (effects: Effect[]): Effect[] => {
      for (const e of effects) if (e.type === 'call' && e.method === 'vote') c.step({ type: 'answer', call: e.call, value: { term: 2, granted: e.to === 3 }, now: 0, wall: 0 });
      return c.ready();
    };
    const effects = grant(grant(c.ready()));
    const elected = effects.find((e) => e.type === 'elected');
    expect(elected?.type === 'elected' ? elected.carried.map((t) => t.number) : []).toEqual([8, 9]);
    // The core proposes each carried entry again itself, in order, one per round (the first now): an append to each of 1 and 3.
    const appends = effects.filter((e) => e.type === 'call' && e.method === 'append');
    expect(appends.map((e) => (e.type === 'call' ? e.to : 0)).sort()).toEqual([1, 3]);
    for (const e of appends) expect(e.type === 'call' ? (e.args as { entries: Transition[] }).entries.map((t) => t.number) : []).toEqual([8]);
    // Deposed now, it still counts entry 9 (some members may have committed it with master 1).
    expect(held(c)).toEqual(['8@1', '9@1']);
  });
});

describe('batchOf: which queued changes share a round', () => {
  const history = formedHistory();
  interface P {
    id: number;
    node?: number;
    t: Transition | undefined;
  }
  const build = (p: P, number: number): Transition | undefined => (p.t ? { ...p.t, number } : undefined);
  const run = (first: Transition, queue: P[]): { batch: Batched[]; left: number[] } => {
    const batch: Batched[] = [{ proposal: 0, t: first }];
    batchOf(batch, queue, history, build);
    return { batch, left: queue.map((p) => p.id) };
  };
  const numbers = (b: Batched[]): string[] => b.map((x) => `${x.t.number}:${x.t.node}:${x.t.to}`);

  it('changes of other nodes join the round; one that adds or removes a voter ends it', () => {
    const r = run(join(8, 4), [
      { id: 1, node: 5, t: join(0, 5) },
      { id: 2, node: 3, t: base(0, 3, 'Up', 'GoingDown') },
      { id: 3, node: 6, t: join(0, 6) },
    ]);
    expect(numbers(r.batch)).toEqual(['8:4:ComingUp', '9:5:ComingUp', '10:3:GoingDown']);
    expect(r.left).toEqual([3]);
  });

  it('stops at a change of a node already in the round and at one that did not say its node; skips what no longer applies', () => {
    const same = run(join(8, 4), [
      { id: 1, node: 6, t: undefined },
      { id: 2, node: 4, t: base(0, 4, 'ComingUp', 'Up') },
    ]);
    expect(numbers(same.batch)).toEqual(['8:4:ComingUp']);
    expect(same.left).toEqual([2]);
    const unsaid = run(join(8, 4), [{ id: 1, t: join(0, 5) }]);
    expect(unsaid.left).toEqual([1]);
  });

  it('an Up first is a round alone; a round holds at most MAX_BATCH entries', () => {
    expect(run(base(8, 4, 'ComingUp', 'Up'), [{ id: 1, node: 5, t: join(0, 5) }]).left).toEqual([1]);
    const many = Array.from({ length: MAX_BATCH + 5 }, (_, i) => ({ id: i + 1, node: 100 + i, t: join(0, 100 + i) }));
    const r = run(join(8, 4), many);
    expect(r.batch).toHaveLength(MAX_BATCH);
    expect(r.left).toHaveLength(6);
  });
});

describe('a member fetching from a bounded history', () => {
  /** The master's history: `count` transitions kept to `limit`, as its fetch answer carries it. */
  function masterSnapshot(count: number, limit: number) {
    const h = formedHistory();
    const m = new History(limit);
    m.install(h.snapshot());
    for (let n = 8; n <= count; n++) m.append(join(n, n));
    return m.snapshot();
  }

  /** Commit `commit` from master 1, then answer the fetch that asks for with `snapshot`. */
  function fetchAnswered(c: Core, commit: number, snapshot: unknown): Effect[] {
    c.step({ type: 'commit', from: 1, req: { term: 1, history: c.history.id, commit }, now: 0, wall: 0 });
    const call = c.ready().find((e) => e.type === 'call' && e.method === 'fetch');
    if (call?.type !== 'call') throw new Error('no fetch');
    c.step({ type: 'answer', call: call.call, value: { transitions: [], snapshot }, now: 0, wall: 0 });
    return c.ready();
  }

  it('an answer whose snapshot reaches back to what it holds (a fetch asked before it caught up): the tail is applied entry by entry', () => {
    const c = member();
    // The master keeps 8 transitions: its snapshot is at #12, its tail #13-#20; this member holds #1-#7,
    // then catches up to #12 before the answer comes.
    const snapshot = masterSnapshot(20, 8);
    expect(snapshot.number).toBe(12);
    c.step({ type: 'commit', from: 1, req: { term: 1, history: c.history.id, commit: 20 }, now: 0, wall: 0 });
    const call = c.ready().find((e) => e.type === 'call' && e.method === 'fetch');
    append(c, 1, 1, 12, [8, 9, 10, 11, 12].map((n) => join(n, n)));
    expect(c.history.last).toBe(12);
    c.step({ type: 'answer', call: call?.type === 'call' ? call.call : -1, value: { transitions: [], snapshot }, now: 0, wall: 0 });
    const effects = c.ready();
    expect(effects.some((e) => e.type === 'installed')).toBe(false);
    expect(applied(effects)).toEqual([13, 14, 15, 16, 17, 18, 19, 20]);
    expect([c.history.first, c.history.last]).toEqual([1, 20]);
  });

  it('a gap no transition bridges: it starts from the snapshot (installed, with what it had applied), then applies the tail', () => {
    const c = member();
    const snapshot = masterSnapshot(20, 8);
    const effects = fetchAnswered(c, 20, snapshot);
    const installed = effects.find((e) => e.type === 'installed');
    expect(installed).toMatchObject({ type: 'installed', had: 7, base: [] });
    expect(effects.indexOf(installed!)).toBeLessThan(effects.findIndex((e) => e.type === 'apply'));
    expect(applied(effects)).toEqual([13, 14, 15, 16, 17, 18, 19, 20]);
    expect([c.history.first, c.history.last]).toEqual([13, 20]);
    expect(c.history.member(12)?.state).toBe('ComingUp');
  });
});
