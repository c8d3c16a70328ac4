import { describe, expect, it } from 'vitest';
import { runSeed } from '@clusterinfra/sim';

describe('determinism', () => {
  it('the same seed replays exactly: same trace hash, same outcome', async () => {
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const a = await runSeed({ seed, nodes: 5, profile: 'ci' });
      const b = await runSeed({ seed, nodes: 5, profile: 'ci' });
      expect(b.traceHash, `seed ${seed}`).toBe(a.traceHash);
      expect(b.violation).toEqual(a.violation);
      expect(b.simMs).toBe(a.simMs);
      expect(b.tail).toEqual(a.tail);
    }
  });

  it('different seeds give different traces', async () => {
    const a = await runSeed({ seed: 7, nodes: 3, profile: 'ci' });
    const b = await runSeed({ seed: 8, nodes: 3, profile: 'ci' });
    expect(a.traceHash).not.toBe(b.traceHash);
  });
});
