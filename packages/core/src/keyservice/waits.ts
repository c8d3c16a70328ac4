/**
 * Waiting for the key-service view or a local activation to change: every
 * change wakes the waiters, each re-checks its own condition. Timers come
 * from the node's injected clock.
 */
import type { KeyServiceHost } from './ports.js';

export class Changes {
  private readonly waiters = new Set<() => void>();

  constructor(private readonly host: Pick<KeyServiceHost, 'timer'>) {}

  /** Something changed: every waiter checks again. */
  wake(): void {
    if (this.waiters.size === 0) return;
    for (const w of [...this.waiters]) w();
  }

  /** Call `waiter` on every change until `unwatch`. */
  watch(waiter: () => void): void {
    this.waiters.add(waiter);
  }

  unwatch(waiter: () => void): void {
    this.waiters.delete(waiter);
  }

  /** Resolve when `pred` holds (checked on every change), or after `ms`. */
  waitFor(pred: () => boolean, ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (pred()) return resolve();
      const done = (): void => {
        this.waiters.delete(waiter);
        timer.cancel();
        resolve();
      };
      const waiter = (): void => {
        if (pred()) done();
      };
      const timer = this.host.timer(ms, done);
      this.waiters.add(waiter);
    });
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.host.timer(ms, resolve));
  }
}
