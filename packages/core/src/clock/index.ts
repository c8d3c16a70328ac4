/**
 * Time is injected (DESIGN §4). Core reads time and schedules work only
 * through a `Clock`, so that a whole cluster can run on a `VirtualClock`
 * deterministically from a seed.
 */
import { AbortedError, InvalidArgumentError, InvalidOptionError } from '../errors/index.js';

export interface TimerHandle {
  /** Cancel the timer. Idempotent; cancelling a fired timer does nothing. */
  cancel(): void;
  /** Do not keep the process alive for this timer (real clocks only). */
  unref(): TimerHandle;
}

export interface Clock {
  /** Monotonic milliseconds, for measuring intervals and deadlines. */
  now(): number;
  /** Wall-clock milliseconds since the epoch, for timestamps shown to people. */
  wallNow(): number;
  /** Run `fn` once after `ms` milliseconds (0 when negative). */
  setTimeout(fn: () => void, ms: number): TimerHandle;
}

/** Resolve after `ms` on `clock`; reject with AbortedError when `signal` aborts. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new AbortedError('sleep aborted', { cause: signal.reason }));
      return;
    }
    const onAbort = (): void => {
      timer.cancel();
      reject(new AbortedError('sleep aborted', { cause: signal?.reason }));
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A repeating timer built on `setTimeout`, so that any Clock supports it.
 * The next run is scheduled after `fn` returns: runs never overlap.
 */
export function every(clock: Clock, ms: number, fn: () => void): TimerHandle {
  let current: TimerHandle | undefined;
  let cancelled = false;
  let unrefd = false;
  const schedule = (): void => {
    current = clock.setTimeout(() => {
      if (cancelled) return;
      fn();
      if (!cancelled) schedule();
    }, ms);
    if (unrefd) current.unref();
  };
  schedule();
  const handle: TimerHandle = {
    cancel() {
      cancelled = true;
      current?.cancel();
    },
    unref() {
      unrefd = true;
      current?.unref();
      return handle;
    },
  };
  return handle;
}

/** The real clock: `performance.now()` and the global timers. */
export class RealClock implements Clock {
  now(): number {
    return performance.now(); // allowed: the real clock implementation
  }

  wallNow(): number {
    return Date.now(); // allowed: the real clock implementation
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return new RealTimer(setTimeout(fn, Math.max(0, ms))); // allowed: the real clock implementation
  }
}

/** A handle on a Node timer: methods on the prototype, no closures per timer. */
class RealTimer implements TimerHandle {
  constructor(private readonly timeout: ReturnType<typeof setTimeout>) {}

  cancel(): void {
    clearTimeout(this.timeout);
  }

  unref(): TimerHandle {
    this.timeout.unref();
    return this;
  }
}

export const realClock: Clock = new RealClock();

interface VirtualTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
  /** Fired already: cancelling it now changes nothing. */
  fired?: boolean;
}

/** VirtualClock rebuilds its heap once at least this many cancelled timers are half of it. */
const COMPACT_AT = 1024;

export interface VirtualClockOptions {
  /** Wall-clock time at virtual time 0. @default 1_767_225_600_000 (2026-01-01T00:00:00Z) */
  startWallTime?: number;
}

/**
 * A clock whose time moves only when told to. Timers fire in order of their
 * due time, and timers due at the same time fire in the order they were set:
 * the order is a pure function of the program, never of the machine.
 */
export class VirtualClock implements Clock {
  private current = 0;
  private seq = 0;
  private heap: VirtualTimer[] = [];
  private readonly startWallTime: number;
  private firedCount = 0;
  /** Cancelled timers still in the heap (dropped when they reach its top, or all at once when they are most of it). */
  private cancelledCount = 0;

  private readonly moveTo = (t: number): void => {
    this.current = t;
  };

  constructor(options: VirtualClockOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('(root)', 'virtual clock: options must be an object');
    const wall = options.startWallTime ?? 1_767_225_600_000;
    if (typeof wall !== 'number' || !Number.isFinite(wall)) throw new InvalidOptionError('startWallTime', `virtual clock: startWallTime must be a finite number of milliseconds, got ${String(wall)}`);
    this.startWallTime = wall;
  }

  now(): number {
    return this.current;
  }

  wallNow(): number {
    return this.startWallTime + this.current;
  }

  /** Timers fired since creation. */
  get fired(): number {
    return this.firedCount;
  }

  /** Timers scheduled and not yet fired or cancelled. */
  get pending(): number {
    return this.heap.length - this.cancelledCount;
  }

  /** Due time of the next live timer, or undefined when none is pending. */
  nextDue(): number | undefined {
    this.dropCancelledTop();
    return this.heap[0]?.at;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    // Refused here, not when it fires (inside whoever advances the clock).
    if (typeof fn !== 'function') throw new InvalidArgumentError(`setTimeout takes a function, got ${typeof fn}`);
    // NaN (or not a number) counts as 0, as a negative delay does: a NaN due time would break the timers' order.
    const timer: VirtualTimer = { at: this.current + (ms > 0 ? ms : 0), seq: this.seq++, fn, cancelled: false };
    this.push(timer);
    const handle: TimerHandle = {
      cancel: () => {
        if (timer.cancelled || timer.fired) return;
        timer.cancelled = true;
        this.cancelledCount++;
        this.compactIfMostlyCancelled();
      },
      unref: () => handle,
    };
    return handle;
  }

  /**
   * Fire the next due timer (moving time to it) and return true, or return
   * false when nothing is pending. Synchronous: promise continuations that
   * the timer starts run after this returns.
   */
  step(): boolean {
    this.dropCancelledTop();
    const timer = this.pop();
    if (!timer) return false;
    this.current = Math.max(this.current, timer.at);
    this.firedCount++;
    timer.fired = true;
    timer.fn();
    return true;
  }

  /**
   * Move time forward by `ms`, firing every timer due on the way, in order,
   * and letting promise continuations settle after each one.
   */
  advance(ms: number): Promise<void> {
    // advance(NaN) or advance(Infinity) would fire every timer forever (a periodic one never runs dry).
    if (typeof ms !== 'number' || !Number.isFinite(ms)) return Promise.reject(new InvalidArgumentError(`advance takes a finite number of milliseconds, got ${String(ms)}`));
    return advanceSteps(this, ms, this.moveTo);
  }

  /**
   * Fire timers until none is pending, or until `maxTimers` fired or time
   * passed `until` (both bound the run; a periodic timer never runs dry).
   */
  async runUntilIdle(options: { maxTimers?: number; until?: number } = {}): Promise<number> {
    const maxTimers = options.maxTimers ?? 100_000;
    let n = 0;
    await flushMicrotasks();
    while (n < maxTimers) {
      const due = this.nextDue();
      if (due === undefined || (options.until !== undefined && due > options.until)) break;
      this.step();
      n++;
      await flushMicrotasks();
    }
    return n;
  }

  /**
   * Advance timer by timer until `predicate()` holds or `maxMs` of virtual
   * time passed; returns whether the predicate held.
   */
  advanceUntil(predicate: () => boolean, maxMs = 60_000): Promise<boolean> {
    if (typeof predicate !== 'function') return Promise.reject(new InvalidArgumentError(`advanceUntil takes a predicate function, got ${typeof predicate}`));
    if (typeof maxMs !== 'number' || !Number.isFinite(maxMs)) return Promise.reject(new InvalidArgumentError(`advanceUntil's maxMs must be a finite number of milliseconds, got ${String(maxMs)}`));
    return advanceStepsUntil(this, predicate, maxMs, this.moveTo);
  }

  private dropCancelledTop(): void {
    while (this.heap.length > 0 && this.heap[0]!.cancelled) {
      this.pop();
      this.cancelledCount--;
    }
  }

  /**
   * Cancelled timers wait in the heap until they reach its top; timers set
   * far ahead and cancelled (a call's timeout, answered long before) would
   * pile up for as long. Once they are most of a heap of some size, rebuild
   * it from the live ones: the heap stays within twice the live timers.
   * Order is by (at, seq), so the rebuild changes nothing that fires.
   */
  private compactIfMostlyCancelled(): void {
    if (this.cancelledCount < COMPACT_AT || this.cancelledCount * 2 < this.heap.length) return;
    const live = this.heap.filter((t) => !t.cancelled);
    this.heap = [];
    this.cancelledCount = 0;
    for (const t of live) this.push(t);
  }

  private less(a: VirtualTimer, b: VirtualTimer): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private push(t: VirtualTimer): void {
    const h = this.heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private pop(): VirtualTimer | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

/**
 * A clock whose timers its owner fires one at a time: what the virtual
 * clocks (`VirtualClock`, the simulator's) give `advanceSteps` and
 * `advanceStepsUntil`, so both move time by the same rules.
 */
export interface SteppedClock {
  /** Due time of the next live timer, or undefined when none is pending. */
  nextDue(): number | undefined;
  /** Fire the next timer (moving time to it); false when none is pending. */
  step(): boolean;
  now(): number;
}

/**
 * Move `clock` forward by `ms`, firing every timer due on the way in order
 * and letting promise continuations settle after each (one macrotask);
 * `moveTo` sets the clock's time (never earlier, no timer due before it).
 */
export async function advanceSteps(clock: SteppedClock, ms: number, moveTo: (t: number) => void): Promise<void> {
  const target = clock.now() + Math.max(0, ms);
  await flushMicrotasks();
  for (;;) {
    const due = clock.nextDue();
    if (due === undefined || due > target) break;
    clock.step();
    await flushMicrotasks();
  }
  moveTo(target);
}

/** Fire `clock`'s timers one by one until `predicate()` holds or `maxMs` passed; whether it held. */
export async function advanceStepsUntil(
  clock: SteppedClock,
  predicate: () => boolean,
  maxMs: number,
  moveTo: (t: number) => void,
): Promise<boolean> {
  const limit = clock.now() + maxMs;
  await flushMicrotasks();
  while (!predicate()) {
    const due = clock.nextDue();
    if (due === undefined || due > limit) {
      moveTo(Math.max(clock.now(), limit));
      return predicate();
    }
    clock.step();
    await flushMicrotasks();
  }
  return true;
}

/**
 * Let every queued promise continuation and nextTick callback run. A
 * macrotask boundary is the only reliable way to drain chains of unknown
 * depth; with only in-memory work pending, what runs is deterministic.
 */
export function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve)); // allowed: virtual clock drains microtasks, reads no time
}
