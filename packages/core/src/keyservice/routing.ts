/**
 * Calling a key service by name (docs/key-services.md, "Using it"): find
 * its ready host in the view, call it there (or here, without the network),
 * and go to the next host when the call did not run; a name nobody knows
 * fails at once with UnknownKeyServiceError, a halted one with
 * KeyServiceHaltedError.
 */
import { ClusterInfraError, InvalidArgumentError, KeyServiceHaltedError, KeyServiceHistoryError, UnavailableError, UnknownKeyServiceError } from '../errors/index.js';
import { IcsStatusError } from '../ics/status.js';
import type { CallOptions, HandlerContext } from '../ics/types.js';
import type { KeyServiceInfo } from '../clms/index.js';
import { HISTORY_HEADER, historyHeaders, type KeyServiceHost } from './ports.js';
import type { Local, Registrations } from './registrations.js';
import type { KeyServiceHandler } from './types.js';
import type { KeyServiceView } from './view.js';
import type { Changes } from './waits.js';

/** A "not the host" answer: the method did not run, so any call may go elsewhere. */
export function notHost(node: number, name: string): IcsStatusError {
  return new IcsStatusError('FAILED_PRECONDITION', `node ${node} is not the active host of ${name}`, { notHost: true });
}

function isNotHost(err: unknown): boolean {
  const details = (err as { details?: unknown } | undefined)?.details;
  return typeof details === 'object' && details !== null && (details as { notHost?: unknown }).notHost === true;
}

/**
 * A call of another cluster history than this node's (or of none): refused
 * before anything runs (docs/key-services.md, "Bound to one history"). A
 * node's calls to itself are of its own history. Undefined: serve it.
 */
export function otherHistory(host: Pick<KeyServiceHost, 'nodeNum' | 'historyId'>, what: string, ctx: Pick<HandlerContext, 'caller' | 'headers'>): IcsStatusError | undefined {
  if (ctx.caller.nodeNum === host.nodeNum) return undefined;
  const theirs = ctx.headers?.[HISTORY_HEADER] ?? null;
  const ours = host.historyId();
  if (theirs !== null && theirs === ours) return undefined;
  return new IcsStatusError('FAILED_PRECONDITION', `node ${host.nodeNum} follows cluster history ${ours ?? 'none'}, the caller ${theirs ?? 'none'}: ${what} refused`, {
    otherHistory: { caller: theirs, host: ours },
  });
}

/** The host's history from a refusal by `otherHistory`, or undefined for any other error. */
function refusedHistory(err: unknown): { host: string | null } | undefined {
  const details = (err as { details?: unknown } | undefined)?.details;
  const h = typeof details === 'object' && details !== null ? (details as { otherHistory?: { host?: unknown } }).otherHistory : undefined;
  if (typeof h !== 'object' || h === null) return undefined;
  return { host: typeof h.host === 'string' ? h.host : null };
}

/** Runs a method on this node's activation, with the checks a remote call gets (host.ts). */
export type ServeMethod = (l: Local, h: KeyServiceHandler, args: unknown, ctx: HandlerContext) => unknown;

export class Router {
  constructor(
    private readonly host: KeyServiceHost,
    private readonly view: KeyServiceView,
    private readonly local: Registrations,
    private readonly changes: Changes,
    private readonly serveMethod: ServeMethod,
  ) {}

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
      // The call is bound to the history this node routed it by (see otherHistory).
      const history = this.host.historyId();
      try {
        const l = this.local.get(name);
        if (info.host === this.host.nodeNum && l) return await this.callLocal(l, method, args);
        const headers = { ...options.headers, ...historyHeaders(this.host) };
        return await this.host.ics().call(info.host!, { channel: 'keyservice', subservice: how.subservice }, method, args, { ...options, timeoutMs: remaining, headers });
      } catch (err) {
        const e = err as ClusterInfraError & { sent?: string };
        const lost = e.code === 'ICS_ERR_NODE_DOWN' || e.code === 'ICS_ERR_UNAVAILABLE';
        // Refused or unreachable before anything was sent: the host may have just died (a failover
        // follows) or be briefly out of reach, so look again soon rather than only after a failover.
        const unreachable = err instanceof UnavailableError && !err.mayHaveRun;
        // The host follows another history: nothing ran; wait for this node's view to change.
        const refused = refusedHistory(err);
        const didNotRun = isNotHost(err) || refused !== undefined || unreachable || (lost && e.sent === 'never-sent');
        const retry = didNotRun || (lost && idempotent && !retried);
        if (!retry) throw err;
        if (!didNotRun) retried = true;
        const until = unreachable ? Math.min(deadline, this.host.now() + this.host.rpcTimeoutMs()) : deadline;
        await this.waitChange(info.epoch, name, until, options.signal).catch((w: unknown) => {
          const timedOut = (w as ClusterInfraError).code === 'CORE_ERR_TIMEOUT';
          if (refused && timedOut) throw new KeyServiceHistoryError(name, info.host!, history, refused.host);
          if (!unreachable || this.host.now() >= deadline || !timedOut) throw w;
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
      const v = this.view.info(name);
      if (v?.ready && v.host !== undefined) return v;
      if (v?.halted) throw new KeyServiceHaltedError(name, v.reason ?? 'no eligible node left');
      if (v?.host === undefined && this.unknown(name)) throw new UnknownKeyServiceError(name);
      await this.waitChange(v?.epoch ?? -1, name, deadline, signal, true);
    }
  }

  /**
   * Nobody knows `name`: no member announces it (none ever did, or every one
   * that did unregistered it) and this node does not register it; the caller
   * checks that the history has no host for it either. Only a member can
   * tell (a node still joining has no history yet, so its caller waits as
   * before).
   */
  private unknown(name: string): boolean {
    if (this.local.has(name) || this.host.member(this.host.nodeNum) === undefined) return false;
    return !this.host.members().some((m) => m.keyServices.some((h) => h.name === name));
  }

  /** Wait until the key service's epoch passes `epoch` (or it becomes ready, or halts, or this node's history changes), within the deadline. */
  private waitChange(epoch: number, name: string, deadline: number, signal?: AbortSignal, readyIsChange = false): Promise<void> {
    const history = this.host.historyId();
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const v = this.view.info(name);
        if (v === undefined) return false;
        // Another history: its view names hosts afresh (epochs start again with it).
        if (this.host.historyId() !== history) return true;
        // Placed once, now nowhere, and announced by nobody any more (unregistered everywhere): readyHost says so.
        // (A name never placed is waited for: a node that just formed the cluster may not have heard of its hosts yet.)
        return v.epoch > epoch || (readyIsChange && v.ready) || v.halted || (v.host === undefined && this.unknown(name));
      };
      if (check()) return resolve();
      if (signal?.aborted) return reject(new ClusterInfraError('CORE_ERR_ABORTED', 'cancelled while waiting for the key service'));
      const done = (err?: Error): void => {
        this.changes.unwatch(waiter);
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
      this.changes.watch(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
