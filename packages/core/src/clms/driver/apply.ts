/**
 * The driver's half of the core's `apply` effect: a transition is in the
 * history; this node tells its application (events), its key services,
 * and runs the subsystem callbacks and cleanups it calls for. (Barriers
 * and owed reports were settled by the core as it applied the transition:
 * protocol/reports.ts.)
 */
import type { EventEmitter } from 'eventemitter3';
import type { Logger } from '../../logging/index.js';
import type { History } from '../protocol/history.js';
import type { Report } from '../protocol/messages.js';
import { type ClusterEvents, LEGAL_MOVES, type MemberInfo, type NodeState, type Transition } from '../types.js';
import type { Callbacks } from './callbacks.js';
import type { Events } from './events.js';

export interface ApplyPort {
  readonly nodeNum: number;
  readonly log: Logger;
  readonly emitter: Pick<EventEmitter<ClusterEvents>, 'emit'>;
  readonly events: Pick<Events, 'notify'>;
  readonly callbacks: Pick<Callbacks, 'markNodeup' | 'runCallbacks' | 'emitNodeup' | 'cleanup'>;
  /** Key services (CLMS does not import them: docs/architecture.md). */
  readonly keys: { applied(t: Transition): void; place(): void };
  incarnation(): number;
  isMaster(): boolean;
  history(): History;
  /** The detector forgets a node that is Down. */
  forget(node: number): void;
  /** The `leave()` under way, if any. */
  leaving(): { resolve(): void } | undefined;
  /** This incarnation was declared down. */
  evicted(t: Transition): Promise<void>;
  report(r: Report): void;
}

/** The core committed `t` to the history (it was `before`): events, callbacks, barriers, reports. */
export function applied(p: ApplyPort, t: Transition, before: NodeState, info: MemberInfo): void {
  if (t.kind === 'state' && !LEGAL_MOVES[before].includes(t.to) && before !== t.to) {
    p.log.error({ t, before }, 'illegal transition from the master: applied anyway to stay in step');
  }
  p.events.notify(t);
  p.keys.applied(t);
  if (p.isMaster()) p.keys.place();
  if (t.kind !== 'state') return;
  if (t.node === p.nodeNum) return appliedSelf(p, t);
  const c = p.callbacks;
  switch (t.to) {
    case 'ComingUp':
      void (c.markNodeup(t.node, t.incarnation) ? c.runCallbacks('nodeup', t.node, t.incarnation, t) : Promise.resolve()).then(() =>
        p.report({ kind: 'nodeup-done', node: t.node, incarnation: t.incarnation }),
      );
      break;
    case 'Up':
      c.emitNodeup(info);
      break;
    case 'GoingDown':
    case 'ShuttingDown':
      // ICS errors out the calls to the node first (synchronously, as
      // cleanup begins), so a 'nodedown' listener finds none still pending.
      void c.cleanup(t);
      p.emitter.emit('nodedown', info);
      break;
    case 'Down':
      p.forget(t.node);
      break;
  }
}

function appliedSelf(p: ApplyPort, t: Transition): void {
  if (t.incarnation !== p.incarnation()) return;
  if (t.to === 'Up') p.callbacks.emitNodeup(p.history().member(p.nodeNum)!);
  // A leaver that sees itself out is done, whichever way it went (leave() closes it).
  const leaving = p.leaving();
  if ((t.to === 'ShuttingDown' || t.to === 'GoingDown') && leaving) return leaving.resolve();
  if (t.to === 'GoingDown') void p.evicted(t);
  if (t.to === 'ShuttingDown') p.report({ kind: 'cleanup-done', node: p.nodeNum, incarnation: p.incarnation() });
}
