/** examples/otel.ts runs as a user runs it (its `main`), on transport-mem, and shows what it says it shows. */
import { expect, it } from 'vitest';
import { main } from '../../../examples/otel.js';

it('the otel example: one trace across three nodes, a failed call in error, membership recorded', async () => {
  const lines: string[] = [];
  const r = await main('memory', (l) => lines.push(l));
  expect(r.tree).toEqual([
    'INTERNAL checkout',
    'CLIENT default/10/checkout @1',
    'SERVER shop/checkout @2',
    'CLIENT default/11/reserve @2',
    'SERVER stock/reserve @3',
  ]);
  expect(r.traceIds).toBe(1);
  expect(r.failed.sort()).toEqual(['CLIENT ICS_ERR_NOT_FOUND', 'SERVER ICS_ERR_NOT_FOUND']);
  expect(r.transitions).toBeGreaterThanOrEqual(3);
  expect(r.keyServiceMoves).toBeGreaterThanOrEqual(1);
  expect(lines.at(-1)).toBe('all nodes closed');
}, 60_000);
