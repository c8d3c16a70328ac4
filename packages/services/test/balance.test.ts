/** The pure parts by hand: the policies, and roles in member metadata. */
import { describe, expect, it } from 'vitest';
import { checkRoles, hasAnyRole, pick, rolesOf, withRoles } from '../src/index.js';

const input = (candidates: number[], cursor: number, load: Record<number, number> = {}, self = 1) => ({ candidates, self, cursor, outstanding: (n: number) => load[n] ?? 0 });

describe('pick', () => {
  it('round-robin takes the candidates in turn', () => {
    expect([0, 1, 2, 3, 4].map((k) => pick('round-robin', input([2, 5, 7], k)))).toEqual([2, 5, 7, 2, 5]);
  });

  it('least-outstanding takes the least loaded; ties go in turn', () => {
    expect(pick('least-outstanding', input([2, 3, 4], 0, { 2: 3, 3: 1, 4: 2 }))).toBe(3);
    expect([0, 1, 2].map((k) => pick('least-outstanding', input([2, 3, 4], k)))).toEqual([2, 3, 4]);
    expect(pick('least-outstanding', input([2, 3, 4], 1, { 2: 0, 3: 1, 4: 0 }))).toBe(4);
  });

  it('prefer-local takes this node when it is a candidate, else goes in turn', () => {
    expect(pick('prefer-local', input([1, 2, 3], 2, {}, 2))).toBe(2);
    expect([0, 1].map((k) => pick('prefer-local', input([3, 4], k, {}, 2)))).toEqual([3, 4]);
  });

  it('refuses an empty list and an unknown policy with SERVICES_ERR_INVALID_ARGUMENT (a RangeError; an unknown policy ran as round-robin)', () => {
    const invalid = expect.objectContaining({ code: 'SERVICES_ERR_INVALID_ARGUMENT' });
    expect(() => pick('round-robin', input([], 0))).toThrow(invalid);
    for (const policy of ['fastest', null, 5]) expect(() => pick(policy as never, input([2, 3], 0))).toThrow(invalid);
  });
});

describe('roles', () => {
  it('live in member metadata, checked', () => {
    expect(withRoles(['frontend', 'frontend', 'eu'], { runlevel: 'app' })).toEqual({ runlevel: 'app', roles: ['frontend', 'eu'] });
    expect(rolesOf({ meta: { roles: ['a', 3, 'b'] } })).toEqual(['a', 'b']);
    expect(rolesOf({ meta: {} })).toEqual([]);
    expect(hasAnyRole({ meta: { roles: ['a'] } }, ['b', 'a'])).toBe(true);
    expect(hasAnyRole({ meta: { roles: ['a'] } }, ['b'])).toBe(false);
    expect(hasAnyRole({ meta: {} }, [])).toBe(true);
    // Roles that are no list: a TypeError (null), or matched by character (a string).
    for (const bad of [null, 'a', 5]) expect(() => hasAnyRole({ meta: { roles: ['a'] } }, bad as never)).toThrow(expect.objectContaining({ code: 'SERVICES_ERR_INVALID_ROLES' }));
    for (const bad of [[''], 'frontend', ['x'.repeat(65)], Array.from({ length: 33 }, (_, i) => `r${i}`)]) {
      expect(() => checkRoles(bad), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'SERVICES_ERR_INVALID_ROLES' }));
    }
  });
});
