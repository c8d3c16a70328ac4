/**
 * Subsystem callbacks (docs/membership.md, "Subsystems"): nodeup and
 * nodedown callbacks run by band, then in registration order, exactly once
 * per (node, incarnation) in each incarnation of this node (C2), and the
 * report the master's barrier waits for once they are done. A callback
 * that throws is reported (`callback-error`) and the next one runs.
 *
 * What ran is kept per incarnation of this node: a restart begins with
 * none (`newIncarnation`), after every cleanup of the former one ended
 * (`settled`), so callbacks never straddle two incarnations.
 */
import type { EventEmitter } from 'eventemitter3';
import { ClusterInfraError, InvalidArgumentError } from '../../errors/index.js';
import type { Logger } from '../../logging/index.js';
import type { History } from '../protocol/history.js';
import type { Report } from '../protocol/messages.js';
import type { ClusterEvents, MemberInfo, NodeEvent, Subsystem, Transition } from '../types.js';

export interface CallbacksPort {
  readonly nodeNum: number;
  readonly maxSubsystems: number;
  readonly log: Logger;
  readonly emitter: Pick<EventEmitter<ClusterEvents>, 'emit'>;
  /** Aborts when the node closes; every callback gets it. */
  readonly signal: AbortSignal;
  incarnation(): number;
  history(): History;
  term(): number;
  /** ICS errors out every call to (node, incarnation) and refuses it from now on. */
  nodeDown(node: number, incarnation: number): Promise<void>;
  /** This node owes the master `r` (sent until acknowledged). */
  report(r: Report): void;
}

/** The transition a member's callbacks get when the history no longer holds the one that made it what it is. */
export function syntheticTransition(m: MemberInfo, term: number): Transition {
  return { number: m.since, term, kind: 'state', node: m.node, incarnation: m.incarnation, from: 'ComingUp', to: m.state, cause: 'joined', time: 0 };
}

/** `runCallbacks` with no subsystem registered. */
const RAN_NONE: Promise<void> = Promise.resolve();

/** What this incarnation did for a (node, incarnation): ran its nodeup callbacks, gave its nodeup event, cleaned it up. */
const RAN_NODEUP = 1;
const GAVE_EVENT = 2;
const CLEANED = 4;

/** Incarnations of one node whose marks are kept: a node restarted more often than this forgets the oldest. */
const MARKED_INCARNATIONS = 8;

/**
 * Flags per (node, incarnation), without a string key per question (a
 * formation asks N² of them: every member about every joiner). Bounded: the
 * last MARKED_INCARNATIONS incarnations of each node (nothing asks about an
 * older one: its transitions were applied long before, each once).
 */
export class Marks {
  /** By node (a small integer key), its incarnations' flags: one or two incarnations each, found by a scan. */
  private readonly byNode = new Map<number, { incarnation: number; flags: number }[]>();

  has(node: number, incarnation: number, flag: number): boolean {
    const list = this.byNode.get(node);
    if (list !== undefined) for (const m of list) if (m.incarnation === incarnation) return (m.flags & flag) !== 0;
    return false;
  }

  /** Set `flag`; true when it was not set before. */
  add(node: number, incarnation: number, flag: number): boolean {
    let list = this.byNode.get(node);
    if (list === undefined) this.byNode.set(node, (list = []));
    for (const m of list) {
      if (m.incarnation !== incarnation) continue;
      if ((m.flags & flag) !== 0) return false;
      m.flags |= flag;
      return true;
    }
    list.push({ incarnation, flags: flag });
    if (list.length > MARKED_INCARNATIONS) list.shift();
    return true;
  }
}

export class Callbacks {
  private readonly subsystems: Required<Subsystem>[] = [];
  /** (node, incarnation) pairs whose callbacks (and nodeup event) this incarnation ran. */
  private marks = new Marks();
  private cleanups = new Map<string, Promise<void>>();
  /** The incarnation whose own nodeup (callbacks for every member, then the report) was started. */
  private ownNodeupFor: number | undefined;

  constructor(private readonly p: CallbacksPort) {}

  register(s: Subsystem): () => void {
    if (typeof s !== 'object' || s === null || typeof s.name !== 'string' || s.name.length === 0 || s.name.length > 200) {
      throw new InvalidArgumentError('registerSubsystem: name must be a string of 1–200 characters');
    }
    // A band that is not a number would leave the band order undefined (C1).
    if (s.band !== undefined && !Number.isFinite(s.band)) throw new InvalidArgumentError(`registerSubsystem ${s.name}: band must be a finite number`);
    for (const phase of ['nodeup', 'nodedown'] as const) {
      if (s[phase] !== undefined && typeof s[phase] !== 'function') throw new InvalidArgumentError(`registerSubsystem ${s.name}: ${phase} must be a function`);
    }
    if (this.subsystems.length >= this.p.maxSubsystems) {
      throw new ClusterInfraError('CONFIG_ERR_INVALID_OPTION', `at most ${this.p.maxSubsystems} subsystems (maxSubsystems)`);
    }
    if (this.subsystems.some((x) => x.name === s.name)) {
      throw new ClusterInfraError('CONFIG_ERR_INVALID_OPTION', `a subsystem named ${s.name} is registered already`);
    }
    const entry: Required<Subsystem> = { name: s.name, band: s.band ?? 0, nodeup: s.nodeup ?? (() => {}), nodedown: s.nodedown ?? (() => {}) };
    this.subsystems.push(entry);
    // Stable sort: by band, then registration order.
    this.subsystems.sort((a, b) => a.band - b.band);
    return () => {
      const i = this.subsystems.indexOf(entry);
      if (i >= 0) this.subsystems.splice(i, 1);
    };
  }

  /** Resolves when every cleanup this incarnation began has ended. */
  settled(): Promise<unknown> {
    return Promise.all([...this.cleanups.values()]);
  }

  /** A new incarnation of this node: it has run no callbacks yet. */
  newIncarnation(): void {
    this.marks = new Marks();
    this.cleanups = new Map();
  }

  /**
   * Error out ICS for the node, run nodedown callbacks by band, report (C2).
   * A second trigger for the same (node, incarnation), e.g. ShuttingDown then
   * GoingDown, waits for the first cleanup and reports again: callbacks run
   * once, the master hears as often as it asks.
   */
  async cleanup(t: Transition): Promise<void> {
    const key = `${t.node}:${t.incarnation}`;
    const incarnation = this.p.incarnation();
    const before = this.cleanups.get(key);
    // Registered before anything is awaited, ICS error-out included: a
    // restart that begins meanwhile waits for all of it (callbacks never
    // straddle two incarnations).
    const running = (async (): Promise<void> => {
      // ICS error-out every time (calls made since the last one settle too).
      await this.p.nodeDown(t.node, t.incarnation);
      if (before) await before;
      else if (this.markCleaned(t.node, t.incarnation)) await this.runCallbacks('nodedown', t.node, t.incarnation, t);
    })();
    this.cleanups.set(key, running);
    await running;
    // A report of a former incarnation's cleanup means nothing to the new one's master.
    if (this.p.incarnation() === incarnation) this.p.report({ kind: 'cleanup-done', node: t.node, incarnation: t.incarnation });
  }

  /**
   * A node that joined runs nodeup for every member it found in the history
   * it installed: the Up ones, and the ones still ComingUp (their barrier
   * counts this node too: it was ComingUp when they were admitted), then
   * reports for each and for itself.
   */
  async runOwnNodeup(me: MemberInfo): Promise<void> {
    const p = this.p;
    if (this.ownNodeupFor === p.incarnation()) return;
    this.ownNodeupFor = p.incarnation();
    const t = p.history().get(me.since);
    for (const m of p.history().members()) {
      if (m.node === p.nodeNum || (m.state !== 'Up' && m.state !== 'ComingUp')) continue;
      if (this.markNodeup(m.node, m.incarnation)) {
        // With no subsystem there is nothing to wait for: a joiner of a big
        // cluster goes through every member in one turn instead of a
        // microtask each (256 nodes forming made 32 k such awaits).
        const ran = this.runCallbacks('nodeup', m.node, m.incarnation, p.history().get(m.since) ?? t ?? syntheticTransition(m, p.term()));
        if (ran !== RAN_NONE) await ran;
      }
      // Up before we joined: its Up came in the history, not live, so the event is ours to give (after our callbacks, as for any member).
      if (m.state === 'Up' && this.ownNodeupFor === p.incarnation()) this.emitNodeup(p.history().member(m.node) ?? m);
      if (m.state === 'ComingUp') p.report({ kind: 'nodeup-done', node: m.node, incarnation: m.incarnation });
    }
    p.report({ kind: 'nodeup-done', node: p.nodeNum, incarnation: p.incarnation() });
  }

  /** The `nodeup` event, once per (node, incarnation) in this incarnation: live, or for members already Up when we joined. */
  emitNodeup(info: MemberInfo): void {
    if (info.state !== 'Up' || !this.marks.add(info.node, info.incarnation, GAVE_EVENT)) return;
    this.p.emitter.emit('nodeup', info);
  }

  /** True the first time this incarnation runs nodeup callbacks for (node, incarnation). */
  markNodeup(node: number, incarnation: number): boolean {
    return this.marks.add(node, incarnation, RAN_NODEUP);
  }

  /** This incarnation ran (or is running) nodeup callbacks for (node, incarnation). */
  ranNodeup(node: number, incarnation: number): boolean {
    return this.marks.has(node, incarnation, RAN_NODEUP);
  }

  /** True the first time (node, incarnation) is cleaned up by this incarnation. */
  markCleaned(node: number, incarnation: number): boolean {
    return this.marks.add(node, incarnation, CLEANED);
  }

  /**
   * Run every subsystem's `phase` callback for (node, incarnation), by band.
   * With no subsystem it allocates nothing: a formation asks this of every
   * member about every joiner. (The promise it then returns is already
   * resolved, as the async path's would be: what awaits it goes on in the
   * same turn either way.)
   */
  runCallbacks(phase: 'nodeup' | 'nodedown', node: number, incarnation: number, t: Transition): Promise<void> {
    return this.subsystems.length === 0 ? RAN_NONE : this.runEach(phase, node, incarnation, t);
  }

  private async runEach(phase: 'nodeup' | 'nodedown', node: number, incarnation: number, t: Transition): Promise<void> {
    const event: NodeEvent = { node, incarnation, transition: t, signal: this.p.signal };
    for (const s of [...this.subsystems]) {
      try {
        await s[phase](event);
      } catch (error) {
        // A failing callback is reported; the barrier waits for nothing more from it.
        this.p.log.error({ subsystem: s.name, phase, node, err: (error as Error)?.message }, 'subsystem callback failed');
        this.p.emitter.emit('callback-error', { subsystem: s.name, phase, node, error });
      }
    }
  }
}
