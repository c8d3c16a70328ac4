/** One node number, one live process (clms/protocol/identity.ts): when a newcomer is admitted at once, and when asking refuses it. */
import { describe, expect, it } from 'vitest';
import { newcomerCheck, newcomerVerdict } from '../src/clms/protocol/identity.js';

describe('newcomerCheck', () => {
  it('asks the held incarnation when it is a member that has not begun to leave and the newcomer is newer', () => {
    expect(newcomerCheck({ incarnation: 10, state: 'Up' }, 11)).toBe('ask');
    expect(newcomerCheck({ incarnation: 10, state: 'ComingUp' }, 11)).toBe('ask');
  });

  it('admits at once: an unknown number, the held incarnation itself, an older one, or one on its way down or out', () => {
    expect(newcomerCheck(undefined, 11)).toBe('admit');
    expect(newcomerCheck({ incarnation: 11, state: 'Up' }, 11)).toBe('admit');
    expect(newcomerCheck({ incarnation: 12, state: 'Up' }, 11)).toBe('admit');
    for (const state of ['GoingDown', 'ShuttingDown', 'Down', 'NeverUp'] as const) expect(newcomerCheck({ incarnation: 10, state }, 11), state).toBe('admit');
  });
});

describe('newcomerVerdict', () => {
  it('refuses only when the held incarnation itself answered', () => {
    const held = { incarnation: 10, state: 'Up' } as const;
    expect(newcomerVerdict(held, 10)).toBe('refuse');
    // No answer, or the newcomer answering at the held one's address: the held one is gone.
    expect(newcomerVerdict(held, undefined)).toBe('admit');
    expect(newcomerVerdict(held, 11)).toBe('admit');
  });
});
