/**
 * The trace-hash guardrail (`npm run sim -- --check-hashes`, hashes.ts):
 * the recorded file covers the CI gate's profile at 3 and 5 nodes, and the
 * comparison names exactly the seeds whose hash differs.
 */
import { describe, expect, it } from 'vitest';
import { compareHashes, type HashFile, readHashFile, runSeed } from '@clusterinfra/sim';
import { regressions } from './regressions.js';

describe('trace hashes', () => {
  it('are recorded for seeds 1-500 at 3 and 5 nodes, in the profile of the CI gate', () => {
    const f = readHashFile();
    expect(f.profile).toBe(regressions.gate.profile);
    expect([f.from, f.count]).toEqual([1, 500]);
    expect(Object.keys(f.hashes).sort()).toEqual(['3', '5']);
    for (const list of Object.values(f.hashes)) {
      expect(list).toHaveLength(500);
      for (const h of list) expect(h).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it('a changed hash is reported with its seed and size; equal hashes are not', async () => {
    const lines = [];
    for (const seed of [1, 2, 3]) {
      const r = await runSeed({ seed, nodes: 3, profile: 'ci' });
      lines.push({ seed, traceHash: r.traceHash });
    }
    const file = (hashes: string[]): HashFile => ({ about: '', profile: 'ci', from: 1, count: 3, hashes: { '3': hashes } });
    const real = lines.map((l) => l.traceHash);
    expect(compareHashes(file(real), new Map([[3, lines]]))).toEqual([]);
    const other = [real[0]!, 'f'.repeat(64), real[2]!];
    expect(compareHashes(file(other), new Map([[3, lines]]))).toEqual([{ seed: 2, nodes: 3, recorded: 'f'.repeat(64), now: real[1], violation: undefined }]);
  });
});
