/**
 * The service workloads' CI gate (workloads.json): the lock manager (also
 * under a schedule of its own that kills PW/EX holders and spares their
 * masters, `dlm-kill-holder`) and the registry run on every simulated node
 * over a bounded range of seeds, and
 * no seed may break their invariants (D1–D4, RG1–RG5) or the simulator's;
 * each canary listed (a bug planted in the package) must be caught within
 * its bound, on seeds that pass without it; and a workload seed replays to
 * the same trace.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type InvariantId, type Profile, runSeed, runSeeds, type WorkloadCanary, type WorkloadName } from '@clusterinfra/sim';
import type { VoterRule } from '@clusterinfra/core';

interface Gate {
  nodes: number;
  profile: Profile;
  from: number;
  count: number;
  failing: Record<string, InvariantId>;
}
interface Canary {
  workload: WorkloadName;
  canary: WorkloadCanary;
  nodes: number;
  bound: number;
  caughtBy: InvariantId[];
  /** Why the bound or the cluster size is what it is, when that is not obvious. */
  why?: string;
}
/** A seed that failed and was fixed (the diagnosis says how). */
interface Fixed {
  workload: WorkloadName;
  seed: number;
  nodes: number;
  /** The profile it failed in: the gate's unless said. */
  profile?: Profile;
  /** The voters rule it failed with: every member unless said. */
  voters?: VoterRule;
  was: InvariantId;
}
/** A seed found failing and not fixed yet (the diagnosis says what is known): it must still fail with `is`, so the test flips when it is fixed. */
interface Found {
  workload: WorkloadName;
  seed: number;
  nodes: number;
  profile: Profile;
  is: InvariantId;
}
const config = JSON.parse(readFileSync(new URL('../workloads.json', import.meta.url), 'utf8')) as Record<WorkloadName, Gate> & {
  canaries: Canary[];
  fixed: Fixed[];
  found: Found[];
};

describe('workload gate', () => {
  for (const name of ['dlm', 'registry', 'dlm-kill-holder'] as const) {
    const g = config[name];
    it(`${name}: ${g.count} seeds of ${g.nodes} nodes (profile ${g.profile}), no violation`, async () => {
      const unexpected: string[] = [];
      const done: Record<string, number> = {};
      const summary = await runSeeds({
        from: g.from,
        count: g.count,
        nodes: g.nodes,
        profile: g.profile,
        workload: name,
        onResult: (r) => {
          for (const [k, v] of Object.entries(r.workloadStats ?? {})) done[k] = (done[k] ?? 0) + v;
          const got = r.violation?.invariant;
          if (got !== g.failing[String(r.seed)]) unexpected.push(`seed ${r.seed}: ${got ?? 'passes'} ${r.violation?.detail ?? ''}\n  replay: ${r.replay}\n  ${r.tail.slice(-12).join('\n  ')}`);
        },
      });
      console.log(`workload ${name}: ${summary.seeds} seeds in ${(summary.realMs / 1000).toFixed(1)} s; ${JSON.stringify(done)}`);
      expect(unexpected).toEqual([]);
      // The workload did work: operations under the faults, not an idle cluster.
      const ops = name === 'registry' ? done.acked! : done.grants!;
      expect(ops).toBeGreaterThan(g.count * 10);
      // The variant's own schedule killed PW/EX holders whose masters it spared.
      if (name === 'dlm-kill-holder') expect(done.holdersKilled!).toBeGreaterThan(g.count / 2);
      // RG5 had acknowledged writes with a witness left to check, not only writes of ended histories.
      if (name === 'registry') expect(done.rg5Checked!).toBeGreaterThan(g.count * 10);
    }, 600_000);
  }
});

describe('fixed workload seeds outside the gate (regressions: each must keep passing)', () => {
  const g = (f: Fixed) => config[f.workload];
  const profile = (f: Fixed): Profile => f.profile ?? g(f).profile;
  const outside = config.fixed.filter((f) => f.voters !== undefined || f.nodes !== g(f).nodes || profile(f) !== g(f).profile || f.seed < g(f).from || f.seed >= g(f).from + g(f).count);
  for (const f of outside) {
    it(`${f.workload} seed ${f.seed} at ${f.nodes} nodes, profile ${profile(f)}${f.voters ? `, voters ${f.voters}` : ''} (was ${f.was})`, async () => {
      const r = await runSeed({ seed: f.seed, nodes: f.nodes, profile: profile(f), workload: f.workload, ...(f.voters ? { voters: f.voters } : {}) });
      expect(r.violation, `${r.violation?.invariant} ${r.violation?.detail}\n  replay: ${r.replay}`).toBeUndefined();
    }, 120_000);
  }
});

// (Skipped when nothing is found and not fixed: vitest refuses an empty suite.)
describe.runIf(config.found.length > 0)('found workload bugs (each must still fail with its invariant until fixed; then move it to fixed)', () => {
  for (const f of config.found) {
    it(`${f.workload} seed ${f.seed} at ${f.nodes} nodes, profile ${f.profile}, still violates ${f.is}`, async () => {
      const r = await runSeed({ seed: f.seed, nodes: f.nodes, profile: f.profile, workload: f.workload });
      expect(r.violation?.invariant, `replay: ${r.replay}`).toBe(f.is);
    }, 120_000);
  }
});

describe('workload canaries', () => {
  for (const c of config.canaries) {
    it(`${c.workload} ${c.canary} is caught within ${c.bound} seeds of ${c.nodes} nodes`, async () => {
      let caught: { seed: number; invariant: InvariantId; detail: string } | undefined;
      for (let seed = 1; seed <= c.bound && !caught; seed++) {
        if (config[c.workload].failing[String(seed)] !== undefined) continue; // fails without the canary
        const r = await runSeed({ seed, nodes: c.nodes, profile: 'ci', workload: c.workload, canary: c.canary });
        if (r.violation) caught = { seed, invariant: r.violation.invariant, detail: r.violation.detail };
      }
      console.log(`canary ${c.workload}/${c.canary}: ${caught ? `caught by ${caught.invariant} on seed ${caught.seed}: ${caught.detail}` : 'not caught'}`);
      expect(caught, `${c.canary} was not caught`).toBeDefined();
      // The seed passes without the canary (the canary did it), and the invariant is one that names the bug.
      const clean = await runSeed({ seed: caught!.seed, nodes: c.nodes, profile: 'ci', workload: c.workload });
      expect(clean.violation, clean.replay).toBeUndefined();
      expect(c.caughtBy).toContain(caught!.invariant);
    }, 600_000);
  }
});

it('a workload seed replays exactly (same trace hash), and differs from the seed without the workload', async () => {
  const a = await runSeed({ seed: 3, nodes: 3, profile: 'ci', workload: 'dlm' });
  const b = await runSeed({ seed: 3, nodes: 3, profile: 'ci', workload: 'dlm' });
  const bare = await runSeed({ seed: 3, nodes: 3, profile: 'ci' });
  expect(b.traceHash).toBe(a.traceHash);
  expect(bare.traceHash).not.toBe(a.traceHash);
}, 240_000);
