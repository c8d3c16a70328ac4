/**
 * The CI gate: a bounded range of seeds (regressions.json "gate") must show
 * no violation except the recorded ones. A recorded seed must still fail
 * with its recorded invariant: when a CLMS fix makes it pass (or fail
 * differently), this test says so and regressions.json is updated.
 */
import { describe, expect, it } from 'vitest';
import { runSeeds } from '@clusterinfra/sim';
import { regressions } from './regressions.js';

describe('CI gate', () => {
  const g = regressions.gate;
  it(`${g.count} seeds of ${g.nodes} nodes (profile ${g.profile}): no new violation`, async () => {
    const unexpected: string[] = [];
    const summary = await runSeeds({
      from: g.from,
      count: g.count,
      nodes: g.nodes,
      profile: g.profile,
      onResult: (r) => {
        const expected = g.failing[String(r.seed)];
        const got = r.violation?.invariant;
        if (got !== expected) {
          unexpected.push(
            got === undefined
              ? `seed ${r.seed} passes now (recorded ${expected}): remove it from regressions.json`
              : `seed ${r.seed}: ${got} ${r.violation!.detail} (recorded: ${expected ?? 'pass'})\n  replay: ${r.replay}\n  ${r.tail.slice(-12).join('\n  ')}`,
          );
        }
      },
    });
    console.log(
      `gate: ${summary.seeds} seeds in ${(summary.realMs / 1000).toFixed(1)} s, ${summary.seedsPerSec.toFixed(1)} seeds/s, sim:real ${summary.ratio.toFixed(0)}:1, ` +
        `${Object.keys(g.failing).length} recorded CLMS failures`,
    );
    expect(unexpected).toEqual([]);
    // 1000 seeds take about a minute alone; CI runs the other projects beside it on 2 cores.
  }, 600_000);
});
