/**
 * The decisions of a call by name (docs/key-services.md, "Using it" and
 * "Bound to one history"), as pure functions of the view, the members and
 * the time: where the call goes now, what a failure means for it, when a
 * waiting call looks again. routing.ts is their driver: it makes the calls,
 * waits, and feeds each outcome back here.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import { InvalidArgumentError } from '../errors/index.js';
import type { KeyServiceInfo, MemberInfo } from '../clms/index.js';

/** What a call by name does with the view as it is now. */
export type RouteStep =
  /** Call `info.host`, ready at `info.epoch`. */
  | { kind: 'call'; info: KeyServiceInfo }
  /** Fail: a critical key service with no eligible node left. */
  | { kind: 'halted'; reason: string }
  /** Fail at once: nobody knows the name (see `isUnknown`). */
  | { kind: 'unknown' }
  /** Wait for the view to change (a placement, a failover under way), within the deadline. */
  | { kind: 'wait'; epoch: number };

/**
 * Nobody knows `name`: no member announces it (none ever did, or every one
 * that did unregistered it) and this node does not register it. Only a
 * member can tell (a node still joining has no history yet, so its caller
 * waits as before).
 */
export function isUnknown(name: string, registeredHere: boolean, joined: boolean, members: readonly MemberInfo[]): boolean {
  if (registeredHere || !joined) return false;
  return !members.some((m) => m.keyServices.some((h) => h.name === name));
}

/** Where a call to `v` goes now; `unknown`: `isUnknown` for its name (asked only when it has no host). */
export function route(v: KeyServiceInfo | undefined, unknown: () => boolean): RouteStep {
  if (v?.ready && v.host !== undefined) return { kind: 'call', info: v };
  if (v?.halted) return { kind: 'halted', reason: v.reason ?? 'no eligible node left' };
  if (v?.host === undefined && unknown()) return { kind: 'unknown' };
  return { kind: 'wait', epoch: v?.epoch ?? -1 };
}

/** Subservice and idempotent methods: from the local registration, or as its hosts announced them. */
export function howToCall(
  name: string,
  local: { subservice: number; idempotent?: readonly string[] | undefined } | undefined,
  members: readonly MemberInfo[],
): { subservice: number; idempotent: readonly string[] } {
  if (local) return { subservice: local.subservice, idempotent: local.idempotent ?? [] };
  for (const m of members) {
    const h = m.keyServices.find((k) => k.name === name);
    if (h?.subservice !== undefined) return { subservice: h.subservice, idempotent: h.idempotent ?? [] };
  }
  throw new InvalidArgumentError(`key service ${name} is not announced by any member`);
}

/** The view a waiting call started from. */
export interface WaitStart {
  /** The key service's epoch then (-1: not in the view). */
  readonly epoch: number;
  /** This node's history then. */
  readonly history: string | null;
  /** A ready host counts as a change (waiting for one, not for a newer epoch). */
  readonly readyIsChange: boolean;
}

/**
 * A waiting call looks again: the key service's epoch passed the one it
 * waited on, or it became ready (when that counts), or halted, or nobody
 * knows it any more (`unknown`, asked only when it has no host), or this
 * node follows another history now (its view names hosts afresh: epochs
 * start again with a history).
 */
export function changedSince(start: WaitStart, v: KeyServiceInfo | undefined, history: string | null, unknown: () => boolean): boolean {
  if (v === undefined) return false;
  if (history !== start.history) return true;
  // Placed once, now nowhere, and announced by nobody any more (unregistered everywhere): `route` says so.
  // (A name never placed is waited for: a node that just formed the cluster may not have heard of its hosts yet.)
  return v.epoch > start.epoch || (start.readyIsChange && v.ready) || v.halted || (v.host === undefined && unknown());
}

/** What the driver saw of a failed call, as plain facts. */
export interface CallFailure {
  /** The error's code (`ICS_ERR_NODE_DOWN`, …), if it has one. */
  readonly code: string | undefined;
  /** `NodeDownError.sent`: `never-sent` when it never left this node. */
  readonly sent: string | undefined;
  /** The node answered "not the host": the method did not run. */
  readonly notHost: boolean;
  /** The host refused a call of another history (the method did not run): its history. */
  readonly otherHistory: { readonly host: string | null } | undefined;
  /** Unreachable before anything was sent (an `UnavailableError` that did not run). */
  readonly unreachable: boolean;
}

/** What a call by name does after a failure. */
export type AfterFailure =
  /** Give the caller the error. */
  | { kind: 'throw' }
  /**
   * Wait for the view to change until `until`, then route again.
   * `retried`: a call that may have run was retried (only once, and only
   * when idempotent). `onTimeout`: what a wait that ran out means.
   */
  | { kind: 'retry'; retried: boolean; until: number; onTimeout: WaitTimeout };

/**
 * What a wait that reached its `until` means: `history`, fail with the
 * refusal of another history (a typed error saying so, not a bare
 * timeout); `again`, route again (an unreachable host is looked at again
 * soon, not only after a failover); `throw`, fail with the timeout.
 */
export type WaitTimeout = 'history' | 'again' | 'throw';

/**
 * A call that did not run (refused as "not the host" or as of another
 * history, unreachable, or never sent before its node went down) goes to
 * the next host; one that may have run on a host that was lost is retried
 * once, for an idempotent method only.
 */
export function afterFailure(f: CallFailure, s: { idempotent: boolean; retried: boolean; now: number; deadline: number; rpcTimeoutMs: number }): AfterFailure {
  const lost = f.code === 'ICS_ERR_NODE_DOWN' || f.code === 'ICS_ERR_UNAVAILABLE';
  const didNotRun = f.notHost || f.otherHistory !== undefined || f.unreachable || (lost && f.sent === 'never-sent');
  if (!didNotRun && !(lost && s.idempotent && !s.retried)) return { kind: 'throw' };
  // Refused or unreachable before anything was sent: the host may have just died (a failover
  // follows) or be briefly out of reach, so look again soon rather than only after a failover.
  const until = f.unreachable ? Math.min(s.deadline, s.now + s.rpcTimeoutMs) : s.deadline;
  return { kind: 'retry', retried: s.retried || !didNotRun, until, onTimeout: f.otherHistory ? 'history' : f.unreachable ? 'again' : 'throw' };
}

/** A wait with `onTimeout` ended with an error (`timedOut`: it was its timeout) at `now`: fail with which error, or route again. */
export function afterWait(onTimeout: WaitTimeout, timedOut: boolean, now: number, deadline: number): 'history' | 'again' | 'rethrow' {
  if (onTimeout === 'history' && timedOut) return 'history';
  if (onTimeout === 'again' && timedOut && now < deadline) return 'again';
  return 'rethrow';
}
