/** Clusters over multipath-over-memory under a virtual clock, and plain transport pairs. */
import { ClusterNode, type Ics, type LinkCloseInfo, type Link, seededRandom, silentLogger, type Transport, VirtualClock } from '@clusterinfra/core';
import { createMemoryNetwork, memory, type MemoryNetwork } from '@clusterinfra/transport-mem';
import { formatMultipathAddress, multipath, type MultipathFactory, type MultipathOptions, MULTIPATH_PRESETS } from '../src/index.js';

/** Address of path `p` of node `n` on the memory network. */
export const pathAddress = (n: number, p: number): string => `n${n}-p${p}`;
export const nodeAddress = (n: number): string => formatMultipathAddress([pathAddress(n, 0), pathAddress(n, 1)]);

/** Multipath timers for tests: `local`, so that failover is far inside CLMS's `local` failure timeout. */
export const TEST_TIMERS: MultipathOptions = { ...MULTIPATH_PRESETS.local };

export function factoryFor(network: MemoryNetwork, n: number, options: MultipathOptions = {}): MultipathFactory {
  // A short connect timeout, so that a redial across a cut path gives up (and retries) quickly.
  const path = (p: number) => memory({ network, address: pathAddress(n, p), connectTimeoutMs: 200 });
  return multipath([path(0), path(1)], { ...TEST_TIMERS, ...options });
}

export interface MpCluster {
  clock: VirtualClock;
  network: MemoryNetwork;
  nodes: Map<number, ClusterNode>;
  factories: Map<number, MultipathFactory>;
  /** Every nodedown event any node emitted: [observer, node]. */
  nodedowns: [number, number][];
  until(pred: () => boolean, maxMs?: number, what?: string): Promise<void>;
  close(): Promise<void>;
}

export async function mpCluster(size: number, options: MultipathOptions = {}, seed = 1): Promise<MpCluster> {
  const clock = new VirtualClock();
  const network = createMemoryNetwork({ seed, clock });
  const nodes = new Map<number, ClusterNode>();
  const factories = new Map<number, MultipathFactory>();
  const nodedowns: [number, number][] = [];
  for (let n = 1; n <= size; n++) {
    const factory = factoryFor(network, n, options);
    const node = new ClusterNode({
      nodeNum: n,
      clusterName: 'multipath',
      transport: factory,
      candidates: [1, 2, 3].filter((c) => c <= size),
      seeds: Array.from({ length: size }, (_, i) => nodeAddress(i + 1)).filter((a) => a !== nodeAddress(n)),
      preset: 'local',
      clock,
      random: seededRandom(`${seed}/${n}`),
      logger: silentLogger,
    });
    node.on('nodedown', (info) => nodedowns.push([n, info.node]));
    factories.set(n, factory);
    nodes.set(n, node);
    void node.start().catch(() => {});
  }
  const until = async (pred: () => boolean, maxMs = 30_000, what = 'condition'): Promise<void> => {
    if (!(await clock.advanceUntil(pred, maxMs))) throw new Error(`timed out (virtual ${maxMs} ms) waiting for ${what}`);
  };
  const all = [...nodes.values()];
  await until(() => all.every((x) => x.membership().members.filter((m) => m.state === 'Up').length === size), 30_000, 'the cluster to form');
  return {
    clock,
    network,
    nodes,
    factories,
    nodedowns,
    until,
    close: async () => {
      let done = false;
      const closing = Promise.all(all.map((x) => x.close())).then(() => (done = true));
      await clock.advanceUntil(() => done, 60_000);
      await closing;
    },
  };
}

export const RECORDER = { channel: 'default', subservice: 77 };

/** Register, on `ics`, a service that records every sequence number it is called with (in arrival order). */
export function recorder(ics: Ics): number[] {
  const got: number[] = [];
  ics.registerService({ ...RECORDER, name: 'recorder', handlers: { rec: (seq) => (got.push(seq as number), seq) } });
  return got;
}

export interface Traffic {
  /** Calls settled so far. */
  readonly settled: number;
  readonly results: unknown[];
  readonly failures: unknown[];
  readonly done: boolean;
}

/** `total` calls 0..total-1 from `ics` to `to`, at most `depth` in flight, issued in order. */
export function startTraffic(ics: Ics, to: number, total: number, depth = 8): Traffic {
  const t = { settled: 0, results: [] as unknown[], failures: [] as unknown[], done: false };
  let next = 0;
  const launch = (): void => {
    while (next < total && next - t.settled < depth) {
      const i = next++;
      ics.call(to, RECORDER, 'rec', i, { timeoutMs: 10_000 }).then(
        (v) => settle(() => (t.results[i] = v)),
        (e: unknown) => settle(() => t.failures.push(e)),
      );
    }
  };
  const settle = (f: () => void): void => {
    f();
    t.settled++;
    t.done = t.settled === total;
    launch();
  };
  launch();
  return t;
}

/** 0..n-1 */
export const upTo = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Two multipath transports on one memory network, node 2 listening, node 1 connected. */
export async function linkPair(clock: VirtualClock, options: MultipathOptions = {}) {
  const network = createMemoryNetwork({ seed: 7, clock });
  const make = (n: number): Transport =>
    factoryFor(network, n, options).create({ identity: { clusterName: 'pair', nodeNum: n, incarnation: n * 10 }, clock, random: seededRandom(n), logger: silentLogger });
  const server = make(2);
  const client = make(1);
  const listener = await server.listen();
  const accepted = new Promise<Link>((r) => listener.once('link', r));
  const outbound = await connectOn(clock, client, listener.address);
  const inbound = await accepted;
  return { network, server, client, listener, outbound, inbound, make };
}

/** `transport.connect` while the virtual clock moves (the memory network delivers on timers). */
export async function connectOn(clock: VirtualClock, transport: Transport, address: string): Promise<Link> {
  let link: Link | undefined;
  let error: unknown;
  transport.connect(address).then(
    (l) => (link = l),
    (e: unknown) => (error = e),
  );
  await clock.advanceUntil(() => link !== undefined || error !== undefined, 10_000);
  if (error !== undefined) throw error;
  if (link === undefined) throw new Error('connect did not settle');
  return link;
}

/** Collects frames (as numbers from their first 4 bytes) and the close info of a link. */
export function watch(link: Link): { frames: number[]; closed: LinkCloseInfo | undefined } {
  const w = { frames: [] as number[], closed: undefined as LinkCloseInfo | undefined };
  link.on('frame', (f) => w.frames.push(new DataView(f.buffer, f.byteOffset, f.byteLength).getUint32(0)));
  link.on('close', (info) => (w.closed = info));
  link.resume();
  return w;
}

export function numbered(i: number, size = 64): Uint8Array {
  const f = new Uint8Array(size);
  new DataView(f.buffer).setUint32(0, i);
  return f;
}
