/**
 * A world of DlmState machines driven by hand: no network, no timers.
 * Messages wait in FIFO queues per (sender incarnation, receiver
 * incarnation) and are delivered when the script (or a seeded schedule)
 * says; membership rounds reach each node when the script says; a crash
 * drops a node's queues. Checkers watch every effect:
 *
 * - the invariants of invariants.ts, after every step;
 * - an owner takes a grant only in the round its token is of;
 * - departed locks: none stays at a master, and those a surviving master
 *   held are dropped;
 * - every operation settles at most once (and, at quiescence, exactly once).
 */
import { expect } from 'vitest';
import type { LockMode } from '../src/modes.js';
import type { Message } from '../src/protocol/messages.js';
import { DlmState, type Effect, type Member, TOKEN_ROUND_SPAN } from '../src/protocol/state.js';
import { Invariants } from './invariants.js';

export interface WorldNode {
  num: number;
  inc: number;
  alive: boolean;
  s: DlmState;
  /** Membership rounds not yet delivered to this node. */
  rounds: Array<{ round: number; members: Member[] }>;
}

export class World {
  readonly nodes = new Map<number, WorldNode>();
  /** key `from:inc>to:inc` → FIFO. */
  readonly queues = new Map<string, Message[]>();
  transition = 0;
  private nextInc = 100;
  private nextOp = 1;
  readonly settled = new Map<string, number>();
  readonly check = new Invariants();
  readonly deadIncarnations = new Set<string>();
  /** Locks of dead incarnations → the master that held them when they died. */
  readonly mustDepart = new Map<string, string>();
  /** Every effect, with the node that produced it. */
  readonly events: Array<Effect & { at: number }> = [];
  /** Every operation started, by number: the incarnation that started it. */
  readonly ops = new Map<number, string>();

  constructor(
    nums: number[],
    readonly limits = { maxLocks: 1000, maxResources: 1000 },
  ) {
    for (const n of nums) this.add(n);
    this.changeMembership();
  }

  private add(num: number): WorldNode {
    const node: WorldNode = { num, inc: this.nextInc++, alive: true, s: new DlmState(num, this.limits), rounds: [] };
    node.s.begin(node.inc);
    this.nodes.set(num, node);
    return node;
  }

  get live(): WorldNode[] {
    return [...this.nodes.values()].filter((n) => n.alive);
  }

  node(n: number): WorldNode {
    return this.nodes.get(n)!;
  }

  /** A transition that changes the member set: every live node will hear of the round. */
  changeMembership(): void {
    this.transition++;
    const members = this.live.map((n) => ({ node: n.num, incarnation: n.inc }));
    for (const n of this.live) n.rounds.push({ round: this.transition, members });
  }

  crash(num: number): void {
    const n = this.node(num);
    // The dead node's locks a live master holds now, in the latest round: each must be dropped
    // exactly once. (A master still behind may hand the lock on in an older round first, to a
    // node that may die with it; and only the last crash is checked, for the same reason.)
    this.mustDepart.clear();
    for (const l of n.s.ownedLocks()) {
      for (const m of this.live) {
        if (m === n || m.s.round !== this.transition || !m.s.complete) continue;
        if (!m.s.masteredResources().get(l.resource)?.find(num, n.inc, l.id)) continue;
        this.mustDepart.set(`${num}:${n.inc}:${l.id}`, `${m.num}:${m.inc}`);
      }
    }
    n.alive = false;
    this.deadIncarnations.add(`${num}:${n.inc}`);
    for (const k of [...this.queues.keys()]) if (k.startsWith(`${num}:${n.inc}>`) || k.includes(`>${num}:${n.inc}`)) this.queues.delete(k);
    this.changeMembership();
  }

  /** True when every live node finished a round in which `num` (any former incarnation) is no member: the CLMS cleanup barrier. */
  cleanedUp(num: number): boolean {
    return this.live.every((n) => n.s.complete && !n.s.members.some((m) => m.node === num));
  }

  restart(num: number): WorldNode {
    const n = this.add(num);
    this.changeMembership();
    return n;
  }

  // ---------------------------------------------------------------- inputs

  request(num: number, resource: string, mode: LockMode, noQueue = false): { op: number; id: number } {
    const op = this.startOp(num);
    const id = this.input(num, (s) => s.request(op, resource, mode, noQueue));
    return { op, id };
  }

  convert(num: number, id: number, mode: LockMode, noQueue = false, value?: Uint8Array): number {
    const op = this.startOp(num);
    this.input(num, (s) => s.convert(op, id, mode, noQueue, value));
    return op;
  }

  unlock(num: number, id: number, value?: Uint8Array): number {
    const op = this.startOp(num);
    this.input(num, (s) => s.unlock(op, id, value));
    return op;
  }

  private startOp(num: number): number {
    const op = this.nextOp++;
    this.ops.set(op, `${num}:${this.node(num).inc}`);
    return op;
  }

  /** Operations of live incarnations that never settled. */
  unsettled(): number[] {
    const live = new Set(this.live.map((n) => `${n.num}:${n.inc}`));
    return [...this.ops].filter(([op, who]) => live.has(who) && !this.settled.has(`${who}:${op}`)).map(([op]) => op);
  }

  quorum(num: number, ok: boolean): void {
    this.input(num, (s) => s.setQuorum(ok));
  }

  cancel(num: number, id: number): void {
    this.input(num, (s) => s.cancel(id, 'DLM_ERR_CANCELLED'));
  }

  /** Deliver the next membership round to `num`; false when none waits. */
  deliverRound(num: number): boolean {
    const n = this.node(num);
    const r = n.rounds.shift();
    if (!r) return false;
    this.input(num, (s) => s.membership(r.round, r.members, n.inc));
    return true;
  }

  /** Deliver the head of queue `key`; false when it is empty. */
  deliver(key: string): boolean {
    const q = this.queues.get(key);
    const msg = q?.shift();
    if (!msg) return false;
    if (q!.length === 0) this.queues.delete(key);
    const [from, to] = key.split('>') as [string, string];
    const [fn, fi] = from.split(':').map(Number) as [number, number];
    const [tn, ti] = to.split(':').map(Number) as [number, number];
    const target = this.node(tn);
    if (!target.alive || target.inc !== ti) return true;
    this.input(tn, (s) => s.receive({ node: fn, incarnation: fi }, msg));
    return true;
  }

  /** Deliver everything (rounds first, then messages) until nothing moves; bounded. */
  settle(max = 100_000): void {
    for (let i = 0; i < max; i++) {
      let moved = false;
      for (const n of this.live) while (this.deliverRound(n.num)) moved = true;
      const keys = [...this.queues.keys()];
      for (const k of keys) moved = this.deliver(k) || moved;
      if (!moved) return;
    }
    throw new Error('the world did not settle');
  }

  private input<T>(num: number, f: (s: DlmState) => T): T {
    const n = this.node(num);
    if (!n.alive) throw new Error(`node ${num} is down`);
    const r = f(n.s);
    for (const e of n.s.take()) this.effect(n, e);
    this.checkSafety();
    return r;
  }

  // ---------------------------------------------------------------- checkers

  private effect(n: WorldNode, e: Effect): void {
    this.events.push({ ...e, at: n.num });
    switch (e.type) {
      case 'send': {
        const to = this.node(e.to);
        // The driver sends only to members of the round, as the round names them.
        const k = `${n.num}:${n.inc}>${e.to}:${n.s.members.find((m) => m.node === e.to)?.incarnation ?? to.inc}`;
        let q = this.queues.get(k);
        if (!q) this.queues.set(k, (q = []));
        q.push(e.msg);
        return;
      }
      case 'settle': {
        const k = `${n.num}:${n.inc}:${e.op}`;
        const c = (this.settled.get(k) ?? 0) + 1;
        expect(c, `operation ${k} settled twice`).toBe(1);
        this.settled.set(k, c);
        return;
      }
      case 'granted':
        // An owner takes a grant only in the round its token is of.
        expect(Math.floor(e.token / TOKEN_ROUND_SPAN), `node ${n.num} took token ${e.token} in round ${e.round}`).toBe(e.round);
        this.check.granted(e);
        return;
      case 'departed':
        this.check.departedLock(e.node, e.incarnation, e.id, this.deadIncarnations.has(`${e.node}:${e.incarnation}`));
        return;
      default:
        return;
    }
  }

  /** Never two incompatible locks held by live owners on one resource. */
  checkSafety(): void {
    this.check.safety(this.live.map((n) => ({ who: n.num, locks: n.s.ownedLocks() })));
  }

  /** Every lock a surviving master held for a node that died was dropped (once: the effect checker refuses twice). */
  checkDeparted(): void {
    const live = new Set(this.live.map((n) => `${n.num}:${n.inc}`));
    for (const [lock, master] of this.mustDepart) if (live.has(master)) expect(this.check.departed.has(lock), `departed lock ${lock} held by ${master} never released`).toBe(true);
  }

  /** No master keeps a lock of a dead incarnation. */
  checkNoDeadLocks(): void {
    for (const n of this.live) {
      for (const r of n.s.masteredResources().values()) {
        for (const l of [...r.granted, ...r.waiting]) expect(this.deadIncarnations.has(`${l.node}:${l.incarnation}`), `${n.num} still masters a lock of dead ${l.node}:${l.incarnation}`).toBe(false);
      }
    }
  }
}
