/** The grant rules of one resource at its master: examples, then properties over random operation sequences. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compatible, isDownConversion, LOCK_MODES, type LockMode } from '../src/modes.js';
import { type MasterLock, Resource, type ResourceOutput } from '../src/protocol/resource.js';

const mk = (id: number, mode: LockMode, noQueue = false): MasterLock => ({ node: 1, incarnation: 1, id, granted: null, requested: mode, token: 0, noQueue, notified: null });
const fresh = (): Resource => {
  let t = 0;
  return new Resource('r', () => ++t);
};
const kinds = (out: ResourceOutput[]): string[] => out.map((o) => `${o.kind}:${o.lock.id}${o.kind === 'grant' ? `:${o.mode}` : o.kind === 'refuse' ? `:${o.reason}` : o.kind === 'blocking' ? `:${o.mode}` : ''}`);

describe('modes', () => {
  it('has the standard VMS compatibility matrix', () => {
    const yes = (a: LockMode) => LOCK_MODES.filter((b) => compatible(a, b)).join(' ');
    expect(yes('NL')).toBe('NL CR CW PR PW EX');
    expect(yes('CR')).toBe('NL CR CW PR PW');
    expect(yes('CW')).toBe('NL CR CW');
    expect(yes('PR')).toBe('NL CR PR');
    expect(yes('PW')).toBe('NL CR');
    expect(yes('EX')).toBe('NL');
    for (const a of LOCK_MODES) for (const b of LOCK_MODES) expect(compatible(a, b)).toBe(compatible(b, a));
  });

  it('knows down-conversions (PW → PR is one, PR → CW is not)', () => {
    expect(isDownConversion('EX', 'NL')).toBe(true);
    expect(isDownConversion('PW', 'PR')).toBe(true);
    expect(isDownConversion('PR', 'CW')).toBe(false);
    expect(isDownConversion('CW', 'PR')).toBe(false);
    expect(isDownConversion('NL', 'CR')).toBe(false);
  });
});

describe('Resource', () => {
  it('grants compatible requests at once and queues the rest FIFO, telling the holders', () => {
    const r = fresh();
    const a = mk(1, 'PR');
    const b = mk(2, 'PR');
    const c = mk(3, 'EX');
    const d = mk(4, 'PR');
    expect(kinds(r.request(a))).toEqual(['grant:1:PR']);
    expect(kinds(r.request(b))).toEqual(['grant:2:PR']);
    expect(kinds(r.request(c))).toEqual(['blocking:1:EX', 'blocking:2:EX']);
    // Compatible with the granted PRs, but c waits ahead of it: FIFO.
    expect(kinds(r.request(d))).toEqual([]);
    expect(kinds(r.release(a))).toEqual(['released:1']);
    expect(kinds(r.release(b))).toEqual(['released:2', 'grant:3:EX', 'blocking:3:PR']);
    expect(kinds(r.release(c))).toEqual(['released:3', 'grant:4:PR']);
  });

  it('serves conversions before waiting requests', () => {
    const r = fresh();
    const a = mk(1, 'PR');
    const b = mk(2, 'PR');
    r.request(a);
    r.request(b);
    const w = mk(3, 'PR');
    r.request(mk(9, 'EX'));
    r.request(w);
    expect(kinds(r.convert(a, 'PW', false))).toEqual(['blocking:2:PW']);
    expect(r.converting).toEqual([a]);
    // b leaves: a's conversion goes first, the EX request still waits.
    expect(kinds(r.release(b))).toEqual(['released:2', 'grant:1:PW', 'blocking:1:EX']);
  });

  it('grants down-conversions at once, even with a queue', () => {
    const r = fresh();
    const a = mk(1, 'EX');
    r.request(a);
    r.request(mk(2, 'EX'));
    const out = r.convert(a, 'NL', false);
    expect(kinds(out)[0]).toBe('grant:1:NL');
    expect(kinds(out)).toContain('grant:2:EX');
  });

  it('refuses noQueue requests and conversions that would wait', () => {
    const r = fresh();
    const a = mk(1, 'PR');
    r.request(a);
    r.request(mk(2, 'PR'));
    expect(kinds(r.request(mk(3, 'EX', true)))).toEqual(['refuse:3:would-block']);
    expect(kinds(r.convert(a, 'EX', true))).toEqual(['refuse:1:would-block']);
    expect(a.granted).toBe('PR');
    expect(r.waiting).toEqual([]);
  });

  it('picks one victim in a conversion deadlock; it keeps its former mode', () => {
    const r = fresh();
    const a = mk(1, 'PR');
    const b = mk(2, 'PR');
    r.request(a);
    r.request(b);
    r.convert(a, 'EX', false);
    expect(kinds(r.convert(b, 'EX', false))).toEqual(['refuse:2:deadlock']);
    expect(b.granted).toBe('PR');
    expect(r.converting).toEqual([a]);
    // The victim releases: the survivor's conversion goes through.
    expect(kinds(r.release(b))).toEqual(['released:2', 'grant:1:EX']);
  });

  it('cancels a waiting request or conversion, and a cancel can unblock those behind', () => {
    const r = fresh();
    const a = mk(1, 'PR');
    r.request(a);
    const c = mk(2, 'EX');
    const d = mk(3, 'CR');
    r.request(c);
    r.request(d);
    expect(kinds(r.cancel(c))).toEqual(['refuse:2:cancelled', 'grant:3:CR']);
    r.convert(a, 'EX', false);
    expect(kinds(r.cancel(a))).toEqual(['refuse:1:cancelled']);
    expect(a.granted).toBe('PR');
    expect(kinds(r.cancel(a))).toEqual([]);
  });

  it('writes the value block on release or down-conversion from PW/EX only, versioned by the writer token', () => {
    const r = fresh();
    const a = mk(1, 'EX');
    r.request(a);
    r.convert(a, 'PR', false, new Uint8Array([1]));
    expect(r.value).toEqual({ value: new Uint8Array([1]), version: 1, valid: true });
    // From PR: not a writer, nothing written.
    r.release(a, new Uint8Array([2]));
    expect(r.value.version).toBe(1);
    const b = mk(2, 'PW');
    const grant = r.request(b)[0]!;
    expect(grant.kind === 'grant' && grant.value.version).toBe(1);
    r.release(b, new Uint8Array([3]));
    expect(r.value.version).toBe(b.token);
  });

  it('prune drops departed locks without granting and invalidates the value block of a PW/EX holder', () => {
    const r = fresh();
    const a = { ...mk(1, 'PW'), node: 7 };
    const w = mk(2, 'EX');
    r.request(a);
    r.request(w);
    expect(r.prune((l) => l.node === 7)).toEqual([a]);
    expect(r.value.valid).toBe(false);
    expect(w.granted).toBe(null);
    expect(kinds(r.pass())).toEqual(['grant:2:EX']);
  });
});

// ------------------------------------------------------------------ properties

type Op = { k: 'req'; mode: LockMode; noQueue: boolean } | { k: 'conv'; pick: number; mode: LockMode; noQueue: boolean } | { k: 'rel'; pick: number } | { k: 'cancel'; pick: number };

const modeArb = fc.constantFrom(...LOCK_MODES);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('req' as const), mode: modeArb, noQueue: fc.boolean() }),
  fc.record({ k: fc.constant('conv' as const), pick: fc.nat(), mode: modeArb, noQueue: fc.boolean() }),
  fc.record({ k: fc.constant('rel' as const), pick: fc.nat() }),
  fc.record({ k: fc.constant('cancel' as const), pick: fc.nat() }),
);

describe('Resource properties', () => {
  it('never grants incompatible modes at once; tokens only grow; no lock is granted while it can wait for nothing; FIFO holds', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const r = fresh();
        const all: MasterLock[] = [];
        let lastToken = 0;
        let nextId = 1;
        for (const op of ops) {
          let out: ResourceOutput[] = [];
          if (op.k === 'req') {
            const l = mk(nextId++, op.mode, op.noQueue);
            all.push(l);
            out = r.request(l);
          } else {
            const live = all.filter((l) => r.find(l.node, l.incarnation, l.id));
            if (live.length === 0) continue;
            const l = live[op.pick % live.length]!;
            if (op.k === 'conv') {
              if (l.granted === null || l.requested !== null) continue;
              out = r.convert(l, op.mode, op.noQueue);
            } else if (op.k === 'rel') out = r.release(l);
            else out = r.cancel(l);
          }
          // Grants: tokens strictly grow, in the order they are made.
          for (const o of out) {
            if (o.kind !== 'grant') continue;
            expect(o.token).toBeGreaterThan(lastToken);
            lastToken = o.token;
          }
          // Safety: granted modes pairwise compatible.
          for (const a of r.granted) for (const b of r.granted) if (a !== b) expect(compatible(a.granted!, b.granted!)).toBe(true);
          // Queues are consistent.
          for (const c of r.converting) expect(c.granted !== null && c.requested !== null).toBe(true);
          for (const w of r.waiting) expect(w.granted === null && w.requested !== null && !w.noQueue).toBe(true);
          // Nothing waits that could go: the head of the conversion queue does not fit; requests only wait behind conversions or a head that does not fit.
          const fits = (mode: LockMode, except?: MasterLock) => r.granted.every((g) => g === except || compatible(g.granted!, mode));
          if (r.converting.length > 0) expect(fits(r.converting[0]!.requested!, r.converting[0])).toBe(false);
          else if (r.waiting.length > 0) expect(fits(r.waiting[0]!.requested!)).toBe(false);
          // No conversion deadlock is left standing.
          const head = r.converting[0];
          if (head) for (const c of r.converting.slice(1)) expect(compatible(c.granted!, head.requested!)).toBe(true);
        }
        // FIFO among new requests: ids of the waiting queue keep arrival order.
        const ids = r.waiting.map((w) => w.id);
        expect(ids).toEqual([...ids].sort((a, b) => a - b));
      }),
      { numRuns: 500 },
    );
  });
});
