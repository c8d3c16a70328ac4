/** Key-service scenarios: a counter key service and a fenced external store that rejects old epochs. */
import type { ClusterNode, KeyServiceContext, KeyServiceRegistration } from '@clusterinfra/core';
import type { SimCluster } from './clms-harness.js';

export { range } from './clms-harness.js';

/**
 * An external store fenced by epoch, as a database with a fencing token
 * would be: it accepts a write only at the highest epoch it has seen (or a
 * higher one). Every attempt with an older epoch is recorded in `stale`, so
 * a test can assert that no old host ever even tried (K3).
 */
export class FencedStore {
  highest = 0;
  readonly accepted: { epoch: number; node: number; what: string }[] = [];
  readonly stale: { epoch: number; node: number; what: string }[] = [];

  write(epoch: number, node: number, what: string): void {
    if (epoch < this.highest) {
      this.stale.push({ epoch, node, what });
      throw new Error(`stale epoch ${epoch} (store is at ${this.highest})`);
    }
    this.highest = epoch;
    this.accepted.push({ epoch, node, what });
  }
}

/** What happened, in order, across the cluster (virtual time, node, text). */
export class Journal {
  readonly lines: { at: number; node: number; text: string }[] = [];
  constructor(private readonly now: () => number) {}
  add(node: number, text: string): void {
    this.lines.push({ at: this.now(), node, text });
  }
  index(pred: (l: { node: number; text: string }) => boolean): number {
    return this.lines.findIndex(pred);
  }
  has(text: string | RegExp): boolean {
    return this.lines.some((l) => (typeof text === 'string' ? l.text === text : text.test(l.text)));
  }
}

export interface CounterOptions {
  store: FencedStore;
  journal: Journal;
  name?: string;
  critical?: boolean;
  subservice?: number;
  /** Runs at the start of `failover` (e.g. to hold it on a gate). */
  onFailover?: (ctx: KeyServiceContext) => void | Promise<void>;
  /** Handlers added to the counter's own. */
  extraHandlers?: KeyServiceRegistration['handlers'];
  idempotent?: string[];
}

/**
 * A counter key service. Its value is rebuilt on failover from what every
 * survivor reports (`seen`: node × 10), or taken from the old host on a
 * hand-over. `add` writes through the fenced store with the handler's epoch.
 */
export function registerCounter(node: ClusterNode, o: CounterOptions): { value: () => number } {
  let value = 0;
  const name = o.name ?? 'counter';
  node.registerKeyService({
    name,
    critical: o.critical ?? true,
    subservice: o.subservice ?? 1,
    idempotent: o.idempotent ?? ['get'],
    handlers: {
      add: (n, ctx) => {
        o.store.write(ctx.epoch, node.nodeNum, `add ${String(n)}`);
        value += n as number;
        return value;
      },
      get: () => value,
      ...o.extraHandlers,
    },
    failover: async (ctx) => {
      o.journal.add(node.nodeNum, `failover ${name} epoch ${ctx.epoch}`);
      ctx.signal.addEventListener('abort', () => o.journal.add(node.nodeNum, `stopped ${name} epoch ${ctx.epoch}`));
      await o.onFailover?.(ctx);
    },
    pullData: (ctx) => {
      o.journal.add(node.nodeNum, `pull ${name} epoch ${ctx.epoch}`);
      return { seen: node.nodeNum * 10 };
    },
    failoverData: ({ pulled, handover }, ctx) => {
      const handed = handover?.data as { value?: number } | null | undefined;
      if (handed && typeof handed.value === 'number') value = handed.value;
      else value = [...pulled.values()].reduce((s: number, r) => s + ((r as { seen?: number } | null)?.seen ?? 0), 0);
      const from = [...pulled.keys()].sort((a, b) => a - b).join(',');
      o.journal.add(node.nodeNum, `data ${name} epoch ${ctx.epoch} from ${from}${handover ? ` handover from ${handover.from}` : ''} value ${value}`);
    },
    handover: (ctx) => {
      o.journal.add(node.nodeNum, `handover ${name} epoch ${ctx.epoch} value ${value}`);
      return { value };
    },
  });
  return { value: () => value };
}

/** Every node in `ns` sees `name` ready on a host other than `not`; returns that view. */
export function readyElsewhere(sim: SimCluster, ns: number[], name: string, not?: number): boolean {
  return ns.every((n) => {
    const k = sim.node(n).keyService(name);
    return k?.ready === true && k.host !== undefined && k.host !== not && k.host === sim.node(ns[0]!).keyService(name)?.host;
  });
}

/** Run `p` to its end while the virtual clock advances; returns its value or throws its error. */
export async function settle<T>(sim: SimCluster, p: Promise<T>, maxMs = 30_000, what = 'a call'): Promise<T> {
  let out: { ok: true; v: T } | { ok: false; e: unknown } | undefined;
  p.then(
    (v) => (out = { ok: true, v }),
    (e) => (out = { ok: false, e }),
  );
  await sim.until(() => out !== undefined, maxMs, what);
  if (!out!.ok) throw out!.e;
  return out!.v;
}
