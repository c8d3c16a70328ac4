/**
 * The shared transport compliance suite, unchanged, on multipath over two
 * memory paths and over two TCP paths. The link timeout is short so that
 * the "crashed peer" case (every path reset, then the bound) is quick.
 */
import { afterAll } from 'vitest';
import { cryptoRandom, realClock, SeededRandom, silentLogger, type Transport } from '@clusterinfra/core';
import { type ComplianceHarness, transportComplianceSuite } from '@clusterinfra/core/testing';
import { createMemoryNetwork, memory, type MemoryNetwork, MemoryTransport } from '@clusterinfra/transport-mem';
import { tcp } from '@clusterinfra/transport-tcp';
import { simulateCrash } from '../../transport-tcp/src/internal.js';
import { formatMultipathAddress, multipath, MultipathTransport } from '../src/index.js';

const fast = { linkTimeoutMs: 300, heartbeatIntervalMs: 50, pathTimeoutMs: 1000, redialMinMs: 20, redialMaxMs: 100 };

function pathsOf(t: Transport): readonly Transport[] {
  if (!(t instanceof MultipathTransport)) throw new Error('not a multipath transport');
  return t.paths;
}

function memoryHarness(): ComplianceHarness {
  let network: MemoryNetwork = createMemoryNetwork();
  let incarnation = 0;
  return {
    create: ({ nodeNum, clusterName = 'compliance', secret }) => {
      const path = (p: number) => memory({ network, address: `node-${nodeNum}-p${p}`, ...(secret === undefined ? {} : { secret }) });
      return multipath([path(0), path(1)], fast).create({
        identity: { clusterName, nodeNum, incarnation: ++incarnation },
        clock: realClock,
        random: new SeededRandom(nodeNum),
        logger: silentLogger,
      });
    },
    unusedAddress: () => formatMultipathAddress(['nobody-p0', 'nobody-p1']),
    crash: (t) => {
      for (const p of pathsOf(t)) {
        if (!(p instanceof MemoryTransport)) throw new Error('not a memory transport');
        network.crash(p.address);
      }
    },
    teardown: () => {
      network = createMemoryNetwork();
    },
  };
}

transportComplianceSuite('multipath over memory', memoryHarness);

let incarnation = 5000;
// The "many links" case opens 32 handshakes per path at once from 127.0.0.1.
const tcpBase = { host: '127.0.0.1', maxPendingPerAddress: 128, maxPendingHandshakes: 128 };

transportComplianceSuite('multipath over tcp', () => ({
  create: ({ nodeNum, clusterName = 'compliance', secret }) => {
    const path = () => tcp({ ...tcpBase, ...(secret === undefined ? {} : { secret }) });
    return multipath([path(), path()], fast).create({
      identity: { clusterName, nodeNum, incarnation: ++incarnation },
      clock: realClock,
      random: cryptoRandom,
      logger: silentLogger,
    });
  },
  unusedAddress: async () => {
    // Two ports bound and released: nothing listens there.
    const a = tcp({ host: '127.0.0.1' }).create({ identity: { clusterName: 'x', nodeNum: 1, incarnation: 1 }, clock: realClock, random: cryptoRandom, logger: silentLogger });
    const l = await a.listen();
    const address = l.address;
    await a.close();
    return formatMultipathAddress([address, address]);
  },
  crash: (t) => {
    for (const p of pathsOf(t)) simulateCrash(p);
  },
}));

afterAll(() => undefined);
