/** examples/dlm.ts runs as a user runs it (its `main`), on transport-mem, and shows what it says it shows. */
import { expect, it } from 'vitest';
import { main } from '../../../examples/dlm.js';

it('the dlm example: blocking notification, value block, fencing, recovery after a holder crash, empty rejoin', async () => {
  const lines: string[] = [];
  const r = await main('memory', (l) => lines.push(l));
  expect(r.blocked).toEqual(['EX']);
  expect(r.valueRead).toBe('balance=100');
  expect(r.tokens[1]).toBeGreaterThan(r.tokens[0]);
  expect(r.staleWriteRefused).toBe(true);
  expect(r.afterCrash.mode).toBe('PR');
  expect(r.afterCrash.valueValid).toBe(false);
  expect(r.afterCrash.departed).toHaveLength(1);
  expect(r.afterCrash.departed[0]).toMatch(/^node 3's EX on /);
  expect(r.rejoinedLocks).toBe(0);
  expect(lines.at(-1)).toContain('all nodes closed');
});
