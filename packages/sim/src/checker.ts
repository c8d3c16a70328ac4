/**
 * The invariant checker. It watches every node object (every incarnation)
 * through its events and its history, keeps a canonical history per cluster
 * "generation" (a history that started at transition 1 with a given
 * formation), and fails on the first broken invariant, named by its ID from
 * TESTING.md. It never throws into the code under test: it records the
 * first violation and the simulator stops at its next step.
 *
 * Adding an invariant: write a check here (or in sim.ts for RPC and
 * liveness), call `this.fail('ID', 'what was seen')`, and add the ID to
 * `InvariantId`. docs/testing.md has the details.
 */
import { type ClusterNode, LEGAL_MOVES, type NodeState, type Transition } from '@clusterinfra/core';

export type InvariantId =
  | 'M1' | 'M2' | 'M4' | 'M5' | 'M6' | 'M7' | 'M8' | 'C1' | 'C2' | 'K1' | 'K2' | 'K3' | 'K4' | 'K5' | 'R1' | 'R2' | 'R7' | 'L1' | 'L3'
  // The workloads' own (workloads/): the lock manager's D1–D4, the registry's RG1–RG5.
  | 'D1' | 'D2' | 'D3' | 'D4' | 'RG1' | 'RG2' | 'RG3' | 'RG4' | 'RG5';

export interface Violation {
  invariant: InvariantId;
  detail: string;
  /** Virtual time (ms) when it was seen. */
  at: number;
}

/** Subsystems registered on every node, and the order their nodedown callbacks must run in (band, then registration). */
export const SUBSYSTEMS = [
  { name: 'sim-late', band: 5 },
  { name: 'sim-early', band: 0 },
  { name: 'sim-early2', band: 0 },
] as const;
export const NODEDOWN_ORDER = ['sim-early', 'sim-early2', 'sim-late'];

const obsKey = (node: number, incarnation: number): string => `${node}:${incarnation}`;

/** Everything a transition says, as one string (M2 compares these). */
export function transitionKey(t: Transition): string {
  return `${t.number}|${t.term}|${t.kind}|${t.node}|${t.incarnation}|${t.from}|${t.to}|${t.cause}|${t.time}|${t.address ?? ''}|${t.meta === undefined ? '' : JSON.stringify(t.meta)}`;
}

/** `transitionKey(a) === transitionKey(b)`, field by field, without building either string (M2 compares every transition of every node). */
export function sameTransition(a: Transition, b: Transition): boolean {
  return (
    a.number === b.number &&
    a.term === b.term &&
    a.kind === b.kind &&
    a.node === b.node &&
    a.incarnation === b.incarnation &&
    a.from === b.from &&
    a.to === b.to &&
    a.cause === b.cause &&
    a.time === b.time &&
    (a.address ?? '') === (b.address ?? '') &&
    (a.meta === b.meta || (a.meta !== undefined && b.meta !== undefined && JSON.stringify(a.meta) === JSON.stringify(b.meta)))
  );
}

export function shortTransition(t: Transition): string {
  return `#${t.number} e${t.term} ${t.kind} n${t.node}/${t.incarnation % 100000} ${t.from}->${t.to} (${t.cause})`;
}

interface Observer {
  key: string;
  node: number;
  incarnation: number;
  /** Number of the last 'transition' event (M1). */
  lastEvent: number;
  /** History ingested up to here. */
  cursor: number;
  gen: string | undefined;
  /** The transition 1 object `gen` was computed from: the same object has the same key. */
  firstSeen: Transition | undefined;
  /** The history's name, for a node whose bounded history no longer holds transition 1. */
  historyId?: string;
  lastTerm: number;
  /** Virtual time of its first 'transition' event: a joiner's events at that instant replay the history it installed. */
  firstEventAt: number | undefined;
  /** The last burst of replayed events (a snapshot installed): up to which number, and when. */
  burst?: { to: number; at: number };
}

interface Generation {
  key: string;
  /** The history's transitions as first seen, by number - 1. */
  canon: Transition[];
  states: Map<number, { state: NodeState; incarnation: number }>;
  seenIncs: Map<number, Set<number>>;
  downIncs: Map<number, Set<number>>;
  termMaster: Map<number, number>;
  /** Key services as this history places them (K2, K4). */
  keyServices: Map<string, CanonicalKeyService>;
}

/** Where a key service lives according to one history. */
export interface CanonicalKeyService {
  epoch: number;
  host: number | undefined;
  incarnation: number;
  phase: 'assigned' | 'ready' | 'vacant' | 'halted';
  handoverFrom: number | undefined;
  /** Transition number of the last change. */
  since: number;
}

interface Cleanup {
  started: string[];
  running: boolean;
}

export class Checker {
  violation: Violation | undefined;
  private readonly observers = new Map<string, Observer>();
  /** The observer each node object was last seen as (a node restarts as a new incarnation in the same object). */
  private readonly lastObserver = new WeakMap<ClusterNode, Observer>();
  private readonly gens = new Map<string, Generation>();
  /** A history's name (ClusterNode.historyId) → its generation's key. */
  private readonly genById = new Map<string, string>();
  /** x:inc → observers that applied x's GoingDown/ShuttingDown live and owe its cleanup (C1, C2). */
  private readonly owed = new Map<string, Set<string>>();
  /** obs|x:inc → callbacks seen (C2). */
  private readonly cleanups = new Map<string, Cleanup>();
  /** Transitions first seen (canonical), for speed figures. */
  committed = 0;

  constructor(
    private readonly candidates: readonly number[],
    private readonly now: () => number,
    private readonly log: (line: string) => void,
    /** The node objects alive now (not crashed, not closed), by node number. */
    private readonly live: () => Iterable<ClusterNode>,
    private readonly isPaused: (node: number) => boolean,
  ) {}

  fail(invariant: InvariantId, detail: string): void {
    if (this.violation) return;
    this.violation = { invariant, detail, at: this.now() };
    this.log(`VIOLATION ${invariant}: ${detail}`);
  }

  private observer(node: ClusterNode): Observer {
    // Looked up several times per event and per step for every node: the
    // node object's last observer answers without building the key.
    const last = this.lastObserver.get(node);
    if (last !== undefined && last.incarnation === node.incarnation) return last;
    const key = obsKey(node.nodeNum, node.incarnation);
    let o = this.observers.get(key);
    if (!o) {
      o = { key, node: node.nodeNum, incarnation: node.incarnation, lastEvent: 0, cursor: 0, gen: undefined, firstSeen: undefined, lastTerm: 0, firstEventAt: undefined };
      this.observers.set(key, o);
    }
    this.lastObserver.set(node, o);
    return o;
  }

  // ------------------------------------------------------------ events

  /** A 'transition' event on `node` (M1, then the history checks). */
  onTransition(node: ClusterNode, t: Transition): void {
    const o = this.observer(node);
    // A joiner that applied some transitions live before its join installed
    // the master's snapshot is told about the rest too: no gap (once a known
    // bug, join-skips-events, now fixed and checked in every run).
    // One exception, a bounded history's: a node that announced transitions
    // before its join (a candidate that applied the founding as a follower)
    // and whose join answer comes when the master's history no longer holds
    // the ones in between starts from the snapshot, as any late joiner does;
    // it then holds nothing before t, so it could announce nothing before t.
    const resumed = t.number > o.lastEvent && t.number === node.firstTransition;
    if (o.lastEvent !== 0 && t.number !== o.lastEvent + 1 && !resumed) {
      this.fail('M1', `node ${node.nodeNum} (incarnation ${o.incarnation}) got transition ${t.number} after ${o.lastEvent}`);
    }
    o.lastEvent = t.number;
    // Applied live (not replayed from a join snapshot): the node's history
    // ends at t, and it is not the burst of events of the snapshot it installed.
    o.firstEventAt ??= this.now();
    // A history installed later (a joiner that had founding entries of its
    // own) replays in one burst too: events whose node is already further on.
    if (node.lastTransition > t.number) o.burst = { to: node.lastTransition, at: this.now() };
    const replayed = o.burst !== undefined && o.burst.to === t.number && o.burst.at === this.now();
    const live = node.lastTransition === t.number && this.now() !== o.firstEventAt && !replayed;
    if (live && t.kind === 'state' && (t.to === 'GoingDown' || t.to === 'ShuttingDown') && t.node !== node.nodeNum) {
      const k = obsKey(t.node, t.incarnation);
      // ShuttingDown then GoingDown is one cleanup: callbacks that already
      // finished for the first are not owed again for the second.
      const c = this.cleanups.get(`${o.key}|${k}`);
      const finished = c !== undefined && !c.running && c.started.length === NODEDOWN_ORDER.length;
      let s = this.owed.get(k);
      if (!s) this.owed.set(k, (s = new Set()));
      // A node that joined while x was already leaving never saw x up: it owes nothing for x's GoingDown either.
      const joinedLate = t.from === 'ShuttingDown' && c === undefined && !s.has(o.key);
      if (!finished && !joinedLate) s.add(o.key);
    }
    this.sampleTerm(node);
    this.ingest(node);
  }

  /** A 'master' event on `node` (M5, M6, M4). */
  onMaster(node: ClusterNode, info: { master: number | undefined; term: number }): void {
    if (info.master !== undefined && !this.candidates.includes(info.master)) {
      this.fail('M6', `node ${node.nodeNum} follows master ${info.master}, not a candidate (${this.candidates.join(',')})`);
    }
    this.sampleTerm(node);
    this.sampleMaster(node);
  }

  /** A nodedown callback starts on `node` for (x, inc) (C2: once, in band order). */
  callbackStart(node: ClusterNode, subsystem: string, x: number, inc: number): void {
    const k = `${obsKey(node.nodeNum, node.incarnation)}|${obsKey(x, inc)}`;
    let c = this.cleanups.get(k);
    if (!c) this.cleanups.set(k, (c = { started: [], running: false }));
    if (c.started.includes(subsystem)) {
      this.fail('C2', `nodedown callback ${subsystem} ran twice on node ${node.nodeNum} for node ${x} incarnation ${inc}`);
    } else if (NODEDOWN_ORDER[c.started.length] !== subsystem) {
      this.fail('C2', `nodedown callback ${subsystem} ran out of band order on node ${node.nodeNum} for node ${x} (after ${c.started.join(',') || 'nothing'})`);
    } else if (c.running) {
      this.fail('C2', `nodedown callback ${subsystem} started on node ${node.nodeNum} for node ${x} before ${c.started.at(-1)} finished`);
    }
    c.started.push(subsystem);
    c.running = true;
  }

  callbackEnd(observer: string, x: number, inc: number): void {
    const c = this.cleanups.get(`${observer}|${obsKey(x, inc)}`);
    if (!c) return;
    c.running = false;
    if (c.started.length === NODEDOWN_ORDER.length) this.owed.get(obsKey(x, inc))?.delete(observer);
  }

  // ------------------------------------------------------------ sampling (every step)

  /** Check every live node: terms (M5), masters (M4, M6), and its history (M2, M7, M8, C1). */
  step(): void {
    for (const n of this.live()) {
      this.sampleTerm(n);
      this.sampleMaster(n);
      this.ingest(n);
    }
  }

  private sampleTerm(node: ClusterNode): void {
    const o = this.observer(node);
    const term = node.currentTerm;
    if (term < o.lastTerm) this.fail('M5', `node ${node.nodeNum} (incarnation ${o.incarnation}) went from term ${o.lastTerm} to ${term}`);
    o.lastTerm = term;
  }

  private sampleMaster(node: ClusterNode): void {
    if (!node.isMaster) return;
    if (!this.candidates.includes(node.nodeNum)) this.fail('M6', `node ${node.nodeNum} is master but not a candidate`);
    const o = this.observer(node);
    if (o.gen === undefined) return;
    const g = this.gens.get(o.gen)!;
    this.claimTerm(g, node.currentTerm, node.nodeNum, 'acts as master');
  }

  private claimTerm(g: Generation, term: number, node: number, how: string): void {
    const holder = g.termMaster.get(term);
    if (holder === undefined) g.termMaster.set(term, node);
    else if (holder !== node) this.fail('M4', `two masters in term ${term}: node ${holder} and node ${node} (${how})`);
  }

  // ------------------------------------------------------------ history

  private ingest(node: ClusterNode): void {
    const first = node.transition(1);
    let gk: string;
    let o: Observer;
    if (first) {
      o = this.observer(node);
      // Nothing new since the last look (every step looks at every node):
      // the same history, and no transition past the cursor.
      if (first === o.firstSeen && node.lastTransition <= o.cursor) return;
      gk = transitionKey(first);
    } else {
      // A bounded history (the huge profile keeps the default historyLimit)
      // no longer holds transition 1: its name says which history it is,
      // and the transitions it still holds are compared as any others.
      const id = node.historyId;
      if (id === null) return;
      o = this.observer(node);
      if (id === o.historyId && node.lastTransition <= o.cursor) return;
      const known = this.genById.get(id);
      // A history never seen from its first transition: nothing to compare with.
      if (known === undefined) return;
      o.historyId = id;
      gk = known;
    }
    if (o.gen === undefined) o.gen = gk;
    else if (o.gen !== gk) {
      this.fail('M2', `node ${node.nodeNum} (incarnation ${o.incarnation}) replaced its history: ${first ? `transition 1 is now ${shortTransition(first)}` : `it now follows history ${node.historyId}`}`);
      return;
    }
    let g = this.gens.get(gk);
    if (!g) {
      g = { key: gk, canon: [], states: new Map(), seenIncs: new Map(), downIncs: new Map(), termMaster: new Map(), keyServices: new Map() };
      this.gens.set(gk, g);
      if (node.historyId !== null) this.genById.set(node.historyId, gk);
      this.newGeneration(g, node);
    }
    if (first) o.firstSeen = first;
    for (const t of node.transitions(o.cursor)) {
      const known = g.canon[t.number - 1];
      if (known !== undefined) {
        if (!sameTransition(known, t)) this.fail('M2', `node ${node.nodeNum} has ${shortTransition(t)}; others have ${transitionKey(known)}`);
      } else if (t.number === g.canon.length + 1) {
        g.canon.push(t);
        this.canonical(g, t);
      } else {
        this.fail('M1', `node ${node.nodeNum} holds transition ${t.number} but ${g.canon.length + 1} was never seen`);
      }
      o.cursor = t.number;
      if (this.violation) return;
    }
  }

  /** A second cluster history formed: fine when the old one is gone, split brain when its master still has quorum. */
  private newGeneration(g: Generation, former: ClusterNode): void {
    if (this.gens.size > 1) this.log(`new cluster history formed by node ${former.nodeNum}`);
    for (const n of this.live()) {
      const o = this.observers.get(obsKey(n.nodeNum, n.incarnation));
      if (!o?.gen || o.gen === g.key || this.isPaused(n.nodeNum)) continue;
      if (n.isMaster && n.hasQuorum) {
        this.fail('M4', `a second cluster history formed (by node ${former.nodeNum}) while node ${n.nodeNum} is master with quorum of another (term ${n.currentTerm})`);
      }
    }
  }

  /** Checks made once per transition of a history, in number order. */
  private canonical(g: Generation, t: Transition): void {
    this.committed++;
    this.log(`commit ${shortTransition(t)}`);
    const cur = g.states.get(t.node) ?? { state: 'NeverUp' as NodeState, incarnation: -1 };
    const seen = g.seenIncs.get(t.node) ?? new Set<number>();
    const down = g.downIncs.get(t.node) ?? new Set<number>();
    g.seenIncs.set(t.node, seen);
    g.downIncs.set(t.node, down);
    if (t.kind === 'keyservice' && t.keyService) this.canonicalKeyService(g, t, t.keyService);
    if (t.kind === 'master') {
      if (!this.candidates.includes(t.node)) this.fail('M6', `${shortTransition(t)}: node ${t.node} is not a candidate`);
      this.claimTerm(g, t.term, t.node, `transition ${t.number}`);
    }
    if ((t.to === 'ComingUp' || t.to === 'Up') && down.has(t.incarnation)) {
      this.fail('M8', `${shortTransition(t)}: incarnation ${t.incarnation} of node ${t.node} went down before`);
    } else if (t.kind !== 'state') {
      if (t.from !== cur.state || t.to !== cur.state) this.fail('M7', `${shortTransition(t)}: node ${t.node} is ${cur.state}`);
    } else if (t.to === 'ComingUp') {
      if (cur.state !== 'Down' && cur.state !== 'NeverUp') {
        this.fail('C1', `${shortTransition(t)}: former incarnation ${cur.incarnation} is ${cur.state}, not Down`);
      } else if (seen.has(t.incarnation)) {
        this.fail('M8', `${shortTransition(t)}: incarnation ${t.incarnation} of node ${t.node} was admitted before`);
      } else if (t.from !== cur.state) {
        this.fail('M7', `${shortTransition(t)}: node ${t.node} is ${cur.state}`);
      } else if (cur.incarnation !== -1) {
        // C1: every live member that applied the former incarnation's down must have finished its callbacks.
        const waiting = this.owed.get(obsKey(t.node, cur.incarnation));
        for (const ok of waiting ?? []) {
          const [on, oi] = ok.split(':').map(Number) as [number, number];
          const member = g.states.get(on);
          const alive = [...this.live()].some((n) => n.nodeNum === on && n.incarnation === oi);
          if (alive && member && member.incarnation === oi && (member.state === 'Up' || member.state === 'ComingUp')) {
            this.fail('C1', `${shortTransition(t)} while node ${on} (a member) has not finished its nodedown callbacks for incarnation ${cur.incarnation}`);
            break;
          }
        }
      }
    } else {
      if (t.incarnation !== cur.incarnation) this.fail('M7', `${shortTransition(t)}: node ${t.node}'s incarnation is ${cur.incarnation}`);
      else if (t.from !== cur.state || !LEGAL_MOVES[cur.state].includes(t.to)) this.fail('M7', `${shortTransition(t)}: illegal from ${cur.state}`);
    }
    seen.add(t.incarnation);
    if (t.to === 'GoingDown' || t.to === 'ShuttingDown' || t.to === 'Down') down.add(t.incarnation);
    g.states.set(t.node, { state: t.to, incarnation: t.incarnation });
  }

  /**
   * A key-service change, in history order. K2: epochs only grow (a new
   * assignment takes the next epoch; ready, vacant and halted keep it). K4:
   * a failover (not a hand-over, not a move the host asked for while Up)
   * goes to a new host only once the former host's incarnation is Down,
   * that is fenced and cleaned up after everywhere.
   */
  private canonicalKeyService(g: Generation, t: Transition, ks: NonNullable<Transition['keyService']>): void {
    const before = g.keyServices.get(ks.name);
    // A history's first change of a key service may start above 0: a founder carries the epochs it knew.
    const epoch = before?.epoch ?? (ks.phase === 'assigned' ? ks.epoch - 1 : ks.epoch);
    if (ks.phase === 'assigned') {
      if (ks.epoch !== epoch + 1 || ks.epoch < 1) this.fail('K2', `${shortTransition(t)}: ${ks.name} assigned at epoch ${ks.epoch} after epoch ${epoch}`);
      const old = before?.host !== undefined ? g.states.get(before.host) : undefined;
      if (before?.host !== undefined && old && old.incarnation === before.incarnation && old.state === 'GoingDown') {
        this.fail('K4', `${shortTransition(t)}: ${ks.name} epoch ${ks.epoch} assigned while its host node ${before.host} (epoch ${epoch}) is GoingDown, before its cleanup finished everywhere`);
      }
    } else if (ks.epoch !== epoch) {
      this.fail('K2', `${shortTransition(t)}: ${ks.name} ${ks.phase} at epoch ${ks.epoch}, current epoch ${epoch}`);
    } else if (ks.phase === 'ready' && (before?.host !== t.node || before.incarnation !== t.incarnation)) {
      this.fail('K2', `${shortTransition(t)}: ${ks.name} ready on node ${t.node}, but epoch ${epoch} was assigned to node ${before?.host ?? 'none'}`);
    }
    const hosted = ks.phase === 'assigned' || ks.phase === 'ready';
    g.keyServices.set(ks.name, {
      epoch: ks.epoch,
      host: hosted ? t.node : undefined,
      incarnation: t.incarnation,
      phase: ks.phase,
      handoverFrom: ks.phase === 'assigned' ? ks.handoverFrom : undefined,
      since: t.number,
    });
  }

  /** The history `node` follows (its first transition), if it has one. */
  generationOf(node: ClusterNode): string | undefined {
    return this.observers.get(obsKey(node.nodeNum, node.incarnation))?.gen;
  }

  /** Key service `name` as history `gen` places it (as far as the checker has seen). */
  keyService(gen: string, name: string): CanonicalKeyService | undefined {
    return this.gens.get(gen)?.keyServices.get(name);
  }

  // ------------------------------------------------------------ at the end

  /** C2 exactly once: every live observer that applied a down ran every callback for it. */
  checkCleanupsDone(): void {
    const alive = new Set([...this.live()].map((n) => obsKey(n.nodeNum, n.incarnation)));
    for (const [x, obs] of this.owed) {
      for (const o of obs) {
        if (!alive.has(o)) continue;
        const c = this.cleanups.get(`${o}|${x}`);
        this.fail('C2', `node ${o.split(':')[0]} never finished its nodedown callbacks for node ${x.split(':')[0]} (ran: ${c?.started.join(',') || 'none'})`);
        return;
      }
    }
  }

  /** Number of distinct cluster histories seen (re-formations after total loss). */
  get generations(): number {
    return this.gens.size;
  }
}
