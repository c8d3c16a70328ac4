import { type Link, type Listener, SeededRandom, silentLogger, VirtualClock } from '@clusterinfra/core';
import {
  createMemoryNetwork,
  memory,
  type MemoryLink,
  type MemoryNetwork,
  type MemoryNetworkOptions,
  type MemoryTransport,
  type MemoryTransportOptions,
} from '../src/index.js';

export interface World {
  clock: VirtualClock;
  network: MemoryNetwork;
  node(nodeNum: number, options?: Partial<Omit<MemoryTransportOptions, 'network'>> & { clusterName?: string }): MemoryTransport;
}

/** A fresh network on a fresh VirtualClock. */
export function world(options: Omit<MemoryNetworkOptions, 'clock'> = {}): World {
  const clock = new VirtualClock();
  const network = createMemoryNetwork({ ...options, clock });
  let incarnation = 0;
  return {
    clock,
    network,
    node(nodeNum, { clusterName = 'test', ...rest } = {}) {
      return memory({ network, ...rest }).create({
        identity: { clusterName, nodeNum, incarnation: ++incarnation },
        clock,
        random: new SeededRandom(nodeNum),
        logger: silentLogger,
      });
    },
  };
}

/** Run the virtual clock until `p` settles (or `maxMs` of virtual time passed), then return its outcome. */
export async function settle<T>(clock: VirtualClock, p: Promise<T>, maxMs = 60_000): Promise<T> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await clock.advanceUntil(() => done, maxMs);
  if (!done) throw new Error(`promise still pending after ${maxMs} virtual ms`);
  return p;
}

/** The error `p` rejects with (fails the test when it resolves). */
export async function failure(clock: VirtualClock, p: Promise<unknown>, maxMs = 60_000): Promise<unknown> {
  try {
    await settle(clock, p, maxMs);
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

export interface Pair {
  /** Client end. */
  out: MemoryLink;
  /** Listener end. */
  in: MemoryLink;
}

/** `client` connects to `listener`; both ends are resumed unless told not to. */
export async function connect(w: World, listener: Listener, client: MemoryTransport, resume = true): Promise<Pair> {
  const accepted = new Promise<MemoryLink>((resolve) => {
    const onLink = (link: Link): void => {
      if (link.remote.incarnation !== client.identity.incarnation) return;
      listener.off('link', onLink);
      resolve(link as MemoryLink);
    };
    listener.on('link', onLink);
  });
  const out = await settle(w.clock, client.connect(listener.address));
  const inbound = await settle(w.clock, accepted);
  if (resume) {
    out.resume();
    inbound.resume();
  }
  return { out, in: inbound };
}

/** A frame whose first 4 bytes are `seq`. */
export function frame(seq: number, size = 8): Uint8Array {
  const f = new Uint8Array(size);
  new DataView(f.buffer).setUint32(0, seq);
  for (let i = 4; i < size; i++) f[i] = (seq + i) & 0xff;
  return f;
}

export function seqOf(f: Uint8Array): number {
  return new DataView(f.buffer, f.byteOffset, f.byteLength).getUint32(0);
}

/** Record the sequence numbers `link` delivers. */
export function record(link: Link): number[] {
  const got: number[] = [];
  link.on('frame', (f) => got.push(seqOf(f)));
  return got;
}

export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
