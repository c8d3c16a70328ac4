/**
 * What a node tells its application: the typed events, the `watch()`
 * stream and the decision records. Every transition, master or quorum
 * change goes to both the event listeners and the watchers, in the order
 * the node performs them.
 */
import type { EventEmitter } from 'eventemitter3';
import type { Logger } from '../../logging/index.js';
import type { ClusterEvents, DecisionRecord, Transition, WatchEvent } from '../types.js';

/** Decision records kept in memory (`decisionRecords()`), newest last. */
const MAX_DECISIONS = 256;

export interface EventsPort {
  readonly emitter: Pick<EventEmitter<ClusterEvents>, 'emit' | 'listenerCount'>;
  readonly log: Logger;
}

export class Events {
  /** The listeners of `watch()` streams. */
  readonly watchers = new Set<(e: WatchEvent) => void>();
  readonly decisions: DecisionRecord[] = [];

  constructor(private readonly p: EventsPort) {}

  /** `replayed`: history a late joiner receives with its join, not a transition as it commits (docs/membership.md). */
  notify(t: Transition, replayed = false): void {
    // Nobody to tell: no copy marked `replayed` (a joiner is told the whole history it installs).
    if (this.watchers.size === 0 && this.p.emitter.listenerCount('transition') === 0) return;
    const e = replayed ? { ...t, replayed: true } : t;
    this.p.emitter.emit('transition', e);
    this.broadcast({ type: 'transition', transition: e });
  }

  broadcast(e: WatchEvent): void {
    for (const w of this.watchers) w(e);
  }

  record(r: DecisionRecord): void {
    this.decisions.push(r);
    if (this.decisions.length > MAX_DECISIONS) this.decisions.shift();
    this.p.log.info({ decision: r }, `decision: ${r.kind}${r.node !== undefined ? ` node ${r.node}` : ''}: ${r.rule}`);
    this.p.emitter.emit('decision', r);
  }
}
