/**
 * One call by name (docs/key-services.md, "Using it"), as a state machine:
 * `step(input)` takes what happened, `ready()` gives what to do next.
 * routing.ts (`Router.call`) is its driver: it reads the view, makes the
 * call (here, or to the host's node), waits for the view to change, and
 * raises the errors it is told to. The rules are route.ts's: call a ready
 * host, wait while a failover is under way, fail a halted or unknown key
 * service at once; after a failure, go to the next host when the call did
 * not run, retry once when it may have run and the method is idempotent,
 * else fail; all within the call's deadline.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import type { KeyServiceInfo } from '../clms/index.js';
import { Machine } from './machine.js';
import { afterFailure, afterWait, type CallFailure, route, type WaitTimeout } from './route.js';

export type CallInput =
  /** Look at the view (at the start, and after each wait that ended without an error); `unknown`: route.ts `isUnknown` for the name. */
  | { kind: 'look'; info: KeyServiceInfo | undefined; unknown: () => boolean }
  /** About to call the ready host: this node's number, and whether it registers the key service itself. */
  | { kind: 'attempt'; me: number; registeredHere: boolean }
  /** The call failed, as plain facts; `idempotent`: the method is. */
  | { kind: 'failed'; failure: CallFailure; idempotent: boolean; now: number; rpcTimeoutMs: number }
  /** A wait asked for ended with an error (`timedOut`: its timeout, else cancelled). */
  | { kind: 'wait-failed'; timedOut: boolean; now: number };

export type CallEffect =
  /** A ready host: call it next (answer with `attempt`). */
  | { kind: 'host-ready'; info: KeyServiceInfo }
  /** Call the host: on this node without the network (`local`), or over ICS. */
  | { kind: 'call'; info: KeyServiceInfo; local: boolean }
  /** Wait (until `until`) for the key service's epoch to pass `epoch` (or a ready host, when `readyIsChange`), then look again. */
  | { kind: 'wait'; epoch: number; until: number; readyIsChange: boolean }
  /** Fail: halted (KeyServiceHaltedError), unknown (UnknownKeyServiceError). */
  | { kind: 'halted'; reason: string }
  | { kind: 'unknown' }
  /** Fail with the call's own error. */
  | { kind: 'throw' }
  /** Fail with the wait's error (a timeout, a cancellation). */
  | { kind: 'rethrow' }
  /** Fail: the host `host` follows another history (`hostHistory`), KeyServiceHistoryError. */
  | { kind: 'history'; host: number; hostHistory: string | null };

export class CallByName extends Machine<CallEffect> {
  private retried = false;
  /** The ready host the last attempt went to. */
  private info: KeyServiceInfo | undefined;
  /** What a wait under way that fails means: a wait for a ready host gives its error; after a failure, `afterWait` says. */
  private waiting: { onTimeout: WaitTimeout; hostHistory: string | null } | 'for-host' | undefined;
  constructor(
    /** When the call gives up (its timeout from when it began). */
    readonly deadline: number,
  ) {
    super();
  }

  step(input: CallInput): void {
    if (this.over) return;
    switch (input.kind) {
      case 'look': {
        this.waiting = undefined;
        const r = route(input.info, input.unknown);
        switch (r.kind) {
          case 'call':
            this.info = r.info;
            return this.emit({ kind: 'host-ready', info: r.info });
          case 'halted':
            return this.end({ kind: 'halted', reason: r.reason });
          case 'unknown':
            return this.end({ kind: 'unknown' });
          case 'wait':
            this.waiting = 'for-host';
            return this.emit({ kind: 'wait', epoch: r.epoch, until: this.deadline, readyIsChange: true });
        }
        return;
      }
      case 'attempt': {
        const info = this.info!;
        return this.emit({ kind: 'call', info, local: info.host === input.me && input.registeredHere });
      }
      case 'failed': {
        const next = afterFailure(input.failure, { idempotent: input.idempotent, retried: this.retried, now: input.now, deadline: this.deadline, rpcTimeoutMs: input.rpcTimeoutMs });
        if (next.kind === 'throw') return this.end({ kind: 'throw' });
        this.retried = next.retried;
        this.waiting = { onTimeout: next.onTimeout, hostHistory: input.failure.otherHistory?.host ?? null };
        return this.emit({ kind: 'wait', epoch: this.info!.epoch, until: next.until, readyIsChange: false });
      }
      case 'wait-failed': {
        const w = this.waiting;
        this.waiting = undefined;
        if (w === undefined || w === 'for-host') return this.end({ kind: 'rethrow' });
        switch (afterWait(w.onTimeout, input.timedOut, input.now, this.deadline)) {
          case 'history':
            return this.end({ kind: 'history', host: this.info!.host!, hostHistory: w.hostHistory });
          case 'rethrow':
            return this.end({ kind: 'rethrow' });
          case 'again':
            // Look again (the driver routes anew, as after any wait).
            return;
        }
      }
    }
  }
}
