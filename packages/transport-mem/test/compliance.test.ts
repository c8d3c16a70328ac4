import { realClock, SeededRandom, silentLogger } from '@clusterinfra/core';
import { type ComplianceHarness, transportComplianceSuite } from '@clusterinfra/core/testing';
import { createMemoryNetwork, memory, type MemoryNetwork, MemoryTransport } from '../src/index.js';

function harness(): ComplianceHarness {
  // The suite keeps one harness; teardown swaps in a fresh network so every case starts from an empty world.
  let network: MemoryNetwork = createMemoryNetwork();
  let incarnation = 0;
  return {
    create: ({ nodeNum, clusterName = 'compliance', secret }) =>
      memory({ network, ...(secret === undefined ? {} : { secret }) }).create({
        identity: { clusterName, nodeNum, incarnation: ++incarnation },
        clock: realClock,
        random: new SeededRandom(nodeNum),
        logger: silentLogger,
      }),
    unusedAddress: () => 'nobody-listens-here',
    crash: (transport) => {
      if (!(transport instanceof MemoryTransport)) throw new Error('not a memory transport');
      network.crash(transport.address);
    },
    teardown: () => {
      network = createMemoryNetwork();
    },
  };
}

transportComplianceSuite('memory', harness);
