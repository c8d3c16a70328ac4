/**
 * Hosting: running the key services this node was given, the driver of
 * takeover.ts, whose pure rules decide what each committed transition does
 * to an activation, the steps of a takeover, each step of collecting a
 * hand-over or asking the master, and what a `pull` or `handover` gets.
 * Here are the callbacks, calls, waits and timers. An activation starts
 * when the history assigns a key service to this incarnation and ends with
 * a newer epoch, lost quorum, a hand-over, an eviction or close (K1, K5).
 * Taking over: collect a leaver's hand-over, run `failover`, pull every
 * survivor's data (`pullData`), give both to `failoverData`, report ready;
 * only then are methods served (K4). Answering: a survivor's `pull`, and
 * the old host's `handover` when the new host collects it (the old host
 * stops first: never two active hosts).
 */
import { UnavailableError } from '../errors/index.js';
import type { Ics } from '../ics/ics.js';
import { IcsStatusError } from '../ics/status.js';
import type { Handler, HandlerContext } from '../ics/types.js';
import type { NodeState, Transition } from '../clms/index.js';
import type { MoveRequest, WithdrawRequest } from './messages.js';
import { handoverBoundMs, historyHeaders, KS, type KeyServiceHost } from './ports.js';
import type { Activation, Local, Registrations } from './registrations.js';
import { notHost, otherHistory } from './routing.js';
import type { FailoverInput, KeyServiceContext, KeyServiceHandler, KeyServiceHandlerContext } from './types.js';
import type { KeyServiceView } from './view.js';
import type { Changes } from './waits.js';
import { type ActivationFacts, applied, awaitsReady, handoverAnswer, mayAct, mayServe, pullAnswer, stoppedHere, survivors } from './takeover.js';
import { Takeover } from './activation.js';
import { AskMaster, type AskInput } from './ask.js';
import { CollectHandover } from './collect.js';

/** An activation as the plain facts takeover.ts decides on. */
function factsOf(a: Activation | undefined): ActivationFacts | undefined {
  return a && { epoch: a.epoch, ended: a.controller.signal.aborted, serving: a.serving, handingOver: a.handingOver !== undefined };
}

/** What a node asks of the master over `clms.keyservice` (messages.ts). */
export type MasterRequest = { method: 'move'; args: MoveRequest } | { method: 'withdraw'; args: WithdrawRequest };

/** The master's side of a request (master.ts), for a node that is the master itself. */
export type OnMaster = (request: MasterRequest, from: number, incarnation: number) => Promise<boolean>;

export class Hosting {
  /** Key services this node is asking the master to place again (see placeStopped). */
  private readonly asking = new Set<string>();
  private closed = false;

  constructor(
    private readonly host: KeyServiceHost,
    private readonly view: KeyServiceView,
    private readonly local: Registrations,
    private readonly changes: Changes,
    private readonly onMaster: OnMaster,
  ) {}

  /** Serve `l`'s methods on `ics` (only the active host runs them). */
  serve(ics: Ics, l: Local): void {
    const handlers: Record<string, Handler> = {};
    for (const [m, h] of Object.entries(l.reg.handlers ?? {})) {
      handlers[m] = (args, ctx) => this.serveMethod(l, h, args, ctx);
    }
    ics.registerService({ channel: 'keyservice', subservice: l.reg.subservice, name: `keyservice.${l.reg.name}`, handlers });
  }

  private readonly leaseValid = (): boolean => this.host.leaseValid();

  serveMethod(l: Local, h: KeyServiceHandler, args: unknown, ctx: HandlerContext): unknown {
    const a = l.active;
    if (!mayServe(factsOf(a), this.leaseValid)) throw notHost(this.host.nodeNum, l.reg.name);
    const refused = otherHistory(this.host, `${l.reg.name}.${ctx.method}`, ctx);
    if (refused) throw refused;
    const kctx: KeyServiceHandlerContext = {
      ...ctx,
      // A getter of the ICS context, which a spread does not copy.
      headers: ctx.headers,
      keyService: l.reg.name,
      epoch: a!.epoch,
      // The handler stops when the caller gives up or the activation ends.
      signal: AbortSignal.any([ctx.signal, a!.controller.signal]),
    };
    return h(args, kctx);
  }

  /**
   * A committed `keyservice` transition of `l`: a newer epoch ends any older
   * activation here (K1); a hand-over keeps the data until the new host
   * collects it, but stops serving at once. An assignment to this
   * incarnation (not one replayed from a former one) starts a takeover.
   */
  applied(l: Local, t: Transition, ks: NonNullable<Transition['keyService']>, previousHost: number | undefined): void {
    const me = { node: this.host.nodeNum, incarnation: this.host.member(this.host.nodeNum)?.incarnation };
    for (const step of applied(me, factsOf(l.active), t, ks)) {
      switch (step.kind) {
        case 'begin-handover':
          this.beginHandover(l, l.active!);
          break;
        case 'deactivate':
          this.deactivate(l, step.why);
          break;
        case 'take-over':
          void this.takeOver(l, step.epoch, previousHost, step.handoverFrom);
          break;
      }
    }
  }

  /** Quorum lost: a node without quorum stops what it hosts at once (K5). */
  quorumLost(): void {
    for (const l of this.local.values()) if (l.active) this.deactivate(l, 'lost quorum');
  }

  /**
   * Every key service this node is the recorded host of but runs no
   * activation of: ask the master to place it again, and ask again after a
   * while for as long as that stays so (a master that just changed, or whose
   * view lagged, may refuse; nobody else would ever ask).
   */
  placeStopped(): void {
    if (this.closed) return;
    const me = { node: this.host.nodeNum, incarnation: this.host.member(this.host.nodeNum)?.incarnation };
    for (const l of this.local.values()) {
      const name = l.reg.name;
      const v = this.view.info(name);
      if (!stoppedHere(v, this.view.hostIncarnationOf(name), me, l.active !== undefined, this.asking.has(name))) continue;
      this.asking.add(name);
      void this.requestMove(name, v!.epoch, false)
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
  }

  deactivate(l: Local, why: string): void {
    const a = l.active;
    if (!a) return;
    l.active = undefined;
    a.handingOver?.cancel();
    this.host.log.info({ keyService: l.reg.name, epoch: a.epoch, why }, 'key service deactivated');
    a.controller.abort(new UnavailableError(`key service ${l.reg.name} epoch ${a.epoch} ended: ${why}`));
    this.host.emitActivity({ name: l.reg.name, epoch: a.epoch, active: false, reason: why });
    this.changes.wake();
  }

  /** A newer epoch goes to a node that will collect our data: stop serving now, stop entirely once collected (or after the bound). */
  private beginHandover(l: Local, a: Activation): void {
    if (a.handingOver) return;
    a.serving = false;
    a.handingOver = this.host.timer(handoverBoundMs(this.host), () => {
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
      isActive: () => l.active === a && !a.handingOver && mayAct(factsOf(a), this.leaseValid),
    };
  }

  /**
   * This node was assigned: collect a hand-over, fail over, pull data,
   * report ready, as activation.ts (`Takeover`) says, step by step.
   */
  private async takeOver(l: Local, epoch: number, previousHost: number | undefined, handoverFrom: number | undefined): Promise<void> {
    const m = new Takeover(epoch, handoverFrom, Boolean(l.reg.pullData));
    let a: Activation | undefined;
    let ctx: KeyServiceContext | undefined;
    const pulled = new Map<number, unknown>();
    let handover: FailoverInput['handover'];
    const ended = (): boolean => l.active !== a || a!.controller.signal.aborted;
    m.step({ kind: 'start', activeEpoch: l.active?.epoch });
    for (;;) {
      for (const e of m.ready()) {
        switch (e.kind) {
          case 'finished':
            return;
          case 'deactivate':
            this.deactivate(l, e.why);
            continue;
          case 'activate':
            a = { epoch, controller: new AbortController(), previousHost: previousHost ?? handoverFrom, serving: false, handingOver: undefined };
            l.active = a;
            // A lease of our own by the time we serve (a master holds one already).
            this.host.renewLease();
            ctx = this.ctx(l, a);
            continue;
          case 'failed':
            this.host.log.error({ keyService: l.reg.name, epoch, err: e.error }, 'key service failover failed');
            continue;
          case 'place-again-later':
            this.host.timer(this.host.failureTimeoutMs(), () => this.placeStopped());
            continue;
        }
        try {
          switch (e.kind) {
            case 'collect-handover':
              handover = await this.collectHandover(l.reg.name, epoch, e.from);
              break;
            case 'failover':
              await l.reg.failover?.(ctx!);
              break;
            case 'pull':
              await this.pullFromSurvivors(l, ctx!, e.skip, pulled);
              break;
            case 'failover-data':
              await l.reg.failoverData?.({ pulled, handover }, ctx!);
              break;
            case 'check':
              break;
            case 'ready':
              a!.serving = true;
              this.host.emitActivity({ name: l.reg.name, epoch, active: true, reason: e.reason });
              this.host.reportReady(l.reg.name, epoch);
              continue;
          }
          m.step({ kind: 'done', ended: ended() });
        } catch (err) {
          m.step({ kind: 'failed', error: (err as Error).message, current: l.active === a });
        }
      }
    }
  }

  /**
   * `pullData` on every Up node that registered the key service (here
   * locally), results by node; a survivor that fails is logged and left out.
   */
  private async pullFromSurvivors(l: Local, ctx: KeyServiceContext, skip: number | undefined, results: Map<number, unknown>): Promise<void> {
    await Promise.all(
      survivors(l.reg.name, this.host.nodeNum, skip, this.host.members()).map(async (node) => {
        try {
          const data =
            node === this.host.nodeNum
              ? await l.reg.pullData!(ctx)
              : await this.host.ics().call(node, KS, 'pull', { name: l.reg.name, epoch: ctx.epoch }, { timeoutMs: this.host.rpcTimeoutMs() * 10, headers: historyHeaders(this.host) });
          results.set(node, data ?? null);
        } catch (err) {
          this.host.log.warn({ keyService: l.reg.name, from: node, err: (err as Error).message }, 'pullData failed on a survivor');
        }
      }),
    );
  }

  /**
   * Ask the old host for its data, until it answers or the hand-over bound
   * passes, as collect.ts (`CollectHandover`) says: without an answer wait
   * the bound out (plus the failure timeout, after which a cut-off host
   * has lost its lease), or what is left of its lease once it is Down, so
   * two hosts are never active at once.
   */
  private async collectHandover(name: string, epoch: number, from: number): Promise<FailoverInput['handover']> {
    const m = new CollectHandover(this.host.now() + handoverBoundMs(this.host), { rpcTimeoutMs: this.host.rpcTimeoutMs(), failureTimeoutMs: this.host.failureTimeoutMs() });
    const fromState = (): NodeState | undefined => this.host.member(from)?.state;
    m.step({ kind: 'look', now: this.host.now() });
    for (;;) {
      for (const e of m.ready()) {
        switch (e.kind) {
          case 'settle':
            return e.handover && { from, data: e.handover.data };
          case 'call':
            try {
              const data = await this.host.ics().call(from, KS, 'handover', { name, epoch }, { timeoutMs: e.timeoutMs, headers: historyHeaders(this.host) });
              m.step({ kind: 'answered', data });
            } catch (err) {
              m.step({ kind: 'failed', error: (err as Error).message, now: this.host.now(), fromState: fromState() });
            }
            break;
          case 'await-down':
            await this.changes.waitFor(() => fromState() === 'Down', e.ms);
            m.step({ kind: 'awaited-down', now: this.host.now(), fromState: fromState() });
            break;
          case 'down-wait':
            m.step({ kind: 'down-wait-left', ms: this.downWaitLeft(from, this.host.member(from)?.incarnation, this.host.failureTimeoutMs()) });
            break;
          case 'not-yet':
            this.host.log.debug({ keyService: name, from, err: e.error }, 'hand-over not collected yet');
            break;
          case 'gave-up':
            this.host.log.warn({ keyService: name, from }, 'hand-over data not collected: waiting for the old host to stop by itself');
            break;
          case 'sleep':
            await this.changes.sleep(e.ms);
            m.step({ kind: 'slept', now: this.host.now() });
            break;
        }
      }
    }
  }

  /** Time left of `waitMs` since this node learnt (node, incarnation) went down (view.ts). */
  downWaitLeft(node: number, incarnation: number | undefined, waitMs: number): number {
    return this.view.downWaitLeft(node, incarnation, waitMs, this.host.now(), Math.max(this.host.fenceWaitMs(), this.host.failureTimeoutMs()));
  }

  /** A new host asks this survivor for its data. */
  async onPull(p: { name: string; epoch: number }): Promise<unknown> {
    const l = this.local.get(p.name);
    const v = this.view.info(p.name);
    switch (pullAnswer(Boolean(l?.reg.pullData), v, p.epoch)) {
      case 'nothing':
        return null;
      case 'stale':
        // Only for the current epoch: a stale host asking gets nothing.
        throw new IcsStatusError('FAILED_PRECONDITION', `epoch ${p.epoch} of ${p.name} is stale`);
      case 'serve': {
        const ctx: KeyServiceContext = { name: p.name, epoch: p.epoch, node: this.host.nodeNum, previousHost: v?.host, signal: new AbortController().signal, isActive: () => false };
        return (await l!.reg.pullData!(ctx)) ?? null;
      }
    }
  }

  /** The new host asks for our data: only the host the history names for that epoch, once we have seen it. */
  async onHandover(p: { name: string; epoch: number }, caller: number): Promise<unknown> {
    const l = this.local.get(p.name);
    const a = l?.active;
    switch (handoverAnswer(factsOf(a), this.view.info(p.name), p.epoch, caller)) {
      case 'nothing':
        return null; // nothing active here: nothing to hand over
      case 'not-seen':
        throw new IcsStatusError('FAILED_PRECONDITION', `hand-over of ${p.name} epoch ${p.epoch} not seen here yet`);
      case 'serve': {
        // Stop first, then give the data away: never two active hosts.
        const data = await l!.reg.handover?.(this.ctx(l!, a!));
        if (l!.active === a) this.deactivate(l!, `handed over to node ${caller}`);
        return data ?? null;
      }
    }
  }

  /**
   * This node took over `name` at `epoch` and the history does not say it
   * is ready yet: its ready report is still owed (the master that
   * acknowledged it may have lost the commit, and a new master would never
   * learn it otherwise).
   */
  awaitsReady(name: string, epoch: number): boolean {
    return awaitsReady(this.view.info(name), this.host.nodeNum, epoch, this.local.get(name)?.active?.epoch);
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
    for (const l of this.local.values()) if (l.active) moving.push(this.handOver(l, l.active));
    await Promise.all(moving);
  }

  /** Move `l` (active as `a`) elsewhere with its data: resolves once `a` ended, or the move was refused, or after the bound. */
  async handOver(l: Local, a: Activation): Promise<void> {
    if (!(await this.requestMove(l.reg.name, a.epoch, true))) return;
    await this.changes.waitFor(() => l.active !== a, handoverBoundMs(this.host) * 2);
  }

  /** Ask the master to place `name` again (`handover`: elsewhere, collecting our data). True when it did. */
  private requestMove(name: string, epoch: number, handover: boolean): Promise<boolean> {
    return this.askMaster(name, { method: 'move', args: { name, epoch, handover } });
  }

  /**
   * Ask the master (this node itself, or over `clms.keyservice`) until one
   * answers, the hand-over bound passes or this node follows another
   * cluster history than the one the request was made in, as ask.ts
   * (`AskMaster`) says: its answer, else false. Every attempt carries that
   * history.
   */
  async askMaster(name: string, request: MasterRequest): Promise<boolean> {
    const asked = this.host.historyId();
    const headers = historyHeaders({ historyId: () => asked });
    const m = new AskMaster(this.host.nodeNum, asked, this.host.now() + handoverBoundMs(this.host), this.host.rpcTimeoutMs());
    const look = (): AskInput => ({ kind: 'look', now: this.host.now(), master: this.host.master(), history: this.host.historyId() });
    m.step(look());
    for (;;) {
      for (const e of m.ready()) {
        switch (e.kind) {
          case 'settle':
            return e.value;
          case 'ask-self':
          case 'call':
            try {
              const value =
                e.kind === 'ask-self'
                  ? await this.onMaster(request, this.host.nodeNum, this.host.member(this.host.nodeNum)?.incarnation ?? 0)
                  : ((await this.host.ics().call(e.master, KS, request.method, request.args, { timeoutMs: e.timeoutMs, headers })) as boolean);
              m.step({ kind: 'answered', value });
            } catch (err) {
              m.step({ kind: 'failed', error: (err as Error).message });
            }
            break;
          case 'retrying':
            this.host.log.debug({ keyService: name, err: e.error }, `${request.method} request failed; retrying`);
            break;
          case 'sleep':
            await this.changes.sleep(e.ms);
            m.step(look());
            break;
        }
      }
    }
  }
}
