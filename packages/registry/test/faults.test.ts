/** The seeded fault workload (workload.ts), six seeds. */
import { it } from 'vitest';
import { workload } from './workload.js';

for (const seed of [1, 2, 3, 4, 5, 6]) {
  it(`seed ${seed}: writes from every node, crashes and restarts; RG1–RG5 hold`, () => workload(seed), 120_000);
}
