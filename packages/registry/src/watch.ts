/**
 * Watchers: bounded queues of events for one key prefix, read as an async
 * iterator. Events reach a watcher in the replica's apply order, never two
 * at once. A watcher that falls `maxQueue` events behind is ended with
 * REGISTRY_ERR_WATCH_OVERFLOW (its reader sees the error after the events
 * it has): memory stays bounded however slow the reader is.
 */
import { RegistryError } from './errors.js';
import type { RegistryEvent } from './types.js';

export class Watcher implements AsyncIterableIterator<RegistryEvent> {
  private readonly queue: RegistryEvent[] = [];
  private wake: (() => void) | undefined;
  private ended = false;
  private failure: RegistryError | undefined;

  constructor(
    readonly prefix: string,
    private readonly maxQueue: number,
    private readonly onEnd: (w: Watcher) => void,
    signal?: AbortSignal,
  ) {
    if (signal?.aborted) this.end();
    else signal?.addEventListener('abort', () => this.end(), { once: true });
  }

  matches(key: string): boolean {
    return key.startsWith(this.prefix);
  }

  push(e: RegistryEvent): void {
    if (this.ended || this.failure) return;
    if (this.queue.length >= this.maxQueue) {
      this.failure = new RegistryError('REGISTRY_ERR_WATCH_OVERFLOW', `watcher on ${JSON.stringify(this.prefix)} fell ${this.maxQueue} events behind`);
      this.onEnd(this);
    } else this.queue.push(e);
    this.wake?.();
  }

  /** Ends the iteration after the events already queued (abort, close). */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.onEnd(this);
    this.wake?.();
  }

  async next(): Promise<IteratorResult<RegistryEvent>> {
    for (;;) {
      const e = this.queue.shift();
      if (e) return { value: e, done: false };
      if (this.failure) {
        const f = this.failure;
        this.failure = undefined;
        this.ended = true;
        throw f;
      }
      if (this.ended) return { value: undefined, done: true };
      await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
    }
  }

  async return(): Promise<IteratorResult<RegistryEvent>> {
    this.queue.length = 0;
    this.end();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
