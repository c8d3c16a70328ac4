/**
 * One takeover (docs/key-services.md, "Failover" and "Hand-over"), as a
 * state machine: `step(input)` takes what happened, `ready()` gives what
 * to do next. host.ts (`takeOver`) is its driver: it starts and stops the
 * activation, runs the callbacks, collects and pulls, and feeds each
 * outcome back with whether the activation ended meanwhile. The order is
 * `takeoverSteps`' (takeover.ts): the old host's data first when it hands
 * over, `failover`, `pullData` on the survivors, `failoverData`, then
 * ready; methods are served only at the end (K4).
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import { Machine } from './machine.js';
import { type TakeoverStep, takeoverSteps } from './takeover.js';

export type TakeoverInput =
  /** Begin; the epoch of the activation running here, if any. */
  | { kind: 'start'; activeEpoch: number | undefined }
  /** The step asked for is done (or had nothing to run); `ended`: the activation ended meanwhile. */
  | { kind: 'done'; ended: boolean }
  /** A step threw (`error`: its message); `current`: the activation is still the one running here. */
  | { kind: 'failed'; error: string; current: boolean };

export type TakeoverEffect =
  /** Stop the activation running here (an older epoch), with `why`. */
  | { kind: 'deactivate'; why: string }
  /** Start the activation at this epoch (and renew the lease). */
  | { kind: 'activate' }
  /** Collect the old host's data (`from`). */
  | { kind: 'collect-handover'; from: number }
  /** Run `failover`. */
  | { kind: 'failover' }
  /** Run `pullData` on the survivors as they are now, but `skip`. */
  | { kind: 'pull'; skip: number | undefined }
  /** Run `failoverData` with what was collected and pulled. */
  | { kind: 'failover-data' }
  /** A step with nothing to run: answer `done` with whether the activation ended. */
  | { kind: 'check' }
  /** Serve, tell the application why, report ready. */
  | { kind: 'ready'; reason: string }
  /** A step threw (for the log). */
  | { kind: 'failed'; error: string }
  /** After a failure: have the key service placed again after a while (a new epoch) rather than left to nobody. */
  | { kind: 'place-again-later' }
  /** Done (served, ended, failed, or there was nothing to do). */
  | { kind: 'finished' };

export class Takeover extends Machine<TakeoverEffect> {
  private readonly steps: TakeoverStep[];
  private at = 0;

  constructor(
    private readonly epoch: number,
    handoverFrom: number | undefined,
    /** The registration has `pullData`. */
    pulls: boolean,
  ) {
    super();
    this.steps = takeoverSteps(handoverFrom, pulls);
  }

  step(input: TakeoverInput): void {
    if (this.over) return;
    switch (input.kind) {
      case 'start':
        // Taken over already at this epoch: nothing to do.
        if (input.activeEpoch === this.epoch) return this.finish();
        if (input.activeEpoch !== undefined) this.emit({ kind: 'deactivate', why: 'reassigned' });
        this.emit({ kind: 'activate' });
        return this.run();
      case 'done':
        // A newer epoch, lost quorum, close: stop here.
        if (input.ended) return this.finish();
        this.at++;
        return this.run();
      case 'failed':
        this.emit({ kind: 'failed', error: input.error });
        if (input.current) this.emit({ kind: 'deactivate', why: `failover failed: ${input.error}` }, { kind: 'place-again-later' });
        return this.finish();
    }
  }

  private run(): void {
    const step = this.steps[this.at];
    switch (step?.kind) {
      case 'collect-handover':
        return this.emit(step.from !== undefined ? { kind: 'collect-handover', from: step.from } : { kind: 'check' });
      case 'pull':
        return this.emit(step.run ? { kind: 'pull', skip: step.skip } : { kind: 'check' });
      case 'failover':
      case 'failover-data':
        return this.emit({ kind: step.kind });
      case 'ready':
        this.emit({ kind: 'ready', reason: step.reason });
        return this.finish();
      case undefined:
        return this.finish();
    }
  }

  private finish(): void {
    this.end({ kind: 'finished' });
  }
}
