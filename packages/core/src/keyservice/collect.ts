/**
 * Collecting a hand-over from the old host (docs/key-services.md,
 * "Hand-over"), as a state machine: `step(input)` takes what happened,
 * `ready()` gives what to do next. host.ts (`collectHandover`) is its
 * driver: it makes the `handover` call, waits for the old host's Down,
 * sleeps, and feeds each outcome back with the old host's state as it is
 * then. The rules are `collectNext`'s (takeover.ts): ask until it answers
 * or the bound passes; without an answer wait the bound out (plus the
 * failure timeout), or, once it is Down, what is left of its lease, so
 * two hosts are never active at once (K1).
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import type { NodeState } from '../clms/index.js';
import { Machine } from './machine.js';
import { collectNext } from './takeover.js';

export type CollectInput =
  /** Look now (at the start, and after a retry's sleep). */
  | { kind: 'look'; now: number }
  /** The old host answered with its data. */
  | { kind: 'answered'; data: unknown }
  /** The call failed (`error`: its message); the old host's state then. */
  | { kind: 'failed'; error: string; now: number; fromState: NodeState | undefined }
  /** The wait for the old host's Down ended; its state then. */
  | { kind: 'awaited-down'; now: number; fromState: NodeState | undefined }
  /** What is left of the wait counted from the old host's down (view.ts `downWaitLeft`). */
  | { kind: 'down-wait-left'; ms: number }
  /** A sleep asked for ended. */
  | { kind: 'slept'; now: number };

export type CollectEffect =
  /** Ask the old host for its data. */
  | { kind: 'call'; timeoutMs: number }
  /** Wait until the old host is Down, at most `ms`. */
  | { kind: 'await-down'; ms: number }
  /** Ask how long is left of the wait since the old host went down (the failure timeout). */
  | { kind: 'down-wait' }
  /** Not collected yet (for the log: the last error), or given up (waiting for the old host to stop by itself). */
  | { kind: 'not-yet'; error: string }
  | { kind: 'gave-up' }
  /** Sleep `ms`. */
  | { kind: 'sleep'; ms: number }
  /** Done: the data (`handover`), or none. */
  | { kind: 'settle'; handover: { data: unknown } | undefined };

export class CollectHandover extends Machine<CollectEffect> {
  /** The last sleep ends the collection (after giving up, or waiting the old host's lease out). */
  private lastSleep = false;
  private error = '';

  constructor(
    private readonly deadline: number,
    private readonly timing: { rpcTimeoutMs: number; failureTimeoutMs: number },
  ) {
    super();
  }

  step(input: CollectInput): void {
    if (this.over) return;
    switch (input.kind) {
      case 'look':
        return this.next({ kind: 'again' }, input.now);
      case 'answered':
        return this.settle({ data: input.data ?? null });
      case 'failed':
        this.error = input.error;
        return this.next({ kind: 'call-failed', fromState: input.fromState }, input.now);
      case 'awaited-down':
        return this.next({ kind: 'awaited-down', fromState: input.fromState }, input.now);
      case 'down-wait-left':
        if (input.ms <= 0) return this.settle(undefined);
        this.lastSleep = true;
        return this.emit({ kind: 'sleep', ms: input.ms });
      case 'slept':
        return this.lastSleep ? this.settle(undefined) : this.next({ kind: 'again' }, input.now);
    }
  }

  private next(last: Parameters<typeof collectNext>[0], now: number): void {
    const step = collectNext(last, now, this.deadline, this.timing);
    switch (step.kind) {
      case 'call':
      case 'await-down':
        return this.emit(step);
      case 'retry-after':
        return this.emit({ kind: 'not-yet', error: this.error }, { kind: 'sleep', ms: step.ms });
      case 'down':
        return this.emit({ kind: 'down-wait' });
      case 'give-up':
        this.lastSleep = true;
        return this.emit({ kind: 'gave-up' }, { kind: 'sleep', ms: step.ms });
    }
  }

  private settle(handover: { data: unknown } | undefined): void {
    this.end({ kind: 'settle', handover });
  }
}
