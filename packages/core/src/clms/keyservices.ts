/**
 * Key services: named singletons that live on exactly one node and fail
 * over with their data (the seeds' key services).
 *
 * Placement and every move are transitions in the history (`keyservice`
 * kind), so every node knows where each key service lives and since when.
 * Each activation has an epoch that only grows (K2); a host acts only while
 * the epoch it was given is the newest it has seen and it has a quorum, and
 * its `signal` aborts the moment either stops being true (K1, K5).
 *
 * Failover (K4): the master assigns a new host only once the old host's
 * node is Down, that is after fencing and after every node finished its
 * cleanup for it. The new host runs `failover`, then pulls data from every
 * surviving node (`pullData`), hands the results to `failoverData`, and
 * reports; only then is the key service marked ready, clusterwide.
 * A clean leave hands the service over instead: the old host deactivates and
 * returns its data, then the new host activates with it, with no moment where
 * both are active.
 */
import { z } from 'zod';
import { ClusterInfraError, InvalidArgumentError, UnavailableError } from '../errors/index.js';
import type { Ics } from '../ics/ics.js';
import { IcsStatusError } from '../ics/status.js';
import type { CallOptions, Handler, HandlerContext } from '../ics/types.js';
import type { TimerHandle } from '../clock/index.js';
import type { Logger } from '../logging/index.js';
import type { HostedKeyService, KeyServiceInfo, MemberInfo, Transition } from './types.js';

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
  /** Aborts when this activation ends (a newer epoch, quorum loss, close). */
  readonly signal: AbortSignal;
}

export interface KeyServiceRegistration {
  name: string;
  /** The cluster is not formed until a critical key service has a ready host, and halts if none is left. @default false */
  critical?: boolean;
  /** The subservice its methods use on the `keyservice` channel (1–65535). */
  subservice: number;
  /** Methods, served only by the active host (others answer UNAVAILABLE, and the caller goes to the host). */
  handlers?: Record<string, Handler>;
  /** Methods safe to run twice: a call is retried once on the new host after a failover. */
  idempotent?: readonly string[];
  /** Runs on the new host when it takes over (before data is pulled). */
  failover?: (ctx: KeyServiceContext) => void | Promise<void>;
  /** Runs on every surviving node during a failover; its result goes to the new host. */
  pullData?: (ctx: KeyServiceContext) => unknown;
  /** Runs on the new host with every survivor's `pullData` result (node → data). */
  failoverData?: (results: Map<number, unknown>, ctx: KeyServiceContext) => void | Promise<void>;
  /** Planned hand-over: runs on the old host, which then stops; the result goes to the new host's `failoverData` under the old host's number. */
  handover?: (ctx: KeyServiceContext) => unknown;
}

interface Local {
  reg: KeyServiceRegistration;
  /** The activation this node runs, if any. */
  active: { epoch: number; controller: AbortController } | undefined;
}

/** What the manager needs from its ClusterNode. */
export interface KeyServiceHost {
  readonly nodeNum: number;
  readonly log: Logger;
  ics(): Ics;
  isMaster(): boolean;
  hasQuorum(): boolean;
  members(): MemberInfo[];
  member(node: number): MemberInfo | undefined;
  propose(build: () => Omit<Transition, 'number' | 'term' | 'time'> | undefined): Promise<Transition | undefined>;
  /** Report to the master that a key service is ready (or ask it to place). */
  reportReady(name: string, epoch: number): void;
  emitKeyService(info: KeyServiceInfo): void;
  emitFormed(formed: boolean): void;
  emitHalted(name: string, reason: string): void;
  rpcTimeoutMs(): number;
  now(): number;
  /** A timer on the injected clock. */
  timer(ms: number, fn: () => void): TimerHandle;
}

const pullSchema = z.strictObject({ name: z.string().min(1).max(200), epoch: z.number().int().min(1) });

export class KeyServiceManager {
  private readonly local = new Map<string, Local>();
  /** The clusterwide view, from the history. */
  private readonly view = new Map<string, KeyServiceInfo>();
  private formedState = false;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly host: KeyServiceHost) {}

  register(reg: KeyServiceRegistration): void {
    if (this.local.has(reg.name)) throw new InvalidArgumentError(`key service ${reg.name} is registered already`);
    if (!Number.isInteger(reg.subservice) || reg.subservice < 1 || reg.subservice > 0xffff) {
      throw new InvalidArgumentError(`key service ${reg.name}: subservice must be 1–65535`);
    }
    const l: Local = { reg, active: undefined };
    this.local.set(reg.name, l);
    if (this.ics) this.serve(this.ics, l);
  }

  /** What this node announces when it joins: the key services it may host, in registration order. */
  hosted(): HostedKeyService[] {
    return [...this.local.values()].map((l) => ({ name: l.reg.name, critical: l.reg.critical ?? false }));
  }

  /** Serve every registered key service's methods (and the pull/hand-over protocol) on `ics`. */
  attach(ics: Ics): void {
    ics.registerService({
      ...KS,
      name: 'clms.keyservice',
      handlers: {
        pull: (a) => this.onPull(pullSchema.parse(a)),
        handover: (a) => this.onHandover(pullSchema.parse(a)),
      },
    });
    this.ics = ics;
    for (const l of this.local.values()) this.serve(ics, l);
  }

  private ics: Ics | undefined;

  private serve(ics: Ics, l: Local): void {
    const handlers: Record<string, Handler> = {};
    for (const [m, h] of Object.entries(l.reg.handlers ?? {})) {
      handlers[m] = (args, ctx) => this.serveMethod(l, h, args, ctx);
    }
    ics.registerService({ channel: 'keyservice', subservice: l.reg.subservice, name: `keyservice.${l.reg.name}`, handlers });
  }

  /** Forget the clusterwide view (a joiner rebuilds it from the history it installs). */
  reset(): void {
    this.view.clear();
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

  private serveMethod(l: Local, h: Handler, args: unknown, ctx: HandlerContext): unknown {
    const active = l.active;
    if (!active || active.controller.signal.aborted || !this.host.hasQuorum()) {
      throw new IcsStatusError('UNAVAILABLE', `node ${this.host.nodeNum} is not the active host of ${l.reg.name}`, { notHost: true });
    }
    return h(args, ctx);
  }

  // ---------------------------------------------------------------- applying the history

  /** A committed transition: update the view; start or stop local activations. */
  applied(t: Transition): void {
    if (t.kind === 'keyservice' && t.keyService) {
      const ks = t.keyService;
      const critical = this.isCritical(ks.name);
      const info: KeyServiceInfo = {
        name: ks.name,
        host: ks.phase === 'assigned' || ks.phase === 'ready' ? t.node : undefined,
        epoch: ks.epoch,
        ready: ks.phase === 'ready',
        critical,
        halted: ks.phase === 'halted',
        since: t.number,
      };
      const before = this.view.get(ks.name);
      this.view.set(ks.name, info);
      // A newer epoch ends any older activation here (K1).
      const l = this.local.get(ks.name);
      if (l?.active && l.active.epoch < ks.epoch && !(ks.phase === 'ready' && t.node === this.host.nodeNum)) {
        if (!(ks.phase === 'assigned' && t.node === this.host.nodeNum && l.active.epoch === ks.epoch)) this.deactivate(l, 'a newer epoch began');
      }
      if (ks.phase === 'assigned' && t.node === this.host.nodeNum && l) void this.takeOver(l, ks.epoch, before?.host, ks.handoverFrom);
      if (ks.phase === 'halted') this.host.emitHalted(ks.name, t.cause);
      this.host.emitKeyService(info);
      for (const w of [...this.waiters]) w();
    }
    if (t.kind === 'state' && (t.to === 'ComingUp' || t.to === 'Up')) {
      // New critical key services may have been announced.
      for (const h of t.keyServices ?? []) {
        const v = this.view.get(h.name);
        if (v && h.critical && !v.critical) this.view.set(h.name, { ...v, critical: true });
      }
    }
    this.updateFormed();
  }

  private isCritical(name: string): boolean {
    for (const m of this.host.members()) for (const h of m.keyServices) if (h.name === name && h.critical) return true;
    return this.local.get(name)?.reg.critical ?? false;
  }

  private updateFormed(): void {
    const critical = new Set<string>();
    for (const m of this.host.members()) {
      if (m.state !== 'Up' && m.state !== 'ComingUp') continue;
      for (const h of m.keyServices) if (h.critical) critical.add(h.name);
    }
    let formed = true;
    for (const name of critical) if (!this.view.get(name)?.ready) formed = false;
    if (formed !== this.formedState) {
      this.formedState = formed;
      this.host.emitFormed(formed);
    }
  }

  /** Quorum lost: a node without quorum stops what it hosts at once (K5). */
  quorumLost(): void {
    for (const l of this.local.values()) if (l.active) this.deactivate(l, 'lost quorum');
  }

  close(): void {
    for (const l of this.local.values()) if (l.active) this.deactivate(l, 'node closed');
  }

  private deactivate(l: Local, why: string): void {
    const a = l.active;
    if (!a) return;
    l.active = undefined;
    this.host.log.info({ keyService: l.reg.name, epoch: a.epoch, why }, 'key service deactivated');
    a.controller.abort(new UnavailableError(`key service ${l.reg.name} epoch ${a.epoch} ended: ${why}`));
  }

  private ctx(l: Local, epoch: number, previousHost: number | undefined, signal: AbortSignal): KeyServiceContext {
    return { name: l.reg.name, epoch, node: this.host.nodeNum, previousHost, signal };
  }

  /** This node was assigned: fail over (or take a hand-over), pull data, report ready. */
  private async takeOver(l: Local, epoch: number, previousHost: number | undefined, handoverFrom: number | undefined): Promise<void> {
    if (l.active?.epoch === epoch) return;
    if (l.active) this.deactivate(l, 'reassigned');
    const controller = new AbortController();
    l.active = { epoch, controller };
    const ctx = this.ctx(l, epoch, previousHost ?? handoverFrom, controller.signal);
    try {
      await l.reg.failover?.(ctx);
      const results = new Map<number, unknown>();
      if (handoverFrom !== undefined) {
        const data = await this.host.ics().call(handoverFrom, KS, 'handover', { name: l.reg.name, epoch }, { timeoutMs: this.host.rpcTimeoutMs() * 10 }).catch(() => undefined);
        results.set(handoverFrom, data ?? null);
      }
      if (l.reg.pullData) {
        const survivors = this.host.members().filter((m) => m.state === 'Up' && m.node !== handoverFrom);
        await Promise.all(
          survivors.map(async (m) => {
            try {
              const data =
                m.node === this.host.nodeNum
                  ? await l.reg.pullData!(ctx)
                  : await this.host.ics().call(m.node, KS, 'pull', { name: l.reg.name, epoch }, { timeoutMs: this.host.rpcTimeoutMs() * 10 });
              results.set(m.node, data);
            } catch (err) {
              this.host.log.warn({ keyService: l.reg.name, from: m.node, err: (err as Error).message }, 'pullData failed on a survivor');
            }
          }),
        );
      }
      if (controller.signal.aborted) return;
      await l.reg.failoverData?.(results, ctx);
      if (controller.signal.aborted) return;
      this.host.reportReady(l.reg.name, epoch);
    } catch (err) {
      this.host.log.error({ keyService: l.reg.name, epoch, err: (err as Error).message }, 'key service failover failed');
      this.deactivate(l, 'failover failed');
    }
  }

  private async onPull(p: { name: string; epoch: number }): Promise<unknown> {
    const l = this.local.get(p.name);
    const v = this.view.get(p.name);
    if (!l?.reg.pullData) return null;
    // Only for the current epoch: a stale host asking gets nothing.
    if (v && v.epoch > p.epoch) throw new IcsStatusError('FAILED_PRECONDITION', `epoch ${p.epoch} of ${p.name} is stale`);
    const controller = new AbortController();
    return (await l.reg.pullData(this.ctx(l, p.epoch, v?.host, controller.signal))) ?? null;
  }

  private async onHandover(p: { name: string; epoch: number }): Promise<unknown> {
    const l = this.local.get(p.name);
    if (!l?.active) return null;
    const ctx = this.ctx(l, l.active.epoch, undefined, l.active.controller.signal);
    // Stop first, then give the data away: never two active hosts.
    const data = await l.reg.handover?.(ctx);
    this.deactivate(l, 'handed over');
    return data ?? null;
  }

  // ---------------------------------------------------------------- master: placement

  /**
   * On the master, after every transition: give every key service without a
   * live host a new one, in the order the nodes announced them, as soon as
   * the old host's node is Down (K4) or leaving (hand-over).
   */
  place(): void {
    if (!this.host.isMaster()) return;
    const members = this.host.members();
    const names = new Map<string, boolean>();
    for (const m of members) {
      if (m.state !== 'Up') continue;
      for (const h of m.keyServices) names.set(h.name, (names.get(h.name) ?? false) || h.critical);
    }
    for (const v of this.view.values()) if (!names.has(v.name)) names.set(v.name, v.critical);
    for (const [name, critical] of names) {
      const v = this.view.get(name);
      const hostState = v?.host !== undefined ? this.host.member(v.host)?.state : undefined;
      if (v?.host !== undefined && (hostState === 'Up' || hostState === 'ComingUp')) continue;
      if (v?.host !== undefined && hostState === 'GoingDown') continue; // wait for its Down: cleanup and fencing first
      const leaving = v?.host !== undefined && hostState === 'ShuttingDown' ? v.host : undefined;
      const eligible = this.eligible(name, members);
      const epoch = (v?.epoch ?? 0) + 1;
      if (eligible === undefined) {
        if (v?.halted || (!critical && v && v.host === undefined)) continue;
        void this.host
          .propose(() =>
            this.stillNeeds(name, v?.since)
              ? {
                  kind: 'keyservice',
                  node: this.host.nodeNum,
                  incarnation: this.host.member(this.host.nodeNum)?.incarnation ?? 0,
                  from: 'Up',
                  to: 'Up',
                  cause: critical ? `no eligible node left for critical key service ${name}` : `no eligible node for ${name}`,
                  keyService: { name, epoch: v?.epoch ?? 0, phase: critical ? 'halted' : 'vacant' },
                }
              : undefined,
          )
          .catch(() => {});
        continue;
      }
      const target = this.host.member(eligible)!;
      void this.host
        .propose(() =>
          this.stillNeeds(name, v?.since)
            ? {
                kind: 'keyservice',
                node: eligible,
                incarnation: target.incarnation,
                from: target.state,
                to: target.state,
                cause: leaving !== undefined ? `hand-over from node ${leaving}` : v?.host !== undefined ? `failover from node ${v.host}` : 'placed',
                keyService: { name, epoch, phase: 'assigned', ...(leaving !== undefined ? { handoverFrom: leaving } : {}) },
              }
            : undefined,
        )
        .catch(() => {});
    }
  }

  /** The view did not change since the proposal was made (no double placement). */
  private stillNeeds(name: string, since: number | undefined): boolean {
    return this.view.get(name)?.since === since;
  }

  private eligible(name: string, members: MemberInfo[]): number | undefined {
    let best: { node: number; rank: number } | undefined;
    for (const m of members) {
      if (m.state !== 'Up') continue;
      const rank = m.keyServices.findIndex((h) => h.name === name);
      if (rank < 0) continue;
      if (!best || rank < best.rank || (rank === best.rank && m.node < best.node)) best = { node: m.node, rank };
    }
    return best?.node;
  }

  /** The master got `ready` from a host: commit it (if still its epoch). */
  commitReady(name: string, epoch: number, from: number): void {
    const v = this.view.get(name);
    if (!v || v.epoch !== epoch || v.host !== from || v.ready) return;
    const m = this.host.member(from);
    if (!m) return;
    void this.host
      .propose(() => {
        const now = this.view.get(name);
        if (!now || now.epoch !== epoch || now.host !== from || now.ready) return undefined;
        return { kind: 'keyservice', node: from, incarnation: m.incarnation, from: m.state, to: m.state, cause: 'failover complete', keyService: { name, epoch, phase: 'ready' } };
      })
      .catch(() => {});
  }

  // ---------------------------------------------------------------- calling

  /**
   * Call a key service by name: to its current host, waiting (within the
   * deadline) while a failover is in progress; retried once on the new host
   * when the method is idempotent and the first host went down.
   */
  async call(name: string, method: string, args: unknown, options: CallOptions & { idempotent?: boolean } = {}): Promise<unknown> {
    const deadline = this.host.now() + (options.timeoutMs ?? 30_000);
    const l = this.local.get(name);
    const idempotent = options.idempotent ?? l?.reg.idempotent?.includes(method) ?? false;
    let retried = false;
    for (;;) {
      const info = await this.readyHost(name, deadline, options.signal);
      const subservice = l?.reg.subservice ?? (await this.subserviceOf(name));
      const remaining = Math.max(1, deadline - this.host.now());
      try {
        if (info.host === this.host.nodeNum && l) return await this.callLocal(l, method, args);
        return await this.host.ics().call(info.host!, { channel: 'keyservice', subservice }, method, args, { ...options, timeoutMs: remaining });
      } catch (err) {
        const e = err as ClusterInfraError & { details?: { notHost?: boolean }; status?: string; mayHaveRun?: boolean; sent?: string };
        // "Not the host": it did not run; look again.
        if (e.details?.notHost) {
          await this.waitChange(info.epoch, name, deadline, options.signal);
          continue;
        }
        const lost = e.code === 'ICS_ERR_NODE_DOWN' || e.code === 'ICS_ERR_UNAVAILABLE';
        const neverRan = e.sent === 'never-sent';
        if (lost && (neverRan || (idempotent && !retried))) {
          if (!neverRan) retried = true;
          await this.waitChange(info.epoch, name, deadline, options.signal);
          continue;
        }
        throw err;
      }
    }
  }

  /** This node is the host: run the method here (no network, same checks). */
  private async callLocal(l: Local, method: string, args: unknown): Promise<unknown> {
    const h = l.reg.handlers && Object.hasOwn(l.reg.handlers, method) ? l.reg.handlers[method] : undefined;
    if (!h) throw new IcsStatusError('NOT_FOUND', `key service ${l.reg.name} has no method ${method}`);
    const ctx: HandlerContext = {
      caller: { nodeNum: this.host.nodeNum, incarnation: this.host.member(this.host.nodeNum)?.incarnation ?? 0 },
      service: `keyservice.${l.reg.name}`,
      method,
      signal: l.active?.controller.signal ?? AbortSignal.abort(),
      deadline: undefined,
      priority: false,
      oneWay: false,
    };
    return this.serveMethod(l, h, args, ctx);
  }

  private async subserviceOf(name: string): Promise<number> {
    throw new InvalidArgumentError(`key service ${name} is not registered on node ${this.host.nodeNum}: register it to call it by name`);
  }

  private async readyHost(name: string, deadline: number, signal?: AbortSignal): Promise<KeyServiceInfo> {
    for (;;) {
      const v = this.view.get(name);
      if (v?.ready && v.host !== undefined) return v;
      if (v?.halted) throw new UnavailableError(`key service ${name} is halted: no eligible node`);
      await this.waitChange(v?.epoch ?? -1, name, deadline, signal, true);
    }
  }

  /** Wait until the key service's epoch passes `epoch` (or it becomes ready), within the deadline. */
  private waitChange(epoch: number, name: string, deadline: number, signal?: AbortSignal, readyIsChange = false): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const v = this.view.get(name);
        return v !== undefined && (v.epoch > epoch || (readyIsChange && v.ready) || v.halted);
      };
      if (check()) return resolve();
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
