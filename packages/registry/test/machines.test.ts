/**
 * The two state machines driven by hand, with no network and no clock:
 * the replica's ordering, fencing and snapshots; the sequencer's
 * compare-and-set, limits, ownership and the rebuild's choice.
 */
import { describe, expect, it } from 'vitest';
import { type Change, freshest, type MapLimits, ReplicaState, revision, SequencerState } from '../src/index.js';

const put = (epoch: number, seq: number, key: string, value: unknown = seq): Change => ({ epoch, seq, kind: 'put', key, value: value as never, cause: 'write' });
const del = (epoch: number, seq: number, key: string): Change => ({ epoch, seq, kind: 'delete', key, cause: 'write' });
const limits: MapLimits = { maxEntries: 3, maxBytes: 100, maxEntryBytes: 40, maxKeyBytes: 8, maxDepth: 4 };
const empty = { epoch: 0, seq: 0, entries: [] };

describe('ReplicaState', () => {
  it('applies changes in order with no gap: early ones wait, duplicates are ignored, revision only grows', () => {
    const r = new ReplicaState(10);
    r.install({ epoch: 1, seq: 0, entries: [] });
    expect(r.receive(put(1, 2, 'b')).status).toBe('buffered');
    expect(r.receive(put(1, 3, 'c')).status).toBe('buffered');
    expect(r.entries.size).toBe(0);
    const step = r.receive(put(1, 1, 'a'));
    expect(step.status).toBe('applied');
    expect(step.events.map((e) => e.key)).toEqual(['a', 'b', 'c']);
    expect(r.revision).toBe(revision(1, 3));
    expect(r.receive(put(1, 2, 'b', 'again'))).toEqual({ status: 'applied', events: [] });
    expect(r.entries.get('b')?.value).toBe(2);
    const d = r.receive(del(1, 4, 'a'));
    expect(d.events).toEqual([expect.objectContaining({ type: 'delete', key: 'a', version: revision(1, 4), cause: 'write' })]);
  });

  it('a raised fence refuses an older sequencer; a snapshot replaces the map with sync events and drains what follows it', () => {
    const r = new ReplicaState(10);
    r.install({ epoch: 1, seq: 0, entries: [] });
    r.receive(put(1, 1, 'a'));
    r.receive(put(1, 2, 'b'));
    r.raiseFence(2);
    expect(r.receive(put(1, 3, 'late')).status).toBe('stale');
    expect(r.abandoned(1, 3)).toBe(true);
    // Epoch 2's first change arrives before its snapshot: it waits.
    expect(r.receive(put(2, 1, 'c')).status).toBe('buffered');
    const events = r.install({ epoch: 2, seq: 0, entries: [{ key: 'a', value: 1, version: revision(1, 1) }, { key: 'z', value: 0, version: revision(1, 9) }] });
    expect(events.map((e) => [e.type, e.key, e.cause])).toEqual([
      ['delete', 'b', 'sync'],
      ['put', 'z', 'sync'],
      ['put', 'c', 'write'],
    ]);
    expect([...r.entries.keys()].sort()).toEqual(['a', 'c', 'z']);
    expect(r.hasApplied(2, 1)).toBe(true);
    // An older snapshot changes nothing.
    expect(r.install({ epoch: 1, seq: 9, entries: [] })).toEqual([]);
    expect(r.install({ epoch: 2, seq: 0, entries: [] })).toEqual([]);
    expect(r.entries.size).toBe(3);
  });

  it('holds at most maxBuffered early changes, then asks for a snapshot', () => {
    const r = new ReplicaState(2);
    r.install({ epoch: 1, seq: 0, entries: [] });
    expect(r.receive(put(1, 5, 'x')).status).toBe('buffered');
    expect(r.receive(put(1, 6, 'y')).status).toBe('buffered');
    expect(r.receive(put(1, 7, 'z')).status).toBe('overflow');
    expect(r.buffered).toBe(2);
  });
});

describe('SequencerState', () => {
  const caller = { node: 2, incarnation: 7 };

  it('compare-and-set on version: 0 creates, the current version updates or deletes, anything else conflicts', () => {
    const s = new SequencerState(3, empty, limits);
    const a = s.write({ kind: 'put', key: 'k', value: 1, expectVersion: 0 }, caller, true);
    expect(a).toMatchObject({ ok: true, existed: false, entry: { version: revision(3, 1) } });
    expect(s.write({ kind: 'put', key: 'k', value: 2, expectVersion: 0 }, caller, true)).toMatchObject({ ok: false, code: 'REGISTRY_ERR_CONFLICT', current: { value: 1 } });
    expect(s.write({ kind: 'put', key: 'k', value: 2, expectVersion: revision(3, 1) }, caller, true)).toMatchObject({ ok: true, existed: true, entry: { version: revision(3, 2) } });
    expect(s.write({ kind: 'delete', key: 'k', expectVersion: revision(3, 1) }, caller, true)).toMatchObject({ ok: false, code: 'REGISTRY_ERR_CONFLICT' });
    expect(s.write({ kind: 'delete', key: 'k', expectVersion: revision(3, 2) }, caller, true)).toMatchObject({ ok: true, existed: true, change: { kind: 'delete', seq: 3 } });
    expect(s.write({ kind: 'delete', key: 'missing', expectVersion: 5 }, caller, true)).toMatchObject({ ok: false, code: 'REGISTRY_ERR_CONFLICT', current: null });
    expect(s.size).toBe(0);
  });

  it('keeps the map within its limits with typed refusals; replacing an entry counts its size once', () => {
    const s = new SequencerState(1, empty, limits);
    expect(s.write({ kind: 'put', key: '', value: 1 }, caller, true)).toMatchObject({ ok: false, code: 'REGISTRY_ERR_INVALID_KEY' });
    expect(s.write({ kind: 'put', key: 'too-long-key', value: 1 }, caller, true)).toMatchObject({ ok: false, code: 'REGISTRY_ERR_INVALID_KEY' });
    expect(s.write({ kind: 'put', key: 'k', value: 'x'.repeat(50) }, caller, true)).toMatchObject({ ok: false, code: 'REGISTRY_ERR_ENTRY_TOO_LARGE' });
    expect(s.write({ kind: 'put', key: 'k', value: new Date() as never }, caller, true)).toMatchObject({ ok: false, code: 'REGISTRY_ERR_INVALID_VALUE' });
    expect(s.write({ kind: 'put', key: 'k', value: [[[[[1]]]]] }, caller, true)).toMatchObject({ ok: false, code: 'REGISTRY_ERR_INVALID_VALUE' });
    for (const k of ['a', 'b', 'c']) expect(s.write({ kind: 'put', key: k, value: 'x'.repeat(30) }, caller, true).ok).toBe(true);
    expect(s.totalBytes).toBe(3 * 33);
    expect(s.write({ kind: 'put', key: 'd', value: 1 }, caller, true)).toMatchObject({ ok: false, code: 'REGISTRY_ERR_FULL' });
    // Replacing 'a' with a value of the same size fits; growing it past maxBytes does not.
    expect(s.write({ kind: 'put', key: 'a', value: 'y'.repeat(30) }, caller, true).ok).toBe(true);
    expect(s.write({ kind: 'put', key: 'a', value: 'y'.repeat(32) }, caller, true)).toMatchObject({ ok: false, code: 'REGISTRY_ERR_FULL' });
    expect(s.totalBytes).toBe(3 * 33);
    expect(s.seq).toBe(4);
  });

  it('owned entries: refused for an owner not Up, removed by sequenced owner-down deletes for exactly the incarnation that went down', () => {
    const s = new SequencerState(1, empty, { ...limits, maxEntries: 10 });
    expect(s.write({ kind: 'put', key: 'p', value: 1, owned: true }, caller, false)).toMatchObject({ ok: false, code: 'REGISTRY_ERR_OWNER_DOWN' });
    s.write({ kind: 'put', key: 'mine', value: 1, owned: true }, caller, true);
    s.write({ kind: 'put', key: 'next', value: 1, owned: true }, { node: 2, incarnation: 8 }, true);
    s.write({ kind: 'put', key: 'plain', value: 1 }, caller, true);
    s.subscribe(2, 7);
    const changes = s.nodeDown(2, 7);
    expect(changes).toEqual([{ epoch: 1, seq: 4, kind: 'delete', key: 'mine', cause: 'owner-down' }]);
    expect(s.isSubscribed(2, 7)).toBe(false);
    expect([...s.entries.keys()].sort()).toEqual(['next', 'plain']);
  });

  it('refuses every write of an incarnation declared down: by its nodedown here, or as the membership says', () => {
    const s = new SequencerState(1, empty, { ...limits, maxEntries: 10 });
    s.subscribe(2, 7);
    s.nodeDown(2, 7);
    expect(s.wentDown({ node: 2, incarnation: 7 })).toBe(true);
    expect(s.write({ kind: 'put', key: 'k', value: 1 }, { node: 2, incarnation: 7 }, true)).toMatchObject({ ok: false, code: 'REGISTRY_ERR_OWNER_DOWN' });
    expect(s.write({ kind: 'delete', key: 'k' }, { node: 2, incarnation: 7 }, true)).toMatchObject({ ok: false, code: 'REGISTRY_ERR_OWNER_DOWN' });
    // Its next incarnation writes; so does one the membership has not declared down.
    expect(s.wentDown({ node: 2, incarnation: 8 })).toBe(false);
    expect(s.write({ kind: 'put', key: 'k', value: 2 }, { node: 2, incarnation: 8 }, true).ok).toBe(true);
    expect(s.write({ kind: 'put', key: 'k', value: 3 }, { node: 3, incarnation: 1 }, true, true)).toMatchObject({ ok: false, code: 'REGISTRY_ERR_OWNER_DOWN' });
    expect(s.seq).toBe(1);
  });

  it('the rebuild takes the highest (epoch, seq); a newer epoch beats any seq of an older one, and its versions start above them', () => {
    const a = { epoch: 1, seq: 90, entries: [{ key: 'x', value: 1, version: revision(1, 90) }] };
    const b = { epoch: 2, seq: 3, entries: [] };
    const c = { epoch: 1, seq: 95, entries: [] };
    expect(freshest([a, b, c])).toBe(b);
    expect(freshest([a, c])).toBe(c);
    expect(freshest([])).toEqual(empty);
    const s = new SequencerState(3, a, limits);
    const w = s.write({ kind: 'put', key: 'x', value: 2 }, caller, true);
    expect(w.ok && w.entry!.version).toBeGreaterThan(revision(2, 2 ** 32 - 1));
  });
});
