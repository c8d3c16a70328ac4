/** The seeds the simulator found failing (CLMS bugs not fixed yet), read from regressions.json. */
import { readFileSync } from 'node:fs';
import type { InvariantId, Profile } from '@clusterinfra/sim';

export interface Found {
  seed: number;
  nodes: number;
  profile: Profile;
  invariant: InvariantId;
  diagnosis: string;
}

export interface Fixed {
  seed: number;
  nodes: number;
  profile: Profile;
  /** The invariant it violated before the fix. */
  was: InvariantId;
  diagnosis: string;
}

export interface Regressions {
  gate: { nodes: number; profile: Profile; from: number; count: number; failing: Record<string, InvariantId> };
  found: Found[];
  /** Seeds that failed and pass since a CLMS fix: regression tests that must keep passing. */
  fixed: Fixed[];
}

export const regressions: Regressions = JSON.parse(readFileSync(new URL('../regressions.json', import.meta.url), 'utf8'));
