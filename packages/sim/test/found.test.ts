/**
 * Every failing seed found during development, replayed. They fail today
 * because of CLMS bugs (diagnosis in regressions.json); each test expects
 * the recorded invariant, so it flips (fails) when the bug is fixed — then
 * move the seed to a passing regression or delete it.
 */
import { describe, expect, it } from 'vitest';
import { runSeed } from '@clusterinfra/sim';
import { regressions } from './regressions.js';

// (Empty when every bug found so far is fixed: vitest refuses an empty suite.)
describe.runIf(regressions.found.length > 0)('found CLMS bugs (expected to fail until fixed)', () => {
  for (const f of regressions.found) {
    it(`seed ${f.seed} (${f.nodes} nodes, ${f.profile}) still fails with ${f.invariant}`, async () => {
      const r = await runSeed({ seed: f.seed, nodes: f.nodes, profile: f.profile });
      expect(r.violation?.invariant, `${f.diagnosis}\nreplay: ${r.replay}`).toBe(f.invariant);
    });
  }
});

describe('fixed CLMS bugs (regression tests: each seed must keep passing)', () => {
  for (const f of regressions.fixed) {
    const limit = 'historyLimit' in f && typeof f.historyLimit === 'number' ? f.historyLimit : undefined;
    it(`seed ${f.seed} (${f.nodes} nodes, ${f.profile}${limit !== undefined ? `, historyLimit ${limit}` : ''}) passes (it violated ${f.was})`, async () => {
      const r = await runSeed({ seed: f.seed, nodes: f.nodes, profile: f.profile, ...(limit !== undefined ? { historyLimit: limit } : {}) });
      expect(r.violation, `${f.diagnosis}\nreplay: ${r.replay}`).toBeUndefined();
    });
  }
});
