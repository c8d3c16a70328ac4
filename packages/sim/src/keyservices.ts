/**
 * Key services in the simulator (K1–K5). Each seed draws which nodes may
 * host each of two key services, and in which order of preference. The
 * application side is what a careful user writes: the host writes to an
 * external store with its epoch as the fencing token, only while
 * `ctx.isActive()` says it may act, and clients call the service by name.
 *
 * The store here is a model that sees every write, so it can tell what a
 * real fencing store would have had to refuse:
 * - K1: two hosts write in the same epoch, two hosts may act at once, or a
 *   host acts in an epoch older than the newest one its history committed
 *   (a hand-over in progress excepted: the old host may still act until the
 *   new one collects its data, and the new one does not act before that);
 * - K3: a write arrives with an epoch older than one the store already took;
 * - K5: a node that lost quorum still holds an activation a step later.
 * K2 and K4 are checked on the history itself (checker.ts).
 */
import type { ClusterNode, KeyServiceContext, SeededRandom } from '@clusterinfra/core';
import type { Checker } from './checker.js';

export const KEY_SERVICES = ['ks.a', 'ks.b'] as const;
const SUBSERVICE: Record<string, number> = { 'ks.a': 1, 'ks.b': 2 };

interface StoreEntry {
  top: number;
  /** Epoch → the node (n:incarnation) that wrote in it. */
  writers: Map<number, string>;
}

/** What the workload needs to know about a node slot. */
export interface KsSlotView {
  node: ClusterNode;
  paused: boolean;
  /** Virtual time it last resumed from a pause. */
  resumedAt: number;
}

export class KeyServiceWorkload {
  /** Node → the key services it may host, in its order of preference. */
  readonly plan = new Map<number, string[]>();
  private readonly activations = new Map<ClusterNode, Map<string, KeyServiceContext>>();
  private readonly store = new Map<string, StoreEntry>();
  /** Node incarnation (n:incarnation) → virtual time it was first seen without quorum. */
  private readonly noQuorumSince = new Map<string, number>();
  /** Writes the store took. */
  writes = 0;
  /** Failovers that ran `failoverData` with the survivors' data. */
  failovers = 0;

  constructor(
    rng: SeededRandom,
    size: number,
    private readonly checker: Checker,
    private readonly now: () => number,
    private readonly note: (line: string) => void,
    /** How long a node without quorum may keep an activation (K5). */
    private readonly quorumBoundMs: number,
  ) {
    for (let n = 1; n <= size; n++) this.plan.set(n, []);
    for (const name of KEY_SERVICES) {
      const hosts = Array.from({ length: size }, (_, i) => i + 1).filter(() => rng.next() < 0.6);
      if (hosts.length === 0) hosts.push(1 + rng.int(size));
      for (const h of hosts) this.plan.get(h)!.push(name);
    }
    for (const names of this.plan.values()) if (names.length === 2 && rng.next() < 0.5) names.reverse();
  }

  /** Register this node's key services (before it starts). */
  register(node: ClusterNode): void {
    const n = node.nodeNum;
    for (const name of this.plan.get(n) ?? []) {
      node.registerKeyService({
        name,
        subservice: SUBSERVICE[name]!,
        handlers: {
          write: (_args, ctx) => {
            this.write(node, name, ctx.epoch, 'call');
            return ctx.epoch;
          },
          read: (_args, ctx) => ctx.epoch,
        },
        idempotent: ['read'],
        failover: (ctx) => {
          let m = this.activations.get(node);
          if (!m) this.activations.set(node, (m = new Map()));
          m.set(name, ctx);
          ctx.signal.addEventListener('abort', () => {
            if (m.get(name) === ctx) m.delete(name);
          });
          this.note(`n${n} takes over ${name} epoch ${ctx.epoch}${ctx.previousHost !== undefined ? ` from n${ctx.previousHost}` : ''}`);
        },
        pullData: () => ({ node: n }),
        failoverData: ({ pulled, handover }) => {
          this.failovers++;
          const from = [...pulled.keys(), ...(handover ? [handover.from] : [])];
          this.note(`n${n} got ${name} data from ${from.sort((a, b) => a - b).join(',') || 'nobody'}`);
        },
      });
    }
  }

  /** A write by `node` as host of `name` at `epoch`: what the model store sees (K1, K3). */
  private write(node: ClusterNode, name: string, epoch: number, how: 'call' | 'background'): void {
    const gen = this.checker.generationOf(node);
    if (gen === undefined) {
      this.checker.fail('K1', `node ${node.nodeNum} wrote to ${name} at epoch ${epoch} (${how}) while in no cluster history`);
      return;
    }
    const who = `${node.nodeNum}:${node.incarnation}`;
    const key = `${gen}|${name}`;
    let e = this.store.get(key);
    if (!e) this.store.set(key, (e = { top: 0, writers: new Map() }));
    const other = e.writers.get(epoch);
    if (other !== undefined && other !== who) {
      this.checker.fail('K1', `${name} epoch ${epoch}: node ${other.split(':')[0]} and node ${node.nodeNum} both wrote (${how})`);
    } else if (epoch < e.top) {
      this.checker.fail('K3', `${name}: node ${node.nodeNum} wrote at epoch ${epoch} (${how}) after the store took epoch ${e.top}`);
    } else {
      const c = this.checker.keyService(gen, name);
      // Excepted: a hand-over from this node in progress, and a newer epoch
      // given to this very node (it ends the old activation before it starts
      // the new one, so the two never act at once).
      const handingOver = c?.phase === 'assigned' && c.handoverFrom === node.nodeNum;
      const sameNode = c?.phase === 'assigned' && c.host === node.nodeNum && c.incarnation === node.incarnation;
      if (c && epoch < c.epoch && !handingOver && !sameNode) {
        this.checker.fail('K1', `${name}: node ${node.nodeNum} acts at epoch ${epoch} (${how}) after epoch ${c.epoch} began on node ${c.host ?? 'none'} (${c.phase})`);
      }
    }
    e.top = Math.max(e.top, epoch);
    e.writers.set(epoch, who);
    this.writes++;
  }

  /** Every step: each host that may act writes; at most one may act per key service (K1); no quorum, no activation (K5). */
  step(slots: Iterable<KsSlotView>): void {
    const acting = new Map<string, number>();
    for (const s of slots) {
      if (s.paused) continue;
      const node = s.node;
      const inc = `${node.nodeNum}:${node.incarnation}`;
      if (node.hasQuorum) this.noQuorumSince.delete(inc);
      else if (!this.noQuorumSince.has(inc)) this.noQuorumSince.set(inc, this.now());
      const m = this.activations.get(node);
      if (!m) continue;
      const lost = this.noQuorumSince.get(inc);
      for (const [name, ctx] of m) {
        if (lost !== undefined && !ctx.signal.aborted && this.now() - Math.max(lost, s.resumedAt) > this.quorumBoundMs) {
          this.checker.fail('K5', `node ${node.nodeNum} has had no quorum for ${this.now() - lost} ms and still holds ${name} epoch ${ctx.epoch}`);
        }
        if (!ctx.isActive()) continue;
        const key = `${this.checker.generationOf(node)}|${name}`;
        const other = acting.get(key);
        if (other !== undefined) this.checker.fail('K1', `${name}: node ${other} and node ${node.nodeNum} may both act now`);
        acting.set(key, node.nodeNum);
        this.write(node, name, ctx.epoch, 'background');
      }
    }
  }

  /** A node object is gone for good (crash, leave, end): forget it. */
  forget(node: ClusterNode): void {
    this.activations.delete(node);
    this.noQuorumSince.delete(`${node.nodeNum}:${node.incarnation}`);
  }

  /** After healing: every key service is ready on one Up host that may act at that epoch; `undefined` when so. */
  unsettled(master: ClusterNode, live: readonly ClusterNode[]): string | undefined {
    for (const name of KEY_SERVICES) {
      if (![...this.plan.values()].some((names) => names.includes(name))) continue;
      const v = master.keyService(name);
      if (!v?.ready || v.host === undefined) return `${name} is not ready (${v ? `epoch ${v.epoch}, host ${v.host ?? 'none'}${v.halted ? ', halted' : ''}` : 'never placed'})`;
      const acting = live.filter((n) => this.activations.get(n)?.get(name)?.isActive());
      if (acting.length !== 1 || acting[0]!.nodeNum !== v.host || this.activations.get(acting[0]!)!.get(name)!.epoch !== v.epoch) {
        return `${name} epoch ${v.epoch} on node ${v.host}, but acting: ${acting.map((n) => `n${n.nodeNum}@${this.activations.get(n)!.get(name)!.epoch}`).join(' ') || 'nobody'}`;
      }
    }
    return undefined;
  }
}
