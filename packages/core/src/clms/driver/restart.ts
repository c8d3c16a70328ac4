/**
 * Incarnations: a node declared down stops acting as a member, runs its
 * nodedown callbacks for everyone, and starts again as a new incarnation
 * (docs/membership.md, "Declared down while alive"). One restart at a
 * time, whoever asks: two at once would each start a new incarnation on
 * the same address.
 */
import type { EventEmitter } from 'eventemitter3';
import type { Ics } from '../../ics/ics.js';
import type { ServiceRegistration } from '../../ics/types.js';
import type { Logger } from '../../logging/index.js';
import type { Message as CoreInput, Phase } from '../protocol/core.js';
import { History } from '../protocol/history.js';
import type { ClusterEvents, Transition } from '../types.js';
import type { Callbacks } from './callbacks.js';

export interface RestartPort {
  readonly nodeNum: number;
  readonly log: Logger;
  readonly emitter: Pick<EventEmitter<ClusterEvents>, 'emit'>;
  readonly callbacks: Pick<Callbacks, 'markCleaned' | 'runCallbacks' | 'settled' | 'newIncarnation'>;
  /** Key services (CLMS does not import them: docs/architecture.md). */
  readonly keys: { stopAll(why: string): void };
  readonly autoRejoin: boolean;
  readonly historyLimit: number;
  incarnation(): number;
  phase(): Phase;
  /** close() was called, ever: the phase may have been set over 'closed' since; this never goes back. */
  closed(): boolean;
  setPhase(p: Phase): void;
  history(): History;
  step(input: CoreInput): void;
  /** Cancel every timer of this incarnation and end its sleeps. */
  stopTimers(): void;
  /** The endpoint of the current incarnation. */
  ics(): Ics;
  /** Begin the next incarnation with the application's services of the former one. */
  boot(carried: ServiceRegistration[]): Promise<void>;
  close(): Promise<void>;
}

export class Incarnations {
  /** The restart under way, if any, the incarnation it replaces, and whether the next one asked for another. */
  private restarting: Promise<void> | undefined;
  private restartingFrom: number | undefined;
  private restartAgain = false;

  constructor(private readonly p: RestartPort) {}

  /** We were declared down: stop acting as a member, clean up, rejoin as a new incarnation. */
  async evicted(t: Transition): Promise<void> {
    const p = this.p;
    if (p.closed() || p.phase() === 'rejoining') return;
    p.log.warn({ term: t.term }, 'declared down by the cluster: rejoining as a new incarnation');
    // A master that commits its own down (a carried entry) is master no more:
    // its queued proposals fail now (handlers awaiting them must end before
    // our cleanups can, and the restart waits for those).
    p.step({ type: 'step-down', why: 'declared down by the cluster' });
    p.setPhase('rejoining');
    p.keys.stopAll('this node was declared down');
    p.emitter.emit('evicted', { incarnation: p.incarnation() });
    // Every member is gone for this incarnation: their nodedown callbacks run
    // side by side, each member's in band order (C2), as when members go down
    // one by one. One after another, 31 members' slow callbacks kept a node of
    // a 32-node cluster from rejoining for minutes (sim seed 2 at 32 nodes, L1).
    const c = p.callbacks;
    const gone = p.history().members().filter((m) => m.node !== p.nodeNum && (m.state === 'Up' || m.state === 'ComingUp' || m.state === 'ShuttingDown'));
    await Promise.all(gone.filter((m) => c.markCleaned(m.node, m.incarnation)).map((m) => c.runCallbacks('nodedown', m.node, m.incarnation, t)));
    if (!p.autoRejoin) {
      await p.close();
      return;
    }
    await this.restart();
  }

  /**
   * Start again as a new incarnation. One restart at a time: several paths
   * can ask at once (an eviction, a dead history, a history that differs),
   * and two would each start a new incarnation on the same address. Never
   * rejects: a restart that fails (the address taken) is logged and the
   * node closes, rather than an unhandled rejection in the application.
   */
  restart(): Promise<void> {
    if (this.restarting) {
      // Asked by the new incarnation (its join found a dead history): once more after this one.
      if (this.p.incarnation() !== this.restartingFrom) this.restartAgain = true;
      return this.restarting;
    }
    this.restarting = (async () => {
      try {
        do {
          this.restartAgain = false;
          this.restartingFrom = this.p.incarnation();
          await this.doRestart();
        } while (this.restartAgain && !this.p.closed());
      } catch (err) {
        this.p.log.error({ err: (err as Error).message }, 'could not start again as a new incarnation: closing');
        await this.p.close().catch(() => {});
      } finally {
        this.restarting = undefined;
      }
    })();
    return this.restarting;
  }

  private async doRestart(): Promise<void> {
    const p = this.p;
    // Nodedown callbacks under way finish as this incarnation's, in band
    // order, before the next one starts (it begins with no cleanups of its own).
    await p.callbacks.settled();
    // Closed, not the phase: a phase written over 'closed' (a leave() that went on) must not start a closed node again.
    if (p.closed()) return;
    p.stopTimers();
    const old = p.ics();
    // Nothing the former incarnation meant to commit may reach the new history.
    p.step({ type: 'reset', why: 'restarting as a new incarnation', history: new History(p.historyLimit) });
    // What the former incarnation hosted ends with it (K5; evicted() did so already, other restarts did not).
    p.keys.stopAll('restarting as a new incarnation');
    p.callbacks.newIncarnation();
    // The application's services live on in the next incarnation.
    const carried = old.registrations();
    await old.close();
    if (p.closed()) return;
    p.setPhase('idle');
    await p.boot(carried);
  }
}
