/**
 * What every key-service state machine (ask.ts, collect.ts, activation.ts,
 * calling.ts) shares: the effects it queued for its driver, taken with
 * `ready()`, and its end, after which it takes no more input.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
export abstract class Machine<E> {
  private queued: E[] = [];
  /** Ended: every later input is ignored. */
  protected over = false;

  /** What to do now, in order (each given once). */
  ready(): E[] {
    const out = this.queued;
    this.queued = [];
    return out;
  }

  protected emit(...effects: E[]): void {
    this.queued.push(...effects);
  }

  /** End with `last` as the final effect. */
  protected end(last: E): void {
    this.over = true;
    this.queued.push(last);
  }
}
