/**
 * The driver's half of the effects the loop (loop.ts) leaves to its node:
 * events and records, what a commit does here (apply.ts), elections won,
 * the nodedown path's detector and policy hooks (protocol/detection.ts),
 * reports. What comes of them goes back to the core as inputs.
 */
import type { EventEmitter } from 'eventemitter3';
import type { Clock } from '../../clock/index.js';
import { detached } from '../../ics/context.js';
import type { Ics } from '../../ics/ics.js';
import type { Logger } from '../../logging/index.js';
import type { NodedownDetector } from '../detector.js';
import type { ResolvedClusterNodeOptions } from '../options.js';
import type { JoinTracker } from '../progress.js';
import type { LocalHealth } from '../protocol/awareness.js';
import type { Build, Effect, Message as CoreInput } from '../protocol/core.js';
import type { History } from '../protocol/history.js';
import { heardOnly } from '../reasons.js';
import type { ClusterEvents, HostedKeyService, Transition } from '../types.js';
import { type ApplyPort, applied } from './apply.js';
import type { Events } from './events.js';

export interface EffectsPort {
  readonly nodeNum: number;
  readonly log: Logger;
  readonly clock: Clock;
  readonly opts: Pick<ResolvedClusterNodeOptions, 'quorum' | 'formation' | 'confirmDown' | 'fence' | 'meta'>;
  readonly emitter: Pick<EventEmitter<ClusterEvents>, 'emit'>;
  readonly events: Pick<Events, 'record' | 'broadcast'>;
  /** Key services (CLMS does not import them: docs/architecture.md). */
  readonly keys: {
    quorumRegained(): void;
    quorumLost(): void;
    commitReady(name: string, epoch: number, from: number): void;
    reset(): void;
    rebuild(base: readonly Transition[], tail: readonly Transition[], appliedUpTo?: number): void;
    hosted(): HostedKeyService[];
  };
  readonly progress: Pick<JoinTracker, 'electionWaits'>;
  readonly detector: NodedownDetector;
  readonly health: LocalHealth;
  /** What a commit does here (apply.ts). */
  readonly applying: ApplyPort;
  history(): History;
  term(): number;
  incarnation(): number;
  /** The endpoint of the current incarnation. */
  ics(): Ics;
  step(input: CoreInput): void;
  elect(bootstrap: boolean): Promise<'refused' | undefined>;
  propose(build: Build): Promise<Transition | undefined>;
  /** This incarnation was declared down. */
  evicted(t: Transition): Promise<void>;
  /** The heartbeat interval's work (see NodeRuntime.tick). */
  tick(): void;
}

export class Effects {
  constructor(private readonly p: EffectsPort) {}

  /** What the core decided, performed: the driver's half of each effect. */
  perform(e: Effect): void {
    const p = this.p;
    switch (e.type) {
      case 'master':
        p.emitter.emit('master', { master: e.master, term: e.term });
        p.events.broadcast({ type: 'master', master: e.master, term: e.term });
        return;
      case 'stepped-down':
        p.log.warn({ term: p.term(), why: e.why }, 'stepping down as master');
        return;
      case 'quorum': {
        const rule = typeof e.rule === 'string' ? e.rule : heardOnly(p.nodeNum, new Set(e.rule.heard), e.rule.voters, e.rule.what);
        // A node without quorum stops hosting at once (K5).
        if (e.has) p.keys.quorumRegained();
        else p.keys.quorumLost();
        p.events.record({ kind: e.has ? 'quorum-regained' : 'quorum-lost', term: p.term(), time: p.clock.wallNow(), rule });
        p.emitter.emit('quorum', { hasQuorum: e.has });
        p.events.broadcast({ type: 'quorum', hasQuorum: e.has });
        return;
      }
      case 'apply':
        // Effects (callbacks, cleanup, reports) outlive the message that committed t.
        return detached(() => applied(p.applying, e.t, e.before, e.info));
      case 'installed':
        return p.keys.rebuild(e.base, [], e.had);
      case 'pre-vote':
        if (e.bootstrap) {
          const rule = e.allCandidates ? 'all-candidates' : p.opts.quorum === 'majority' ? p.opts.formation : 'quorum';
          p.progress.electionWaits(e.enough ? [] : e.voters.filter((v) => !e.granted.includes(v)), rule, e.voters);
        }
        return;
      case 'elected':
        return this.elected(e);
      default:
        return this.performDetection(e);
    }
  }

  /** The effects of the nodedown path and of reports (protocol/detection.ts, reports.ts). */
  private performDetection(e: Effect): void {
    const p = this.p;
    switch (e.type) {
      case 'consult-detector':
        if (p.detector.linkLost(e.node, p.clock.now())) p.step({ type: 'suspect', node: e.node, reason: e.reason, observers: e.observers });
        return;
      case 'heard-alive':
        return p.detector.heard(e.node, p.clock.now(), e.health);
      case 'check-detector': {
        const observer = String(p.nodeNum);
        const found = p.detector.check(p.clock.now(), e.members, p.health.multiplier);
        return p.step({ type: 'detector-checked', suspects: found.map((s) => ({ node: s.node, reason: s.reason, observers: { [observer]: `${p.detector.name}: ${s.reason}` }, deadline: s.deadline })) });
      }
      case 'stand':
        return void p.elect(false).then((outcome) => p.step({ type: 'stood', refused: outcome === 'refused' }));
      case 'evicted':
        return void p.evicted({ number: p.history().last, term: p.term(), kind: 'state', node: p.nodeNum, incarnation: p.incarnation(), from: 'Up', to: 'GoingDown', cause: e.cause, time: p.clock.wallNow() });
      case 'hook':
        return detached(() => this.runHook(e));
      case 'record': {
        const r = e.record;
        return p.events.record({ kind: 'down', node: r.node, term: r.term, time: p.clock.wallNow(), rule: r.rule, ...(r.detector ? { detector: p.detector.name } : {}), observers: r.observers, ...(r.tookMs !== undefined ? { tookMs: r.tookMs } : {}), ...(r.timings ? { timings: r.timings } : {}) });
      }
      case 'log':
        return e.level === 'error' ? p.log.error(e.data, e.message) : p.log.info(e.data, e.message);
      case 'master-silent':
        return p.tick();
      case 'ready-report':
        return p.keys.commitReady(e.keyService, e.epoch, e.from);
      default:
        return;
    }
  }

  /** Run a policy hook (confirmDown, fence); its answer goes back to the core. */
  private runHook(e: Extract<Effect, { type: 'hook' }>): void {
    const confirm = this.p.opts.confirmDown;
    const fence = this.p.opts.fence;
    const run = async (): Promise<boolean> => {
      if (e.hook === 'confirm-down') return Boolean(await confirm?.(e.node, e.reason));
      await fence?.(e.node, e.incarnation);
      return true;
    };
    void run().then(
      (ok) => this.p.step({ type: 'hook-answer', id: e.id, ok }),
      (err: unknown) => this.p.step({ type: 'hook-answer', id: e.id, ok: false, error: (err as Error)?.message }),
    );
  }

  private elected(e: Extract<Effect, { type: 'elected' }>): void {
    const p = this.p;
    const { term, bootstrap, voters } = e;
    p.log.info({ term, votes: e.granted }, 'elected master');
    // Silences measured in an earlier mastership of ours are stale: each member starts afresh.
    for (const n of p.history().nodesIn('Up', 'ComingUp', 'ShuttingDown')) p.detector.forget(n);
    p.events.record({ kind: 'master', node: p.nodeNum, term, time: p.clock.wallNow(), rule: `elected with votes from ${e.granted.join(', ')} of voters ${voters.join(', ')}` });
    // The entry of the previous term we held uncommitted is proposed by the core already, first.
    // (Failures surface as quorum loss; nobody awaits these.)
    const quiet = (q: Promise<unknown>): void => void q.catch(() => {});
    if (bootstrap) {
      // A new history: where key services lived in a former one no longer holds (their epochs go on above it).
      p.keys.reset();
      quiet(p.propose(() => ({
        kind: 'state',
        node: p.nodeNum,
        incarnation: p.incarnation(),
        from: p.history().stateOf(p.nodeNum),
        to: 'ComingUp',
        cause: 'formed the cluster',
        address: p.ics().address ?? '',
        meta: p.opts.meta,
        keyServices: p.keys.hosted(),
      })));
      quiet(p.propose(() => ({ kind: 'state', node: p.nodeNum, incarnation: p.incarnation(), from: 'ComingUp', to: 'Up', cause: 'formed the cluster' })));
    }
    quiet(p.propose(() => ({
      kind: 'master',
      node: p.nodeNum,
      incarnation: p.incarnation(),
      from: p.history().stateOf(p.nodeNum),
      to: p.history().stateOf(p.nodeNum),
      cause: `master for term ${term}`,
    })));
    // Only now may key services ask for moves: their proposals queue behind
    // the carried entry, which a former quorum may already have committed.
    p.keys.quorumRegained();
    // Barriers of the former master are rebuilt from the history; a master we lost is suspected.
    p.step({ type: 'master-ready' });
    // Elected by a quorum: a node that had lost its quorum has it again, and says so (as a member does on hearing a master).
    if (!e.hadQuorum) {
      p.emitter.emit('quorum', { hasQuorum: true });
      p.events.broadcast({ type: 'quorum', hasQuorum: true });
    }
  }
}
