/** The library under test, as one entry: bench/load.ts bundles it the way tsup ships it. */
export { createIcs, type Ics } from '@clusterinfra/core';
export { tcp } from '@clusterinfra/transport-tcp';
export { multipath } from '@clusterinfra/transport-multipath';
