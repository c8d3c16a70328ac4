/**
 * Calling a key service by name (docs/key-services.md, "Using it"): the
 * driver of calling.ts (`CallByName`), whose state machine, on route.ts's
 * rules, decides where a call goes, what a failure means and when a
 * waiting call looks again. Here are the calls
 * (to the host's node, or here without the network), the waits and the
 * errors: a name nobody knows fails at once with UnknownKeyServiceError, a
 * halted one with KeyServiceHaltedError, one whose host follows another
 * cluster history, after the deadline, with KeyServiceHistoryError.
 */
import { ClusterInfraError, KeyServiceHaltedError, KeyServiceHistoryError, UnavailableError, UnknownKeyServiceError } from '../errors/index.js';
import { IcsStatusError, isSchemaError, schemaErrorToInvalidArgument, wireToError } from '../ics/status.js';
import { WireStatus } from '../ics/wire/types.js';
import type { CallOptions, HandlerContext } from '../ics/types.js';
import type { KeyServiceInfo } from '../clms/index.js';
import { HISTORY_HEADER, historyHeaders, type KeyServiceHost } from './ports.js';
import type { Local, Registrations } from './registrations.js';
import { CallByName } from './calling.js';
import { type CallFailure, changedSince, howToCall, isUnknown, type WaitStart } from './route.js';
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

/** A failed call as the plain facts route.ts decides on. */
function failureOf(err: unknown): CallFailure {
  const e = err as (ClusterInfraError & { sent?: string }) | undefined;
  return { code: e?.code, sent: e?.sent, notHost: isNotHost(err), otherHistory: refusedHistory(err), unreachable: err instanceof UnavailableError && !err.mayHaveRun };
}

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
    const m = new CallByName(this.host.now() + (options.timeoutMs ?? 30_000));
    for (;;) {
      const info = await this.readyHost(m, name, options.signal);
      const l = this.local.get(name);
      const how = howToCall(name, l?.reg, this.host.members());
      const idempotent = options.idempotent ?? how.idempotent.includes(method);
      const remaining = Math.max(1, m.deadline - this.host.now());
      // The call is bound to the history this node routed it by (see otherHistory).
      const history = this.host.historyId();
      m.step({ kind: 'attempt', me: this.host.nodeNum, registeredHere: l !== undefined });
      const local = m.ready().some((e) => e.kind === 'call' && e.local);
      try {
        if (local) return await this.callLocal(l!, method, args);
        const headers = { ...options.headers, ...historyHeaders(this.host) };
        return await this.host.ics().call(info.host!, { channel: 'keyservice', subservice: how.subservice }, method, args, { ...options, timeoutMs: remaining, headers });
      } catch (err) {
        m.step({ kind: 'failed', failure: failureOf(err), idempotent, now: this.host.now(), rpcTimeoutMs: this.host.rpcTimeoutMs() });
        for (const e of m.ready()) {
          if (e.kind === 'throw') throw err;
          if (e.kind !== 'wait') continue;
          await this.waitChange(e.epoch, name, e.until, options.signal, e.readyIsChange).catch((w: unknown) => {
            m.step({ kind: 'wait-failed', timedOut: (w as ClusterInfraError).code === 'CORE_ERR_TIMEOUT', now: this.host.now() });
            for (const f of m.ready()) {
              if (f.kind === 'history') throw new KeyServiceHistoryError(name, f.host, history, f.hostHistory);
              if (f.kind === 'rethrow') throw w;
            }
          });
        }
      }
    }
  }

  /** This node is the host: run the method here (no network, same checks, and the error a remote caller would get). */
  private async callLocal(l: Local, method: string, args: unknown): Promise<unknown> {
    try {
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
      return await this.serveMethod(l, h, args, ctx);
    } catch (err) {
      // As errorToWire and wireToError make it for a remote caller: a status
      // the handler (or the method lookup) chose, or its schema's refusal.
      if (err instanceof IcsStatusError) throw wireToError(WireStatus[err.status], { message: err.message, details: err.details }, this.host.nodeNum, `${method} (key service ${l.reg.name})`);
      if (isSchemaError(err)) throw schemaErrorToInvalidArgument(err, `${method} (key service ${l.reg.name}) on node ${this.host.nodeNum}`);
      throw err;
    }
  }

  /** Route `m` until it has a ready host (calling.ts): wait while there is none, fail a halted or unknown key service. */
  private async readyHost(m: CallByName, name: string, signal?: AbortSignal): Promise<KeyServiceInfo> {
    for (;;) {
      m.step({ kind: 'look', info: this.view.info(name), unknown: () => this.unknown(name) });
      for (const e of m.ready()) {
        switch (e.kind) {
          case 'host-ready':
            return e.info;
          case 'halted':
            throw new KeyServiceHaltedError(name, e.reason);
          case 'unknown':
            throw new UnknownKeyServiceError(name);
          case 'wait':
            try {
              await this.waitChange(e.epoch, name, e.until, signal, e.readyIsChange);
            } catch (w) {
              // A wait for a ready host that fails (the deadline, a cancellation) is the caller's: calling.ts says `rethrow`.
              m.step({ kind: 'wait-failed', timedOut: (w as ClusterInfraError).code === 'CORE_ERR_TIMEOUT', now: this.host.now() });
              throw w;
            }
        }
      }
    }
  }

  /** Nobody knows `name` (route.ts, isUnknown). */
  private unknown(name: string): boolean {
    return isUnknown(name, this.local.has(name), this.host.member(this.host.nodeNum) !== undefined, this.host.members());
  }

  /** Wait until the key service's epoch passes `epoch` (or it becomes ready, or halts, or this node's history changes), within the deadline. */
  private waitChange(epoch: number, name: string, deadline: number, signal?: AbortSignal, readyIsChange = false): Promise<void> {
    const start: WaitStart = { epoch, history: this.host.historyId(), readyIsChange };
    return new Promise((resolve, reject) => {
      const check = (): boolean => changedSince(start, this.view.info(name), this.host.historyId(), () => this.unknown(name));
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
