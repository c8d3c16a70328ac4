/** examples/services runs as a user runs it (its `main`) and shows what it says it shows. */
import { expect, it } from 'vitest';
import { main } from '../../../examples/services/main.js';

it('services example: roles, calls by name round-robin over the storage nodes, balanced and broadcast events, a node that stops (transport-mem)', async () => {
  const lines: string[] = [];
  const r = await main('memory', (l) => lines.push(l));
  expect(r.servedBy).toEqual([2, 3, 4, 2, 3, 4]);
  // Each order billed exactly once, spread over the billing group; the ungrouped dashboard saw every one.
  expect(Object.values(r.billed).flat().filter((o) => o !== 100).sort()).toEqual([1, 2, 3, 4, 5, 6]);
  expect(r.billed).toMatchObject({ 2: [1, 4, 100], 3: [2, 5, 100], 4: [3, 6, 100] });
  expect(r.dashboard).toEqual([1, 2, 3, 4, 5, 6, 100]);
  expect(r.broadcastTo).toEqual([1, 2, 3, 4]);
  expect(r.providersAfter).toEqual([3, 4]);
  expect([...r.servedAfter].sort()).toEqual([3, 3, 4, 4]);
  expect(r.noProviderCode).toBe('SERVICES_ERR_NO_PROVIDER');
  expect(lines.at(-1)).toContain('all nodes closed');
}, 60_000);
