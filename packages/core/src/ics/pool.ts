/**
 * A handler pool: at most `max` handlers of a service run at once, up to
 * `queue` more wait, at most `queuePerPeer` of them from one node, and
 * anything beyond is refused at once (the caller gets RESOURCE_EXHAUSTED).
 * Waiting work starts in FIFO order per node and round-robin across nodes,
 * so a node that floods a service delays its own work, not everyone's.
 * Priority work may borrow up to
 * `priorityReserve` extra slots, so a callback from a handler never waits
 * behind the very work that is waiting for it.
 *
 * Written here rather than with p-queue: the pool needs a hard queue bound,
 * per-item cancellation (nodedown drops queued work of one node) and the
 * priority reserve, which would all sit beside p-queue rather than in it.
 */

/** The smallest default share of a queue per peer. */
const MIN_QUEUE_PER_PEER = 256;

export interface PoolOptions {
  /** Handlers kept ready. In Node this is advisory: handlers are async functions, not threads. @default 1 */
  min: number;
  /** Handlers running at once. @default 64 */
  max: number;
  /** Work items waiting for a handler. @default 1024 */
  queue: number;
  /** Work items from one node waiting for a handler: each peer's share of the queue. @default a quarter of `queue`, at least 256 */
  queuePerPeer?: number | undefined;
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
  /** Waiting work per node; the map's order is the round-robin order. */
  private readonly waiting = new Map<number, PoolItem[]>();
  private waitingCount = 0;
  private idleWaiters: (() => void)[] = [];
  /** Set while `next` starts queued work, so synchronous completions do not recurse. */
  private draining = false;

  private readonly perPeer: number;

  constructor(readonly options: PoolOptions) {
    this.perPeer = options.queuePerPeer ?? Math.max(MIN_QUEUE_PER_PEER, Math.ceil(options.queue / 4));
  }

  get active(): number {
    return this.running + this.runningPriority;
  }

  get queued(): number {
    return this.waitingCount;
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
    if (this.waitingCount >= this.options.queue) return false;
    const mine = this.waiting.get(item.from);
    if (mine && mine.length >= this.perPeer) return false;
    if (mine) mine.push(item);
    else this.waiting.set(item.from, [item]);
    this.waitingCount++;
    return true;
  }

  /** Drop queued work from `node`; returns how many items were dropped. */
  dropFrom(node: number): number {
    const mine = this.waiting.get(node);
    if (!mine) return 0;
    this.waiting.delete(node);
    this.waitingCount -= mine.length;
    for (const item of mine) item.drop();
    return mine.length;
  }

  /** The next waiting item: the oldest of the node whose turn it is. */
  private take(): PoolItem | undefined {
    for (const [node, mine] of this.waiting) {
      const item = mine.shift()!;
      // Its turn is over: to the back of the round, or out of it.
      this.waiting.delete(node);
      if (mine.length > 0) this.waiting.set(node, mine);
      this.waitingCount--;
      return item;
    }
    return undefined;
  }

  /** Resolves when nothing runs and nothing waits. */
  idle(): Promise<void> {
    if (this.active === 0 && this.waitingCount === 0) return Promise.resolve();
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
      while (this.waitingCount > 0 && this.running < this.options.max) {
        this.start(this.take()!, false);
      }
    } finally {
      this.draining = false;
    }
    if (this.active === 0 && this.waitingCount === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
