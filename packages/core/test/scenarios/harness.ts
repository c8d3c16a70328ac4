/**
 * Builds small ICS clusters on either transport, so that every scenario
 * runs on both: `forEachTransport((kind) => { ... })`.
 */
import { describe } from 'vitest';
import { type Clock, createIcs, type Ics, type IcsOptions, silentLogger } from '@clusterinfra/core';
import { createMemoryNetwork, memory, type MemoryNetwork } from '@clusterinfra/transport-mem';
import { tcp } from '@clusterinfra/transport-tcp';

export type TransportKind = 'memory' | 'tcp';
export const TRANSPORTS: TransportKind[] = ['memory', 'tcp'];

export interface TestCluster {
  nodes: Ics[];
  node(n: number): Ics;
  network: MemoryNetwork | undefined;
  /** Start another node (e.g. a restart of `nodeNum` as a new incarnation). */
  add(nodeNum: number, extra?: Partial<IcsOptions>): Promise<Ics>;
  close(): Promise<void>;
}

export interface ClusterOptions {
  clock?: Clock;
  extra?: (nodeNum: number) => Partial<IcsOptions>;
}

export async function makeCluster(kind: TransportKind, size: number, options: ClusterOptions = {}): Promise<TestCluster> {
  const network = kind === 'memory' ? createMemoryNetwork({ seed: 1, ...(options.clock ? { clock: options.clock } : {}) }) : undefined;
  const addresses = new Map<number, string>();
  const all: Ics[] = [];
  const current = new Map<number, Ics>();
  const add = async (nodeNum: number, extra: Partial<IcsOptions> = {}): Promise<Ics> => {
    const transport = network ? memory({ network, address: `node-${nodeNum}` }) : tcp({ host: '127.0.0.1', port: 0 });
    const ics = createIcs({
      transport,
      clusterName: 'test',
      nodeNum,
      logger: silentLogger,
      peers: (n) => addresses.get(n),
      ...(options.clock ? { clock: options.clock } : {}),
      ...options.extra?.(nodeNum),
      ...extra,
    });
    await ics.start();
    addresses.set(nodeNum, ics.address!);
    all.push(ics);
    current.set(nodeNum, ics);
    return ics;
  };
  for (let i = 1; i <= size; i++) await add(i);
  return {
    get nodes() {
      return [...current.values()];
    },
    node: (n) => current.get(n)!,
    network,
    add,
    close: async () => {
      await Promise.all(all.map((n) => n.close()));
    },
  };
}

export function forEachTransport(name: string, body: (kind: TransportKind) => void): void {
  for (const kind of TRANSPORTS) describe(`${name} [${kind}]`, () => body(kind));
}

/** A promise and its resolvers (Promise.withResolvers is missing on Node 20). */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
