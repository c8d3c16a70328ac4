/**
 * A handler pool: at most `max` handlers of a service run at once, up to
 * `queue` more wait in FIFO order, and anything beyond is refused at once
 * (the caller gets RESOURCE_EXHAUSTED). Priority work may borrow up to
 * `priorityReserve` extra slots, so a callback from a handler never waits
 * behind the very work that is waiting for it.
 *
 * Written here rather than with p-queue: the pool needs a hard queue bound,
 * per-item cancellation (nodedown drops queued work of one node) and the
 * priority reserve, which would all sit beside p-queue rather than in it.
 */

export interface PoolOptions {
  /** Handlers kept ready. In Node this is advisory: handlers are async functions, not threads. @default 1 */
  min: number;
  /** Handlers running at once. @default 64 */
  max: number;
  /** Work items waiting for a handler. @default 1024 */
  queue: number;
  /** Extra slots only priority work may use. @default 16 */
  priorityReserve: number;
}

export interface PoolItem {
  readonly priority: boolean;
  /** Do the work; return a promise only when it continues asynchronously. */
  run(): Promise<void> | undefined;
  /** Called instead of `run` when the item is dropped from the queue. */
  drop(): void;
  /** Node the work came from, for nodedown. */
  readonly from: number;
}

export class HandlerPool {
  private running = 0;
  private runningPriority = 0;
  private readonly waiting: PoolItem[] = [];
  private idleWaiters: (() => void)[] = [];
  /** Set while `next` starts queued work, so synchronous completions do not recurse. */
  private draining = false;

  constructor(readonly options: PoolOptions) {}

  get active(): number {
    return this.running + this.runningPriority;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Start `item` now, queue it, or return false when the pool is full. */
  submit(item: PoolItem): boolean {
    if (this.running < this.options.max) {
      this.start(item, false);
      return true;
    }
    if (item.priority && this.runningPriority < this.options.priorityReserve) {
      this.start(item, true);
      return true;
    }
    if (this.waiting.length >= this.options.queue) return false;
    this.waiting.push(item);
    return true;
  }

  /** Drop queued work from `node`; returns how many items were dropped. */
  dropFrom(node: number): number {
    let dropped = 0;
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const item = this.waiting[i]!;
      if (item.from === node) {
        this.waiting.splice(i, 1);
        item.drop();
        dropped++;
      }
    }
    return dropped;
  }

  /** Resolves when nothing runs and nothing waits. */
  idle(): Promise<void> {
    if (this.active === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private start(item: PoolItem, reserve: boolean): void {
    if (reserve) this.runningPriority++;
    else this.running++;
    const pending = item.run();
    if (pending) {
      pending.then(
        () => this.done(reserve),
        () => this.done(reserve),
      );
    } else {
      this.done(reserve);
    }
  }

  private done(reserve: boolean): void {
    if (reserve) this.runningPriority--;
    else this.running--;
    this.next();
  }

  private next(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.waiting.length > 0 && this.running < this.options.max) {
        this.start(this.waiting.shift()!, false);
      }
    } finally {
      this.draining = false;
    }
    if (this.active === 0 && this.waiting.length === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
