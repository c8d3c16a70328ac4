/**
 * Re-measure the recorded seeds against the current CLMS and rewrite
 * regressions.json: `npx tsx packages/sim/src/regenerate.ts`. Found seeds
 * that pass now move to `fixed` (regression tests that must keep passing);
 * the gate's failing map becomes what the gate range shows today. Look at
 * every change (replay it) before committing the file.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runSeed } from './sim.js';
import { runSeeds } from './run.js';

interface Found {
  seed: number;
  nodes: number;
  profile: 'ci' | 'full';
  invariant: string;
  diagnosis: string;
}
interface Regressions {
  about: string;
  gate: { nodes: number; profile: 'ci' | 'full'; from: number; count: number; failing: Record<string, string> };
  found: Found[];
  fixed?: (Omit<Found, 'invariant'> & { was: string })[];
}

const path = fileURLToPath(new URL('../regressions.json', import.meta.url));
const r = JSON.parse(readFileSync(path, 'utf8')) as Regressions;
const stillFound: Found[] = [];
const fixed: NonNullable<Regressions['fixed']> = [];
// A fixed seed that fails again goes back to the open list.
for (const f of r.fixed ?? []) {
  const res = await runSeed({ seed: f.seed, nodes: f.nodes, profile: f.profile });
  const got = res.violation?.invariant;
  if (got === undefined) fixed.push(f);
  else {
    console.log(`seed ${f.seed} (${f.nodes} nodes): fails again with ${got} (was fixed)`);
    stillFound.push({ seed: f.seed, nodes: f.nodes, profile: f.profile, invariant: got, diagnosis: f.diagnosis });
  }
}
for (const f of r.found) {
  const res = await runSeed({ seed: f.seed, nodes: f.nodes, profile: f.profile });
  const got = res.violation?.invariant;
  if (got === undefined) {
    console.log(`seed ${f.seed} (${f.nodes} nodes): fixed (was ${f.invariant})`);
    fixed.push({ seed: f.seed, nodes: f.nodes, profile: f.profile, diagnosis: f.diagnosis, was: f.invariant });
  } else {
    if (got !== f.invariant) console.log(`seed ${f.seed} (${f.nodes} nodes): now ${got} (was ${f.invariant})`);
    stillFound.push({ ...f, invariant: got });
  }
}
const failing: Record<string, string> = {};
await runSeeds({
  from: r.gate.from,
  count: r.gate.count,
  nodes: r.gate.nodes,
  profile: r.gate.profile,
  onResult: (res) => {
    if (res.violation) failing[String(res.seed)] = res.violation.invariant;
  },
});
console.log(`gate: ${Object.keys(failing).length} of ${r.gate.count} seeds fail (was ${Object.keys(r.gate.failing).length})`);
writeFileSync(path, `${JSON.stringify({ ...r, gate: { ...r.gate, failing }, found: stillFound, fixed }, null, 1)}\n`);
