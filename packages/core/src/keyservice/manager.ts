/**
 * Key services: named singletons that live on exactly one node and fail
 * over with their data (the seeds' key services). The manager is what a
 * ClusterNode holds; it wires the parts of this layer together:
 *
 * - view.ts (pure): who hosts what at which epoch, from the history;
 * - placement.ts (pure) and master.ts: where each key service goes, as a
 *   function of the view, the members and the time, carried out by the
 *   master as `keyservice` transitions;
 * - host.ts: running what this node was given (takeover with pulled data,
 *   hand-over, stop), the driver of the state machines activation.ts,
 *   collect.ts and ask.ts (pure: step(input), ready(): effects);
 * - routing.ts: calling a key service by name, wherever it lives, the
 *   driver of calling.ts (pure, likewise);
 * - registrations.ts: what this node registers; unregister.ts: what it
 *   stops registering while it runs.
 *
 * Placement and every move are transitions in the history (`keyservice`
 * kind), so every node knows where each key service lives and since when.
 * Each activation has an epoch that only grows (K2). A host acts only while
 * the epoch it was given is the newest it has seen and it holds its lease
 * (it heard its master, or a master heard a quorum, within the failure
 * timeout); its `signal` aborts as soon as it learns otherwise (K1, K5), and
 * a host whose lease ran out (a paused process, a cut link) refuses before
 * its own timers have noticed.
 *
 * Failover (K4): the master assigns a new host only once the old host's
 * node is Down, that is after fencing and after every node finished its
 * cleanup for it. The new host runs `failover`, then pulls data from every
 * surviving node (`pullData`), hands the results to `failoverData`, and
 * reports; only then is the key service marked ready, clusterwide.
 *
 * Hand-over (a clean leave): before the leaver's ShuttingDown, it asks the
 * master to move what it hosts. The old host stops serving when it sees the
 * new assignment, runs `handover` when the new host asks for its data, and
 * stops; only then does the new host run `failover` and `failoverData` with
 * that data. There is no moment with two active hosts.
 */
import { InvalidArgumentError } from '../errors/index.js';
import type { Ics } from '../ics/ics.js';
import type { CallOptions, HandlerContext } from '../ics/types.js';
import type { HostedKeyService, KeyServiceInfo, MemberInfo, Transition } from '../clms/index.js';
import { Hosting } from './host.js';
import { Placer } from './master.js';
import { moveSchema, pullSchema, withdrawSchema } from './messages.js';
import { KS, type KeyServiceHost } from './ports.js';
import { checkKeyServiceName, Registrations } from './registrations.js';
import { otherHistory, Router } from './routing.js';
import type { KeyServiceRegistration } from './types.js';
import { Withdrawals } from './unregister.js';
import { KeyServiceView } from './view.js';
import { Changes } from './waits.js';

export class KeyServiceManager {
  private readonly local = new Registrations();
  private readonly view = new KeyServiceView();
  private readonly changes: Changes;
  /** `host.member`, one closure for every transition applied. */
  private readonly memberOf = (n: number): MemberInfo | undefined => this.host.member(n);
  private readonly hosting: Hosting;
  private readonly placer: Placer;
  private readonly router: Router;
  private readonly withdrawals: Withdrawals;
  private ics: Ics | undefined;

  constructor(private readonly host: KeyServiceHost) {
    this.changes = new Changes(host);
    this.hosting = new Hosting(host, this.view, this.local, this.changes, (r, from, incarnation) =>
      r.method === 'move' ? this.placer.onMove(r.args, from, incarnation) : this.placer.onWithdraw(r.args, from, incarnation),
    );
    this.placer = new Placer(host, this.view, (node, incarnation, waitMs) => this.hosting.downWaitLeft(node, incarnation, waitMs));
    this.router = new Router(host, this.view, this.local, this.changes, (l, h, args, ctx) => this.hosting.serveMethod(l, h, args, ctx));
    this.withdrawals = new Withdrawals(host, this.local, this.hosting, this.changes);
  }

  /** Register `reg`; the disposer unregisters it (unregister.ts; calling it again gives the same promise). */
  register(reg: KeyServiceRegistration): () => Promise<void> {
    const l = this.local.add(reg);
    if (this.ics) this.hosting.serve(this.ics, l);
    return () => this.withdrawals.unregister(l, this.ics !== undefined);
  }

  /** Unregister the key service `name` registered here (unregister.ts). */
  unregister(name: string): Promise<void> {
    try {
      checkKeyServiceName(name);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const l = this.local.get(name);
    if (!l) return Promise.reject(new InvalidArgumentError(`key service ${name} is not registered on node ${this.host.nodeNum}`));
    return this.withdrawals.unregister(l, this.ics !== undefined);
  }

  /** What this node announces when it joins (registrations.ts). */
  hosted(): HostedKeyService[] {
    return this.local.hosted();
  }

  /** Serve every registered key service's methods (and the pull/hand-over/move protocol) on `ics`. */
  attach(ics: Ics): void {
    ics.registerService({
      ...KS,
      name: 'clms.keyservice',
      // Each request only from a node of this node's history (routing.ts, otherHistory).
      handlers: {
        pull: (a, ctx) => this.ofThisHistory(ctx, () => this.hosting.onPull(pullSchema.parse(a))),
        handover: (a, ctx) => this.ofThisHistory(ctx, () => this.hosting.onHandover(pullSchema.parse(a), ctx.caller.nodeNum)),
        move: (a, ctx) => this.ofThisHistory(ctx, () => this.placer.onMove(moveSchema.parse(a), ctx.caller.nodeNum, ctx.caller.incarnation)),
        withdraw: (a, ctx) => this.ofThisHistory(ctx, () => this.placer.onWithdraw(withdrawSchema.parse(a), ctx.caller.nodeNum, ctx.caller.incarnation)),
      },
    });
    this.ics = ics;
    for (const l of this.local.values()) this.hosting.serve(ics, l);
  }

  /** Run `serve` for a caller of this node's history; refuse anyone else's request (routing.ts, otherHistory). */
  private ofThisHistory<T>(ctx: HandlerContext, serve: () => T): T {
    const refused = otherHistory(this.host, `clms.keyservice ${ctx.method}`, ctx);
    if (refused) throw refused;
    return serve();
  }

  /** Forget the clusterwide view (view.ts); the epochs stay as a floor. */
  reset(): void {
    this.view.reset();
  }

  /**
   * The view of an installed history, from scratch: the last `keyservice`
   * transition of each key service its snapshot covers (`base`), then its
   * tail; those up to `appliedUpTo` this node applied before, and go into
   * the view only. Without `base`, a joiner of a history longer than its
   * bound would not know where key services live, and as master would
   * place them again at an epoch already used (K2).
   */
  rebuild(base: readonly Transition[], tail: readonly Transition[], appliedUpTo = 0): void {
    this.view.reset();
    for (const t of [...base, ...tail]) {
      if (t.number > appliedUpTo) this.applied(t);
      else this.replayed(t);
    }
  }

  /**
   * A transition this node applied before (`rebuild` after a member fell
   * behind and installed a snapshot): into the view only. Applied again,
   * an assignment to this node would start a second takeover.
   */
  private replayed(t: Transition): void {
    if (t.kind === 'keyservice' && t.keyService) this.view.applyKeyService(t, t.keyService, this.host.now(), this.isCritical(t.keyService.name));
    this.view.applyState(t, this.host.now());
  }

  /** Where `name` lives; a name that is not a non-empty string throws (it used to read as "no such key service"). */
  info(name: string): KeyServiceInfo | undefined {
    checkKeyServiceName(name);
    return this.view.info(name);
  }

  all(): KeyServiceInfo[] {
    return this.view.all();
  }

  get formed(): boolean {
    return this.view.formed;
  }

  /** The first halted critical key service and why, if any. */
  halted(): { keyService: string; reason: string } | undefined {
    return this.view.halted();
  }

  /** A committed transition: update the view; start or stop local activations. */
  applied(t: Transition): void {
    if (t.kind === 'keyservice' && t.keyService) this.appliedKeyService(t, t.keyService);
    this.view.applyState(t, this.host.now());
    if (this.view.updateFormed(this.host.members(), this.memberOf, t)) this.host.emitFormed(this.view.formed);
    this.changes.wake();
    this.withdrawals.check();
  }

  private appliedKeyService(t: Transition, ks: NonNullable<Transition['keyService']>): void {
    const { info, before } = this.view.applyKeyService(t, ks, this.host.now(), this.isCritical(ks.name));
    const l = this.local.get(ks.name);
    if (l) this.hosting.applied(l, t, ks, before?.host);
    if (ks.phase === 'halted') {
      this.host.log.error({ keyService: ks.name, reason: t.cause }, 'key service halted');
      this.host.emitHalted(ks.name, t.cause);
    }
    this.host.emitKeyService(info);
    this.changes.wake();
  }

  private isCritical(name: string): boolean {
    for (const m of this.host.members()) for (const h of m.keyServices) if (h.name === name && h.critical) return true;
    return this.local.get(name)?.reg.critical ?? false;
  }

  /** Quorum lost: a node without quorum stops what it hosts at once (K5). */
  quorumLost(): void {
    this.hosting.quorumLost();
  }

  /**
   * Quorum regained: a key service this node is still the recorded host of
   * was stopped meanwhile; ask the master to place it again (a new epoch),
   * or nobody would ever serve it.
   */
  quorumRegained(): void {
    this.hosting.placeStopped();
  }

  /** Stop everything this node hosts (close, eviction). */
  stopAll(why: string): void {
    this.hosting.stopAll(why);
  }

  close(): void {
    this.withdrawals.close();
    this.hosting.close();
    this.placer.close();
    this.hosting.stopAll('node closed');
  }

  /** On the master, after every transition: place what has no live host (master.ts). */
  place(): void {
    this.placer.place();
  }

  /** This node's ready report for `name` at `epoch` is still owed (host.ts). */
  awaitsReady(name: string, epoch: number): boolean {
    return this.hosting.awaitsReady(name, epoch);
  }

  /** The master got `ready` from a host: commit it (master.ts). */
  commitReady(name: string, epoch: number, from: number): void {
    this.placer.commitReady(name, epoch, from);
  }

  /** This node runs an activation of some key service. */
  hostsAny(): boolean {
    return this.hosting.hostsAny();
  }

  /** A clean leave: hand every key service this node hosts over first (host.ts). */
  handOverAll(): Promise<void> {
    return this.hosting.handOverAll();
  }

  /** Call a key service by name (routing.ts). */
  call(name: string, method: string, args: unknown, options: CallOptions & { idempotent?: boolean } = {}): Promise<unknown> {
    try {
      // A name or method of another type would be looked up as its String() and fail as an unknown key service.
      checkKeyServiceName(name);
      if (typeof method !== 'string' || method.length === 0) throw new InvalidArgumentError(`a method is a non-empty string, got ${typeof method}`);
      // Any other value would be read as its truthiness: a call retried after it may have run.
      if (options.idempotent !== undefined && typeof options.idempotent !== 'boolean') throw new InvalidArgumentError(`idempotent must be a boolean, got ${typeof options.idempotent}`, { details: [{ path: 'idempotent', message: 'must be a boolean' }] });
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.router.call(name, method, args, options);
  }
}
