/**
 * Transports for the examples: TCP on 127.0.0.1 (what a real cluster uses),
 * or the in-memory network (what tests use), chosen by one word. Not part of
 * the library: the examples create their nodes themselves; this only hands
 * them a transport and an address per node number.
 *
 * The choice: `--memory` on the command line, or CLUSTERINFRA_TRANSPORT=memory.
 */
import { randomBytes } from 'node:crypto';
import { type AddressInfo, createServer, type Server } from 'node:net';
import type { TransportFactory } from '@clusterinfra/core';
import { createMemoryNetwork, memory } from '@clusterinfra/transport-mem';
import { tcp } from '@clusterinfra/transport-tcp';

export type TransportKind = 'tcp' | 'memory';

/** `memory` when asked for on the command line or in the environment, else `tcp`. */
export function transportFromArgs(argv: readonly string[] = process.argv): TransportKind {
  return argv.includes('--memory') || process.env.CLUSTERINFRA_TRANSPORT === 'memory' ? 'memory' : 'tcp';
}

export interface ExampleNetwork {
  kind: TransportKind;
  /** The transport for node `n` (listening on `address(n)`). */
  transport(n: number): TransportFactory;
  /** Where node `n` listens: a memory address, or 127.0.0.1:port reserved for it. */
  address(n: number): string;
}

/** Ports the kernel hands out now on 127.0.0.1 (held together, so distinct). */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  for (let i = 0; i < count; i++) {
    const s = createServer();
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve());
    });
    servers.push(s);
  }
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Addresses for nodes 1..size, known before any node starts (seeds need them). */
export async function exampleNetwork(kind: TransportKind, size: number): Promise<ExampleNetwork> {
  // Every node of a cluster shares the secret; a real one comes from a secret store.
  const secret = randomBytes(32).toString('hex');
  if (kind === 'memory') {
    const network = createMemoryNetwork({ seed: 1 });
    return { kind, transport: (n) => memory({ network, address: `node-${n}`, secret }), address: (n) => `node-${n}` };
  }
  const ports = await freePorts(size);
  const port = (n: number): number => {
    const p = ports[n - 1];
    if (p === undefined) throw new RangeError(`no port reserved for node ${n}`);
    return p;
  };
  return { kind, transport: (n) => tcp({ host: '127.0.0.1', port: port(n), secret }), address: (n) => `127.0.0.1:${port(n)}` };
}
