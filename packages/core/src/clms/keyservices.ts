/**
 * Key services: named singletons that live on exactly one node and fail
 * over with their data (the seeds' key services).
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
import { canaries } from '../canaries.js';
import { ClusterInfraError, InvalidArgumentError, KeyServiceHaltedError, UnavailableError, UnknownKeyServiceError } from '../errors/index.js';
import type { Ics } from '../ics/ics.js';
import { IcsStatusError } from '../ics/status.js';
import type { CallOptions, Handler, HandlerContext } from '../ics/types.js';
import type { TimerHandle } from '../clock/index.js';
import type { Logger } from '../logging/index.js';
import { downKey, eligibleHost, hostStateOf, placement, type PlacementStep } from '../keyservice/index.js';
import { type MoveRequest, moveSchema, pullSchema } from './protocol/messages.js';
import type { HostedKeyService, KeyServiceActivity, KeyServiceInfo, MemberInfo, Transition } from './types.js';

const KS = { channel: 'keyservice', subservice: 0 } as const;

/** What a key-service callback is given. */
export interface KeyServiceContext {
  readonly name: string;
  /** The activation's epoch: pass it to external systems as a fencing token. */
  readonly epoch: number;
  /** This node. */
  readonly node: number;
  /** The former host, when there was one. */
  readonly previousHost: number | undefined;
  /** Aborts when this activation ends (a newer epoch, quorum loss, hand-over, close). */
  readonly signal: AbortSignal;
  /**
   * True while this activation may act: it has not ended and this node holds
   * its lease right now. Check it just before an external write: unlike
   * `signal`, it is right even in the first instant after a long pause.
   */
  isActive(): boolean;
}

/** What a key-service method handler is given: the ICS context plus the epoch it serves in. */
export interface KeyServiceHandlerContext extends HandlerContext {
  readonly keyService: string;
  /** The epoch of the activation serving this call: a fencing token. */
  readonly epoch: number;
}

export type KeyServiceHandler = (args: unknown, ctx: KeyServiceHandlerContext) => unknown;

export interface KeyServiceRegistration {
  name: string;
  /** The cluster is not formed until a critical key service has a ready host, and halts if none is left. @default false */
  critical?: boolean;
  /** The subservice its methods use on the `keyservice` channel (1–65535). */
  subservice: number;
  /** Methods, served only by the active host (others answer "not the host", and the caller goes to the host). */
  handlers?: Record<string, KeyServiceHandler>;
  /** Methods safe to run twice: a call that may have run on a host that failed is retried once on the new host. */
  idempotent?: readonly string[];
  /** Runs on the new host when it takes over (after a hand-over's data arrived, before data is pulled). */
  failover?: (ctx: KeyServiceContext) => void | Promise<void>;
  /** Runs on every surviving node during a failover; its result goes to the new host. */
  pullData?: (ctx: KeyServiceContext) => unknown;
  /** Runs on the new host with every survivor's `pullData` result and, after a clean leave, the old host's hand-over, apart. */
  failoverData?: (input: FailoverInput, ctx: KeyServiceContext) => void | Promise<void>;
  /** Planned hand-over: runs on the old host, which then stops; the result goes to the new host's `failoverData` as `input.handover`. */
  handover?: (ctx: KeyServiceContext) => unknown;
}

/**
 * What `failoverData` is given. Pulled data and hand-over data stay apart:
 * the hand-over usually holds the whole state already, so an application
 * that merged both (as one map did before) would count the survivors twice.
 */
export interface FailoverInput {
  /** Each surviving node's `pullData` result, by node number (this node included; the old host never). */
  readonly pulled: Map<number, unknown>;
  /**
   * A clean leave: what the old host's `handover` returned (null when it has
   * none) and its node. Undefined on a failover, and when the old host
   * stopped before the data was collected.
   */
  readonly handover: { readonly from: number; readonly data: unknown } | undefined;
}

/** One activation of a key service on this node. */
interface Activation {
  epoch: number;
  controller: AbortController;
  previousHost: number | undefined;
  /** Methods are served once `failoverData` is done, and no more once a hand-over began. */
  serving: boolean;
  /** A newer epoch was assigned to a node that will ask for our data (a clean leave). */
  handingOver: TimerHandle | undefined;
}

interface Local {
  reg: KeyServiceRegistration;
  active: Activation | undefined;
}

/** What the manager needs from its ClusterNode. */
export interface KeyServiceHost {
  readonly nodeNum: number;
  readonly log: Logger;
  ics(): Ics;
  isMaster(): boolean;
  master(): number | undefined;
  /** This node may act for what it hosts: a member in quorum that heard its master (or, as master, a quorum) within the failure timeout. */
  leaseValid(): boolean;
  /** Ask the master to renew this member's lease (a host about to serve). */
  renewLease(): void;
  /** How long after a host's GoingDown its key services may fail over (its lease has run out by then). */
  fenceWaitMs(): number;
  members(): MemberInfo[];
  member(node: number): MemberInfo | undefined;
  propose(build: () => Omit<Transition, 'number' | 'term' | 'time'> | undefined): Promise<Transition | undefined>;
  /** Report to the master that a key service is ready. */
  reportReady(name: string, epoch: number): void;
  emitKeyService(info: KeyServiceInfo): void;
  emitActivity(info: KeyServiceActivity): void;
  emitFormed(formed: boolean): void;
  emitHalted(name: string, reason: string): void;
  rpcTimeoutMs(): number;
  failureTimeoutMs(): number;
  now(): number;
  /** A timer on the injected clock. */
  timer(ms: number, fn: () => void): TimerHandle;
}


/** A "not the host" answer: the method did not run, so any call may go elsewhere. */
function notHost(node: number, name: string): IcsStatusError {
  return new IcsStatusError('FAILED_PRECONDITION', `node ${node} is not the active host of ${name}`, { notHost: true });
}

function isNotHost(err: unknown): boolean {
  const details = (err as { details?: unknown } | undefined)?.details;
  return typeof details === 'object' && details !== null && (details as { notHost?: unknown }).notHost === true;
}

export class KeyServiceManager {
  private readonly local = new Map<string, Local>();
  /** The clusterwide view, from the history. */
  private readonly view = new Map<string, KeyServiceInfo>();
  /** Master: ready transitions proposed and not settled yet (name:epoch:host). */
  private readonly readyProposed = new Set<string>();
  /** Key services this node is asking the master to place again (see placeStopped). */
  private readonly asking = new Set<string>();
  private closed = false;
  /** The incarnation of each key service's recorded host (moves are asked by that incarnation only). */
  private readonly hostIncarnation = new Map<string, number>();
  /**
   * A hand-over whose new host is not ready yet: its source, and when this
   * node applied the assignment (see placeAfterHandover).
   */
  private readonly handoverSource = new Map<string, { node: number; at: number }>();
  /** A key service made vacant or halted while its host (node, incarnation) was leaving or going down: it may still act for a while. */
  private readonly vacatedFrom = new Map<string, { node: number; incarnation: number | undefined }>();
  /** `node:incarnation` → when this node learnt it went down (GoingDown or ShuttingDown): the fence wait counts from there. */
  private readonly downSince = new Map<string, number>();
  /** One timer to place again once a fence wait is over. */
  private placeTimer: TimerHandle | undefined;
  /** Highest epoch seen per key service in former histories (see reset). */
  private readonly epochFloor = new Map<string, number>();
  private formedState = false;
  /** Woken on every change of the view or of a local activation. */
  private readonly waiters = new Set<() => void>();
  private ics: Ics | undefined;

  constructor(private readonly host: KeyServiceHost) {}

  /** How long a hand-over may take: the old host stops by itself after it, the new host waits it out. */
  private handoverBoundMs(): number {
    return this.host.rpcTimeoutMs() * 10;
  }

  register(reg: KeyServiceRegistration): void {
    if (typeof reg.name !== 'string' || reg.name.length === 0 || reg.name.length > 200) {
      throw new InvalidArgumentError('key service name must be 1–200 characters');
    }
    if (this.local.has(reg.name)) throw new InvalidArgumentError(`key service ${reg.name} is registered already`);
    if (!Number.isInteger(reg.subservice) || reg.subservice < 1 || reg.subservice > 0xffff) {
      throw new InvalidArgumentError(`key service ${reg.name}: subservice must be 1–65535`);
    }
    for (const m of reg.idempotent ?? []) {
      if (!reg.handlers || !Object.hasOwn(reg.handlers, m)) throw new InvalidArgumentError(`key service ${reg.name}: idempotent method ${m} has no handler`);
    }
    const l: Local = { reg, active: undefined };
    this.local.set(reg.name, l);
    if (this.ics) this.serve(this.ics, l);
  }

  /**
   * What this node announces when it joins: the key services it may host, in
   * registration order, with what a caller on any node needs to call them.
   */
  hosted(): HostedKeyService[] {
    return [...this.local.values()].map((l) => ({
      name: l.reg.name,
      critical: l.reg.critical ?? false,
      subservice: l.reg.subservice,
      idempotent: [...(l.reg.idempotent ?? [])],
    }));
  }

  /** Serve every registered key service's methods (and the pull/hand-over/move protocol) on `ics`. */
  attach(ics: Ics): void {
    ics.registerService({
      ...KS,
      name: 'clms.keyservice',
      handlers: {
        pull: (a) => this.onPull(pullSchema.parse(a)),
        handover: (a, ctx) => this.onHandover(pullSchema.parse(a), ctx.caller.nodeNum),
        move: (a, ctx) => this.onMove(moveSchema.parse(a), ctx.caller.nodeNum, ctx.caller.incarnation),
      },
    });
    this.ics = ics;
    for (const l of this.local.values()) this.serve(ics, l);
  }

  private serve(ics: Ics, l: Local): void {
    const handlers: Record<string, Handler> = {};
    for (const [m, h] of Object.entries(l.reg.handlers ?? {})) {
      handlers[m] = (args, ctx) => this.serveMethod(l, h, args, ctx);
    }
    ics.registerService({ channel: 'keyservice', subservice: l.reg.subservice, name: `keyservice.${l.reg.name}`, handlers });
  }

  /**
   * Forget the clusterwide view (a joiner rebuilds it from the history it
   * installs; a founder starts a new history). The epochs it knew stay as a
   * floor: a key service this node places in a new history starts above
   * them, so fencing tokens never go back while this process lives.
   */
  reset(): void {
    for (const v of this.view.values()) this.epochFloor.set(v.name, Math.max(this.epochFloor.get(v.name) ?? 0, v.epoch));
    this.view.clear();
    this.hostIncarnation.clear();
    this.handoverSource.clear();
    this.vacatedFrom.clear();
  }

  /** The epoch `name` is at: from the history, else the floor from former histories. */
  private epochOf(name: string): number {
    return this.view.get(name)?.epoch ?? this.epochFloor.get(name) ?? 0;
  }

  info(name: string): KeyServiceInfo | undefined {
    return this.view.get(name);
  }

  all(): KeyServiceInfo[] {
    return [...this.view.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get formed(): boolean {
    return this.formedState;
  }

  /** The first halted critical key service and why, if any. */
  halted(): { keyService: string; reason: string } | undefined {
    for (const v of this.all()) if (v.halted) return { keyService: v.name, reason: v.reason ?? 'no eligible node left' };
    return undefined;
  }

  /** The activation may act now: not ended, serving, and this node holds its lease. */
  private mayAct(a: Activation | undefined): a is Activation {
    return a !== undefined && !a.controller.signal.aborted && this.host.leaseValid();
  }

  private serveMethod(l: Local, h: KeyServiceHandler, args: unknown, ctx: HandlerContext): unknown {
    const a = l.active;
    if (!this.mayAct(a) || !a.serving || a.handingOver) throw notHost(this.host.nodeNum, l.reg.name);
    const kctx: KeyServiceHandlerContext = {
      ...ctx,
      keyService: l.reg.name,
      epoch: a.epoch,
      // The handler stops when the caller gives up or the activation ends.
      signal: AbortSignal.any([ctx.signal, a.controller.signal]),
    };
    return h(args, kctx);
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  // ---------------------------------------------------------------- applying the history

  /** A committed transition: update the view; start or stop local activations. */
  applied(t: Transition): void {
    if (t.kind === 'keyservice' && t.keyService) this.appliedKeyService(t, t.keyService);
    if (t.kind === 'state' && (t.to === 'GoingDown' || t.to === 'ShuttingDown')) {
      const key = `${t.node}:${t.incarnation}`;
      if (!this.downSince.has(key)) this.downSince.set(key, this.host.now());
    }
    if (t.kind === 'state' && (t.to === 'ComingUp' || t.to === 'Up')) {
      // New critical key services may have been announced.
      for (const h of t.keyServices ?? []) {
        const v = this.view.get(h.name);
        if (v && h.critical && !v.critical) this.view.set(h.name, { ...v, critical: true });
      }
    }
    this.updateFormed();
    this.wake();
  }

  private appliedKeyService(t: Transition, ks: NonNullable<Transition['keyService']>): void {
    const me = this.host.nodeNum;
    const hosted = ks.phase === 'assigned' || ks.phase === 'ready';
    const info: KeyServiceInfo = {
      name: ks.name,
      host: hosted ? t.node : undefined,
      epoch: ks.epoch,
      ready: ks.phase === 'ready',
      critical: this.isCritical(ks.name),
      halted: ks.phase === 'halted',
      since: t.number,
      ...(ks.phase === 'halted' || ks.phase === 'vacant' ? { reason: t.cause } : {}),
    };
    const before = this.view.get(ks.name);
    this.trackHandover(ks.name, t, ks);
    if ((ks.phase === 'vacant' || ks.phase === 'halted') && before?.host !== undefined) this.vacatedFrom.set(ks.name, { node: before.host, incarnation: this.hostIncarnation.get(ks.name) });
    else if (hosted) this.vacatedFrom.delete(ks.name);
    this.view.set(ks.name, info);
    if (hosted) this.hostIncarnation.set(ks.name, t.incarnation);
    else this.hostIncarnation.delete(ks.name);
    const l = this.local.get(ks.name);
    const a = l?.active;
    // A newer epoch ends any older activation here (K1); a hand-over keeps
    // the data until the new host collects it, but stops serving at once.
    if (l && a && a.epoch < ks.epoch) {
      if (ks.phase === 'assigned' && ks.handoverFrom === me && t.node !== me) this.beginHandover(l, a);
      else this.deactivate(l, 'a newer epoch began');
    }
    // Only an assignment to this incarnation (not one replayed from a former one).
    const mine = t.node === me && t.incarnation === this.host.member(me)?.incarnation;
    if (ks.phase === 'assigned' && mine && l) void this.takeOver(l, ks.epoch, before?.host, ks.handoverFrom);
    if (ks.phase === 'halted') {
      this.host.log.error({ keyService: ks.name, reason: t.cause }, 'key service halted');
      this.host.emitHalted(ks.name, t.cause);
    }
    this.host.emitKeyService(info);
    this.wake();
  }

  private trackHandover(name: string, t: Transition, ks: NonNullable<Transition['keyService']>): void {
    // Ready: the new host collected the hand-over (or waited its source out).
    if (ks.phase === 'ready') this.handoverSource.delete(name);
    else if (ks.phase === 'assigned' && ks.handoverFrom !== undefined) this.handoverSource.set(name, { node: ks.handoverFrom, at: this.host.now() });
  }

  private isCritical(name: string): boolean {
    for (const m of this.host.members()) for (const h of m.keyServices) if (h.name === name && h.critical) return true;
    return this.local.get(name)?.reg.critical ?? false;
  }

  /**
   * Formed: every critical key service (announced by a live member, or
   * known from the history) has a ready host that is Up.
   */
  private updateFormed(): void {
    const critical = new Set<string>();
    for (const m of this.host.members()) {
      if (m.state !== 'Up' && m.state !== 'ComingUp') continue;
      for (const h of m.keyServices) if (h.critical) critical.add(h.name);
    }
    for (const v of this.view.values()) if (v.critical) critical.add(v.name);
    let formed = true;
    for (const name of critical) {
      const v = this.view.get(name);
      if (!v?.ready || v.host === undefined || this.hostState(v.name, v.host) !== 'Up') formed = false;
    }
    if (formed !== this.formedState) {
      this.formedState = formed;
      this.host.emitFormed(formed);
    }
  }

  /** Quorum lost: a node without quorum stops what it hosts at once (K5). */
  quorumLost(): void {
    for (const l of this.local.values()) if (l.active) this.deactivate(l, 'lost quorum');
  }

  /**
   * Quorum regained: a key service this node is still the recorded host of
   * was stopped meanwhile; ask the master to place it again (a new epoch),
   * or nobody would ever serve it.
   */
  quorumRegained(): void {
    this.placeStopped();
  }

  /**
   * Every key service this node is the recorded host of but runs no
   * activation of: ask the master to place it again, and ask again after a
   * while for as long as that stays so (a master that just changed, or whose
   * view lagged, may refuse; nobody else would ever ask).
   */
  private placeStopped(): void {
    if (this.closed) return;
    for (const l of this.local.values()) {
      const name = l.reg.name;
      const v = this.view.get(name);
      const mine = v?.host === this.host.nodeNum && this.hostIncarnation.get(name) === this.host.member(this.host.nodeNum)?.incarnation;
      if (l.active || !v || !mine || v.halted || this.asking.has(name)) continue;
      this.asking.add(name);
      void this.requestMove(name, v.epoch, false)
        .catch(() => false)
        .then(() => {
          this.asking.delete(name);
          this.host.timer(this.host.failureTimeoutMs(), () => this.placeStopped());
        });
    }
  }

  /** Stop everything this node hosts (close, eviction). */
  stopAll(why: string): void {
    for (const l of this.local.values()) if (l.active) this.deactivate(l, why);
  }

  close(): void {
    this.closed = true;
    this.placeTimer?.cancel();
    this.stopAll('node closed');
  }

  private deactivate(l: Local, why: string): void {
    const a = l.active;
    if (!a) return;
    l.active = undefined;
    a.handingOver?.cancel();
    this.host.log.info({ keyService: l.reg.name, epoch: a.epoch, why }, 'key service deactivated');
    a.controller.abort(new UnavailableError(`key service ${l.reg.name} epoch ${a.epoch} ended: ${why}`));
    this.host.emitActivity({ name: l.reg.name, epoch: a.epoch, active: false, reason: why });
    this.wake();
  }

  /** A newer epoch goes to a node that will collect our data: stop serving now, stop entirely once collected (or after the bound). */
  private beginHandover(l: Local, a: Activation): void {
    if (a.handingOver) return;
    a.serving = false;
    a.handingOver = this.host.timer(this.handoverBoundMs(), () => {
      if (l.active === a) this.deactivate(l, 'hand-over not collected in time');
    });
  }

  private ctx(l: Local, a: Activation): KeyServiceContext {
    return {
      name: l.reg.name,
      epoch: a.epoch,
      node: this.host.nodeNum,
      previousHost: a.previousHost,
      signal: a.controller.signal,
      // A hand-over under way ends acting at once: the data it exports must not change after.
      isActive: () => l.active === a && !a.handingOver && this.mayAct(a),
    };
  }

  /** This node was assigned: collect a hand-over, fail over, pull data, report ready. */
  private async takeOver(l: Local, epoch: number, previousHost: number | undefined, handoverFrom: number | undefined): Promise<void> {
    if (l.active?.epoch === epoch) return;
    if (l.active) this.deactivate(l, 'reassigned');
    const a: Activation = { epoch, controller: new AbortController(), previousHost: previousHost ?? handoverFrom, serving: false, handingOver: undefined };
    l.active = a;
    // A lease of our own by the time we serve (a master holds one already).
    this.host.renewLease();
    const ctx = this.ctx(l, a);
    const ended = (): boolean => l.active !== a || a.controller.signal.aborted;
    try {
      const pulled = new Map<number, unknown>();
      // The old host stops before we start: its data first, then `failover`.
      const handover = handoverFrom !== undefined ? await this.collectHandover(l.reg.name, epoch, handoverFrom) : undefined;
      if (ended()) return;
      await l.reg.failover?.(ctx);
      if (ended()) return;
      if (l.reg.pullData) await this.pullFromSurvivors(l, ctx, handoverFrom, pulled);
      if (ended()) return;
      await l.reg.failoverData?.({ pulled, handover }, ctx);
      if (ended()) return;
      a.serving = true;
      this.host.emitActivity({ name: l.reg.name, epoch, active: true, reason: handoverFrom !== undefined ? `hand-over from node ${handoverFrom}` : 'failover complete' });
      this.host.reportReady(l.reg.name, epoch);
    } catch (err) {
      this.host.log.error({ keyService: l.reg.name, epoch, err: (err as Error).message }, 'key service failover failed');
      if (l.active !== a) return;
      this.deactivate(l, `failover failed: ${(err as Error).message}`);
      // Try again (a new epoch) after a while rather than leave it assigned to nobody.
      this.host.timer(this.host.failureTimeoutMs(), () => this.placeStopped());
    }
  }

  /**
   * `pullData` on every Up node that registered the key service (here
   * locally), results by node; a survivor that fails is logged and left out.
   */
  private async pullFromSurvivors(l: Local, ctx: KeyServiceContext, skip: number | undefined, results: Map<number, unknown>): Promise<void> {
    const name = l.reg.name;
    const survivors = this.host.members().filter((m) => m.state === 'Up' && m.node !== skip && (m.node === this.host.nodeNum || m.keyServices.some((h) => h.name === name)));
    await Promise.all(
      survivors.map(async (m) => {
        try {
          const data =
            m.node === this.host.nodeNum
              ? await l.reg.pullData!(ctx)
              : await this.host.ics().call(m.node, KS, 'pull', { name: l.reg.name, epoch: ctx.epoch }, { timeoutMs: this.host.rpcTimeoutMs() * 10 });
          results.set(m.node, data ?? null);
        } catch (err) {
          this.host.log.warn({ keyService: l.reg.name, from: m.node, err: (err as Error).message }, 'pullData failed on a survivor');
        }
      }),
    );
  }

  /**
   * Ask the old host for its data, until it answers or the hand-over bound
   * passes. Without an answer we wait the bound out (plus the failure
   * timeout, after which a cut-off host has lost its lease): by then the old
   * host has stopped by itself, so two hosts are never active at once.
   */
  private async collectHandover(name: string, epoch: number, from: number): Promise<FailoverInput['handover']> {
    const bound = this.handoverBoundMs();
    const deadline = this.host.now() + bound;
    while (this.host.now() < deadline) {
      try {
        const data = await this.host.ics().call(from, KS, 'handover', { name, epoch }, { timeoutMs: Math.max(1, deadline - this.host.now()) });
        return { from, data: data ?? null };
      } catch (err) {
        const state = this.host.member(from)?.state;
        if (state === 'GoingDown' || state === 'ShuttingDown' || state === 'Down') {
          // It failed or left: once Down, every node cleaned up after it and nothing runs there any more (K4).
          await this.waitFor(() => this.host.member(from)?.state === 'Down', Math.max(0, deadline - this.host.now()));
          const gone = this.host.member(from);
          if (gone?.state === 'Down') {
            // Down without handing over: the others refused its links from
            // its GoingDown or ShuttingDown on, so it renewed no lease since,
            // but one it held then may still run (a leaver closes a little
            // after its leave is committed; a cut-off host acts until its
            // lease ends). Wait that out (K1).
            const wait = this.downWaitLeft(from, gone.incarnation, this.host.failureTimeoutMs());
            if (wait > 0) await this.sleep(wait);
            return undefined;
          }
          continue;
        }
        this.host.log.debug({ keyService: name, from, err: (err as Error).message }, 'hand-over not collected yet');
        await this.sleep(this.host.rpcTimeoutMs());
      }
    }
    this.host.log.warn({ keyService: name, from }, 'hand-over data not collected: waiting for the old host to stop by itself');
    await this.sleep(this.host.failureTimeoutMs());
    return undefined;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.host.timer(ms, resolve));
  }

  private async onPull(p: { name: string; epoch: number }): Promise<unknown> {
    const l = this.local.get(p.name);
    const v = this.view.get(p.name);
    if (!l?.reg.pullData) return null;
    // Only for the current epoch: a stale host asking gets nothing.
    if (v && v.epoch > p.epoch) throw new IcsStatusError('FAILED_PRECONDITION', `epoch ${p.epoch} of ${p.name} is stale`);
    const ctx: KeyServiceContext = { name: p.name, epoch: p.epoch, node: this.host.nodeNum, previousHost: v?.host, signal: new AbortController().signal, isActive: () => false };
    return (await l.reg.pullData(ctx)) ?? null;
  }

  /** The new host asks for our data: only the host the history names for that epoch, once we have seen it. */
  private async onHandover(p: { name: string; epoch: number }, caller: number): Promise<unknown> {
    const l = this.local.get(p.name);
    const a = l?.active;
    if (!l || !a || a.epoch >= p.epoch) return null; // nothing active here: nothing to hand over
    const v = this.view.get(p.name);
    if (!a.handingOver || v?.epoch !== p.epoch || v.host !== caller) {
      throw new IcsStatusError('FAILED_PRECONDITION', `hand-over of ${p.name} epoch ${p.epoch} not seen here yet`);
    }
    // Stop first, then give the data away: never two active hosts.
    const data = await l.reg.handover?.(this.ctx(l, a));
    if (l.active === a) this.deactivate(l, `handed over to node ${caller}`);
    return data ?? null;
  }

  // ---------------------------------------------------------------- moves asked of the master

  /** This node runs an activation of some key service. */
  hostsAny(): boolean {
    for (const l of this.local.values()) if (l.active) return true;
    return false;
  }

  /**
   * A clean leave: move every key service this node hosts elsewhere, with
   * its data, before the leave itself. Bounded; what cannot move (no other
   * eligible node, no master) is left to the usual placement after the leave.
   */
  async handOverAll(): Promise<void> {
    const moving: Promise<void>[] = [];
    for (const l of this.local.values()) {
      const a = l.active;
      if (!a) continue;
      moving.push(
        (async () => {
          if (!(await this.requestMove(l.reg.name, a.epoch, true))) return;
          await this.waitFor(() => l.active !== a, this.handoverBoundMs() * 2);
        })(),
      );
    }
    await Promise.all(moving);
  }

  /** Ask the master to place `name` again (`handover`: elsewhere, collecting our data). True when it did. */
  private async requestMove(name: string, epoch: number, handover: boolean): Promise<boolean> {
    const deadline = this.host.now() + this.handoverBoundMs();
    while (this.host.now() < deadline) {
      const master = this.host.master();
      try {
        if (master === this.host.nodeNum) return await this.onMove({ name, epoch, handover }, this.host.nodeNum, this.host.member(this.host.nodeNum)?.incarnation ?? 0);
        if (master !== undefined) return (await this.host.ics().call(master, KS, 'move', { name, epoch, handover }, { timeoutMs: this.host.rpcTimeoutMs() * 4 })) as boolean;
      } catch (err) {
        this.host.log.debug({ keyService: name, err: (err as Error).message }, 'move request failed; retrying');
      }
      await this.sleep(this.host.rpcTimeoutMs());
    }
    return false;
  }

  /** On the master: the host of `name` at `epoch` asks for a new placement. */
  private async onMove(p: MoveRequest, from: number, incarnation: number): Promise<boolean> {
    if (!this.host.isMaster()) throw new IcsStatusError('FAILED_PRECONDITION', 'not the master');
    const v = this.view.get(p.name);
    // Only the host incarnation the history names: a request left over from a
    // former incarnation (or history) whose numbers happen to match is not it.
    if (!v || v.epoch !== p.epoch || v.host !== from || this.hostIncarnation.get(p.name) !== incarnation) return false;
    const target = eligibleHost(p.name, this.host.members(), p.handover ? from : undefined);
    if (target === undefined) return false;
    const t = await this.host.propose(() => {
      if (!this.stillNeeds(p.name, v.since)) return undefined;
      // A host that went down meanwhile is failed over after its Down instead (K4).
      if (this.host.member(from)?.state !== 'Up') return undefined;
      const m = this.host.member(target);
      if (!m || m.state !== 'Up') return undefined;
      return {
        kind: 'keyservice',
        node: target,
        incarnation: m.incarnation,
        from: m.state,
        to: m.state,
        cause: p.handover ? `hand-over from node ${from}` : `placed again (node ${from} had stopped it)`,
        keyService: { name: p.name, epoch: v.epoch + 1, phase: 'assigned', ...(p.handover ? { handoverFrom: from } : {}) },
      };
    });
    return t !== undefined;
  }

  /** Resolve when `pred` holds (checked on every change), or after `ms`. */
  private waitFor(pred: () => boolean, ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (pred()) return resolve();
      const done = (): void => {
        this.waiters.delete(waiter);
        timer.cancel();
        resolve();
      };
      const waiter = (): void => {
        if (pred()) done();
      };
      const timer = this.host.timer(ms, done);
      this.waiters.add(waiter);
    });
  }

  // ---------------------------------------------------------------- master: placement

  /**
   * On the master, after every transition: give every key service without a
   * live host a new one, in the order the nodes announced them, as soon as
   * the old host's node is Down (K4) or leaving (hand-over).
   */
  place(): void {
    if (!this.host.isMaster()) return;
    const steps = placement({
      now: this.host.now(),
      members: this.host.members(),
      member: (n) => this.host.member(n),
      view: this.view,
      hostIncarnation: this.hostIncarnation,
      handoverSource: this.handoverSource,
      vacatedFrom: this.vacatedFrom,
      downSince: this.downSince,
      fenceWaitMs: this.host.fenceWaitMs(),
      failureTimeoutMs: this.host.failureTimeoutMs(),
      moveEarly: canaries.moveKeyServiceEarly,
    });
    for (const step of steps) {
      switch (step.kind) {
        case 'wait':
          this.placeLater(step.ms);
          break;
        case 'forget-handover':
          this.handoverSource.delete(step.name);
          break;
        case 'forget-vacancy':
          this.vacatedFrom.delete(step.name);
          break;
        case 'down-seen':
          this.downWaitLeft(step.node, step.incarnation, 0);
          break;
        case 'vacate':
          this.proposeVacancy(step.name, step.critical, step.since);
          break;
        case 'assign':
          this.proposeHost(step);
          break;
      }
    }
  }

  /** No eligible node for `name`: halted (critical) or vacant, as a change by the master itself. */
  private proposeVacancy(name: string, critical: boolean, since: number | undefined): void {
    this.proposeChange(name, since, () => ({
      kind: 'keyservice',
      node: this.host.nodeNum,
      incarnation: this.host.member(this.host.nodeNum)?.incarnation ?? 0,
      // The master's own state, whatever it is (it may be leaving): a keyservice transition changes no state.
      from: this.host.member(this.host.nodeNum)?.state ?? 'Up',
      to: this.host.member(this.host.nodeNum)?.state ?? 'Up',
      cause: critical ? `no eligible node left for critical key service ${name}` : `no eligible node for ${name}`,
      keyService: { name, epoch: this.epochOf(name), phase: critical ? 'halted' : 'vacant' },
    }));
  }

  /** `step.node` takes `step.name` over: a hand-over from a leaving host, a failover, or a first placement. */
  private proposeHost(step: Extract<PlacementStep, { kind: 'assign' }>): void {
    const { name, node, previousHost, handoverFrom: leaving } = step;
    this.proposeChange(name, step.since, () => {
      // As the nodes are when the change is built: the target may have gone
      // down since, and a leaving host that failed meanwhile is failed over
      // after its Down and the fence wait instead (K4).
      const target = this.host.member(node);
      if (target?.state !== 'Up') return undefined;
      if (leaving !== undefined && this.hostState(name, leaving) !== 'ShuttingDown') return undefined;
      return {
        kind: 'keyservice',
        node,
        incarnation: target.incarnation,
        from: target.state,
        to: target.state,
        cause: leaving !== undefined ? `hand-over from node ${leaving}` : previousHost !== undefined ? `failover from node ${previousHost}` : 'placed',
        keyService: { name, epoch: this.epochOf(name) + 1, phase: 'assigned', ...(leaving !== undefined ? { handoverFrom: leaving } : {}) },
      };
    });
  }

  /** The state of the incarnation `name` was placed on (keyservice/placement.ts). */
  private hostState(name: string, host: number): MemberInfo['state'] | undefined {
    return hostStateOf(name, host, (n) => this.host.member(n), this.hostIncarnation);
  }

  /** Time left of `waitMs` counted from when we learnt (node, incarnation) went down (GoingDown or ShuttingDown). */
  private downWaitLeft(node: number, incarnation: number | undefined, waitMs: number): number {
    const key = downKey(node, incarnation);
    const now = this.host.now();
    let since = this.downSince.get(key);
    // Gone before we saw it go (a snapshot we installed): count from now.
    if (since === undefined) this.downSince.set(key, (since = now));
    // Bounded: entries whose every wait is long over are of no use.
    const longest = Math.max(this.host.fenceWaitMs(), this.host.failureTimeoutMs());
    if (this.downSince.size > 4096) for (const [k, at] of this.downSince) if (now - at > longest) this.downSince.delete(k);
    return since + waitMs - now;
  }

  private placeLater(ms: number): void {
    if (this.placeTimer || this.closed) return;
    this.placeTimer = this.host.timer(ms, () => {
      this.placeTimer = undefined;
      this.place();
    });
  }

  /** Propose a change of `name` unless its view changed meanwhile (no double placement). */
  private proposeChange(name: string, since: number | undefined, build: () => Omit<Transition, 'number' | 'term' | 'time'> | undefined): void {
    void this.host.propose(() => (this.stillNeeds(name, since) ? build() : undefined)).catch(() => {});
  }

  private stillNeeds(name: string, since: number | undefined): boolean {
    return this.view.get(name)?.since === since;
  }

  /**
   * This node took over `name` at `epoch` and the history does not say it
   * is ready yet: its ready report is still owed (the master that
   * acknowledged it may have lost the commit, and a new master would never
   * learn it otherwise).
   */
  awaitsReady(name: string, epoch: number): boolean {
    const v = this.view.get(name);
    return v !== undefined && v.epoch === epoch && v.host === this.host.nodeNum && !v.ready && this.local.get(name)?.active?.epoch === epoch;
  }

  /** The master got `ready` from a host: commit it (if still its epoch). */
  commitReady(name: string, epoch: number, from: number): void {
    const v = this.view.get(name);
    if (!v || v.epoch !== epoch || v.host !== from || v.ready) return;
    // One proposal at a time for it (the master's own report is offered every tick).
    const key = `${name}:${epoch}:${from}`;
    if (this.readyProposed.has(key)) return;
    this.readyProposed.add(key);
    void this.host
      .propose(() => {
        const now = this.view.get(name);
        if (!now || now.epoch !== epoch || now.host !== from || now.ready) return undefined;
        // A host that went down meanwhile is not ready: its Down brings a failover instead.
        const m = this.host.member(from);
        if (m?.state !== 'Up') return undefined;
        return { kind: 'keyservice', node: from, incarnation: m.incarnation, from: m.state, to: m.state, cause: 'failover complete', keyService: { name, epoch, phase: 'ready' } };
      })
      .catch(() => {})
      .finally(() => this.readyProposed.delete(key));
  }

  // ---------------------------------------------------------------- calling

  /**
   * Call a key service by name: to its current host, waiting (within the
   * deadline) while a failover is in progress. A call the host refused
   * ("not the host") or that was never sent goes to the next host; a call
   * that may have run on a host that failed is retried once on the new
   * host, and only for a method marked idempotent.
   */
  async call(name: string, method: string, args: unknown, options: CallOptions & { idempotent?: boolean } = {}): Promise<unknown> {
    const deadline = this.host.now() + (options.timeoutMs ?? 30_000);
    let retried = false;
    for (;;) {
      const info = await this.readyHost(name, deadline, options.signal);
      const how = this.howToCall(name);
      const idempotent = options.idempotent ?? how.idempotent.includes(method);
      const remaining = Math.max(1, deadline - this.host.now());
      try {
        const l = this.local.get(name);
        if (info.host === this.host.nodeNum && l) return await this.callLocal(l, method, args);
        return await this.host.ics().call(info.host!, { channel: 'keyservice', subservice: how.subservice }, method, args, { ...options, timeoutMs: remaining });
      } catch (err) {
        const e = err as ClusterInfraError & { sent?: string };
        const lost = e.code === 'ICS_ERR_NODE_DOWN' || e.code === 'ICS_ERR_UNAVAILABLE';
        // Refused or unreachable before anything was sent: the host may have just died (a failover
        // follows) or be briefly out of reach, so look again soon rather than only after a failover.
        const unreachable = err instanceof UnavailableError && !err.mayHaveRun;
        const didNotRun = isNotHost(err) || unreachable || (lost && e.sent === 'never-sent');
        const retry = didNotRun || (lost && idempotent && !retried);
        if (!retry) throw err;
        if (!didNotRun) retried = true;
        const until = unreachable ? Math.min(deadline, this.host.now() + this.host.rpcTimeoutMs()) : deadline;
        await this.waitChange(info.epoch, name, until, options.signal).catch((w: unknown) => {
          if (!unreachable || this.host.now() >= deadline || (w as ClusterInfraError).code !== 'CORE_ERR_TIMEOUT') throw w;
        });
      }
    }
  }

  /** Subservice and idempotent methods: from the local registration, or as its hosts announced them. */
  private howToCall(name: string): { subservice: number; idempotent: readonly string[] } {
    const l = this.local.get(name);
    if (l) return { subservice: l.reg.subservice, idempotent: l.reg.idempotent ?? [] };
    for (const m of this.host.members()) {
      const h = m.keyServices.find((k) => k.name === name);
      if (h?.subservice !== undefined) return { subservice: h.subservice, idempotent: h.idempotent ?? [] };
    }
    throw new InvalidArgumentError(`key service ${name} is not announced by any member`);
  }

  /** This node is the host: run the method here (no network, same checks). */
  private async callLocal(l: Local, method: string, args: unknown): Promise<unknown> {
    const h = l.reg.handlers && Object.hasOwn(l.reg.handlers, method) ? l.reg.handlers[method] : undefined;
    if (!h) throw new IcsStatusError('NOT_FOUND', `key service ${l.reg.name} has no method ${method}`);
    const ctx: HandlerContext = {
      caller: { nodeNum: this.host.nodeNum, incarnation: this.host.member(this.host.nodeNum)?.incarnation ?? 0 },
      service: `keyservice.${l.reg.name}`,
      method,
      signal: new AbortController().signal,
      deadline: undefined,
      priority: false,
      oneWay: false,
    };
    return this.serveMethod(l, h, args, ctx);
  }

  private async readyHost(name: string, deadline: number, signal?: AbortSignal): Promise<KeyServiceInfo> {
    for (;;) {
      const v = this.view.get(name);
      if (v?.ready && v.host !== undefined) return v;
      if (v?.halted) throw new KeyServiceHaltedError(name, v.reason ?? 'no eligible node left');
      if (!v && this.unknown(name)) throw new UnknownKeyServiceError(name);
      await this.waitChange(v?.epoch ?? -1, name, deadline, signal, true);
    }
  }

  /**
   * Nobody knows `name`: the history never placed it, no member announced it,
   * and this node does not register it. Only a member can tell (a node still
   * joining has no history yet, so its caller waits as before).
   */
  private unknown(name: string): boolean {
    if (this.local.has(name) || this.host.member(this.host.nodeNum) === undefined) return false;
    return !this.host.members().some((m) => m.keyServices.some((h) => h.name === name));
  }

  /** Wait until the key service's epoch passes `epoch` (or it becomes ready, or halts), within the deadline. */
  private waitChange(epoch: number, name: string, deadline: number, signal?: AbortSignal, readyIsChange = false): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const v = this.view.get(name);
        return v !== undefined && (v.epoch > epoch || (readyIsChange && v.ready) || v.halted);
      };
      if (check()) return resolve();
      if (signal?.aborted) return reject(new ClusterInfraError('CORE_ERR_ABORTED', 'cancelled while waiting for the key service'));
      const done = (err?: Error): void => {
        this.waiters.delete(waiter);
        timer.cancel();
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const waiter = (): void => {
        if (check()) done();
      };
      const onAbort = (): void => done(new ClusterInfraError('CORE_ERR_ABORTED', 'cancelled while waiting for the key service'));
      const timer = this.host.timer(Math.max(0, deadline - this.host.now()), () =>
        done(new ClusterInfraError('CORE_ERR_TIMEOUT', `key service ${name} not ready before the deadline`, { retryable: true })),
      );
      this.waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
