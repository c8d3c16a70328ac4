/**
 * The loop between the CLMS protocol core (protocol/core.ts) and the world:
 * an input goes in stamped with the time, the core decides synchronously,
 * and its effects come out here, in order. This performs the generic ones
 * (calls, sends, replies, wake-ups, settling what callers wait for) and
 * hands the others to its owner (effects.ts: events, callbacks, records).
 * What a call returns, or how it fails, is fed back as one more input; the
 * core checks it against its state as it is then.
 *
 * Effects run as they are handed out: one that feeds the core again (an
 * event listener that proposes, a call that fails at once) sees its own
 * effects performed before the next of the batch, as a direct call would.
 */
import type { Clock, TimerHandle } from '../../clock/index.js';
import { ClusterInfraError, NoQuorumError, NotMasterError } from '../../errors/index.js';
import { detached } from '../../ics/context.js';
import type { Ics } from '../../ics/ics.js';
import type { Logger } from '../../logging/index.js';
import type { Core, Effect, ErrorKind, Message } from '../protocol/core.js';
import { sharedAppend } from './wire.js';

export interface LoopHost {
  readonly core: Core;
  readonly clock: Clock;
  readonly log: Logger;
  readonly service: { channel: string; subservice: number };
  /** The endpoint of the current incarnation. */
  ics(): Ics;
  /** Arm a timer of this incarnation (cancelled at a restart or close). */
  timer(ms: number, fn: () => void): TimerHandle;
  /** The effects this loop leaves to its owner. */
  perform(e: Effect): void;
}

interface Waiter {
  resolve(value: unknown): void;
  reject?(err: Error): void;
}

const ERRORS: Record<ErrorKind, (message: string | undefined) => Error> = {
  'not-master': (m) => new NotMasterError(m),
  'no-quorum': (m) => new NoQuorumError(m ?? 'no quorum'),
  aborted: (m) => new ClusterInfraError('CORE_ERR_ABORTED', m ?? 'aborted'),
};

export class EffectLoop {
  private nextId = 1;
  private readonly replies = new Map<number, unknown>();
  private readonly waiters = new Map<number, Waiter>();

  constructor(private readonly host: LoopHost) {}

  step(message: Message): void {
    const { core, clock } = this.host;
    core.stepAt(message, clock.now(), clock.wallNow());
    for (const e of core.ready()) this.perform(e);
  }

  /** Step a request the core answers; its reply. */
  request(message: Message & { id: number }): unknown {
    this.step(message);
    const value = this.replies.get(message.id);
    this.replies.delete(message.id);
    return value;
  }

  /**
   * Step a request the core may answer later: its reply when given within
   * the step, else a promise of what `respond` gives (a learner's append
   * answer held for its barrier reports, protocol/reports.ts).
   */
  requestOrLater(message: Message & { id: number }): unknown {
    // The promise is made only for an answer that is not given within the
    // step (most are): until then the waiter keeps what `respond` gives.
    let later: ((value: unknown) => void) | undefined;
    let given: { value: unknown } | undefined;
    this.waiters.set(message.id, { resolve: (value) => (later ? later(value) : (given = { value })) });
    this.step(message);
    if (this.replies.has(message.id)) {
      this.waiters.delete(message.id);
      const value = this.replies.get(message.id);
      this.replies.delete(message.id);
      return value;
    }
    if (given) return Promise.resolve(given.value);
    return new Promise<unknown>((resolve) => {
      later = resolve;
    });
  }

  /** A fresh id for a request, a proposal or a campaign whose end `resolve` (or `reject`) hears. */
  expect(resolve: (value: unknown) => void, reject?: (err: Error) => void): number {
    const id = this.nextId++;
    this.waiters.set(id, { resolve, ...(reject ? { reject } : {}) });
    return id;
  }

  /** An id for a request answered within the same step. */
  id(): number {
    return this.nextId++;
  }

  private settle(id: number, value: unknown, err?: Error): void {
    const w = this.waiters.get(id);
    if (!w) return;
    this.waiters.delete(id);
    if (err) w.reject?.(err);
    else w.resolve(value);
  }

  private perform(e: Effect): void {
    switch (e.type) {
      case 'call':
        return detached(() => this.call(e));
      case 'send':
        return detached(() => void this.host.ics().send(e.to, this.host.service, e.method, e.args).catch(() => {}));
      case 'reply':
        return void this.replies.set(e.id, e.value);
      case 'wake':
        return void this.host.timer(Math.max(0, e.at - this.host.clock.now()), () => this.step(e.what ? { type: 'tick', what: e.what } : { type: 'tick' }));
      case 'settle':
        return this.settle(e.id, e.t, e.error ? ERRORS[e.error.kind](e.error.message) : undefined);
      case 'campaign-done':
        return this.settle(e.id, e.outcome);
      case 'advance':
        return this.step({ type: 'advance' });
      case 'respond':
        return this.settle(e.id, e.value, e.error ? ERRORS[e.error.kind](e.error.message) : undefined);
      default:
        return this.host.perform(e);
    }
  }

  private call(e: Extract<Effect, { type: 'call' }>): void {
    const ics = this.host.ics();
    const failed = (err: unknown): void => this.step({ type: 'failed', call: e.call, code: (err as ClusterInfraError | undefined)?.code ?? 'CORE_ERR_UNKNOWN' });
    if (e.ifConnected && !ics.isConnected(e.to)) return failed(undefined);
    ics
      .call(e.to, this.host.service, e.method, e.method === 'append' ? sharedAppend(e.args) : e.args, { timeoutMs: e.timeoutMs })
      .then((value) => this.step({ type: 'answer', call: e.call, value }), failed)
      .catch((err: unknown) => this.host.log.error({ err: (err as Error)?.message, method: e.method }, 'an effect of a CLMS answer failed'));
  }
}
