/**
 * The simulator's clocks.
 *
 * `SimClock` is the one virtual clock of a world: the same contract as
 * core's `VirtualClock` (timers fire in order of due time, then of
 * setting; `advance`/`advanceUntil` are core's own `advanceSteps` loops,
 * which let every promise continuation settle after each timer through one
 * macrotask), so a seed's trace is the same under either. It is built for the simulator's load: a timer is one
 * object that is its own handle (no closures per timer), a cancelled timer
 * leaves the heap at once (ICS arms and cancels a deadline per call, so
 * lazily dropped timers used to pile up), and a node's timers sit in the
 * same heap as everyone's, without a second timer per timer.
 *
 * `NodeClock` is a node's pausable view of it, as SIGSTOP pauses a
 * process: time goes on (now() keeps moving), but the node's timers do not
 * run. Timers that fall due during a pause fire at resume, in the order
 * they fell due (each on its own clock step, so promise continuations
 * settle in between, as in a real event loop). `kill()` drops every timer
 * for good: a crashed process runs nothing any more.
 */
import { type Clock, type TimerHandle } from '@clusterinfra/core';
import { advanceSteps, advanceStepsUntil } from '@clusterinfra/core/testing';

/** Wall-clock time at virtual time 0, as core's VirtualClock: 2026-01-01T00:00:00Z. */
const START_WALL_TIME = 1_767_225_600_000;

class Timer implements TimerHandle {
  /** Index in the heap; -1 once out of it (fired or cancelled). */
  pos = -1;
  cancelled = false;

  constructor(
    readonly clock: SimClock,
    readonly at: number,
    readonly seq: number,
    readonly fn: () => void,
    /** The node clock whose timer this is (it decides at due time whether the node runs it). */
    readonly owner: NodeClock | undefined,
  ) {}

  cancel(): void {
    this.cancelled = true;
    if (this.pos >= 0) this.clock.remove(this);
  }

  unref(): TimerHandle {
    return this;
  }
}

export class SimClock implements Clock {
  private current = 0;
  private seq = 0;
  private readonly heap: Timer[] = [];
  private firedCount = 0;
  private readonly moveTo = (t: number): void => {
    this.current = t;
  };

  now(): number {
    return this.current;
  }

  wallNow(): number {
    return START_WALL_TIME + this.current;
  }

  /** Timers fired since creation. */
  get fired(): number {
    return this.firedCount;
  }

  /** Timers scheduled and not yet fired or cancelled. */
  get pending(): number {
    return this.heap.length;
  }

  /** Due time of the next timer, or undefined when none is pending. */
  nextDue(): number | undefined {
    return this.heap[0]?.at;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.schedule(fn, ms, undefined);
  }

  /** @internal A timer of `owner` (a NodeClock), or of nobody. */
  schedule(fn: () => void, ms: number, owner: NodeClock | undefined): Timer {
    const t = new Timer(this, this.current + Math.max(0, ms), this.seq++, fn, owner);
    this.push(t);
    return t;
  }

  /** Fire the next timer (moving time to it); false when none is pending. Continuations it starts run after this returns. */
  step(): boolean {
    const t = this.pop();
    if (!t) return false;
    this.current = Math.max(this.current, t.at);
    this.firedCount++;
    if (t.owner) t.owner.due(t);
    else t.fn();
    return true;
  }

  /** Move time forward by `ms`, firing every timer due on the way, in order, settling continuations after each. */
  advance(ms: number): Promise<void> {
    return advanceSteps(this, ms, this.moveTo);
  }

  /** Advance timer by timer until `predicate()` holds or `maxMs` of virtual time passed; whether it held. */
  advanceUntil(predicate: () => boolean, maxMs = 60_000): Promise<boolean> {
    return advanceStepsUntil(this, predicate, maxMs, this.moveTo);
  }

  // ------------------------------------------------------------ the heap, ordered by (at, seq)

  /** @internal Take a cancelled timer out of the heap. */
  remove(t: Timer): void {
    const h = this.heap;
    const i = t.pos;
    t.pos = -1;
    const last = h.pop()!;
    if (last === t) return;
    h[i] = last;
    last.pos = i;
    if (i > 0 && less(last, h[(i - 1) >> 1]!)) this.up(i);
    else this.down(i);
  }

  private push(t: Timer): void {
    t.pos = this.heap.length;
    this.heap.push(t);
    this.up(t.pos);
  }

  private pop(): Timer | undefined {
    const h = this.heap;
    const top = h[0];
    if (!top) return undefined;
    top.pos = -1;
    const last = h.pop()!;
    if (last !== top) {
      h[0] = last;
      last.pos = 0;
      this.down(0);
    }
    return top;
  }

  private up(i: number): void {
    const h = this.heap;
    const t = h[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p]!;
      if (!less(t, parent)) break;
      h[i] = parent;
      parent.pos = i;
      i = p;
    }
    h[i] = t;
    t.pos = i;
  }

  private down(i: number): void {
    const h = this.heap;
    const n = h.length;
    const t = h[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && less(h[r]!, h[l]!) ? r : l;
      const child = h[c]!;
      if (!less(child, t)) break;
      h[i] = child;
      child.pos = i;
      i = c;
    }
    h[i] = t;
    t.pos = i;
  }
}

function less(a: Timer, b: Timer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** What a node clock holds while paused. */
interface NodeTimer {
  readonly fn: () => void;
  cancelled: boolean;
}

/** A node clock's timer on a base clock other than SimClock (core's VirtualClock in core's scenario tests). */
class WrappedTimer implements NodeTimer, TimerHandle {
  cancelled = false;
  inner: TimerHandle | undefined;

  constructor(readonly fn: () => void) {}

  cancel(): void {
    this.cancelled = true;
    this.inner?.cancel();
  }

  unref(): TimerHandle {
    return this;
  }
}

export class NodeClock implements Clock {
  private pausedFlag = false;
  private dead = false;
  private held: NodeTimer[] = [];

  /** `base`: the world's SimClock (its timers go straight into its heap), or any other clock (each timer wraps one of it). */
  constructor(private readonly base: Clock) {}

  now(): number {
    return this.base.now();
  }

  wallNow(): number {
    return this.base.wallNow();
  }

  get paused(): boolean {
    return this.pausedFlag;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    if (this.base instanceof SimClock) return this.base.schedule(fn, ms, this);
    const t = new WrappedTimer(fn);
    t.inner = this.base.setTimeout(() => this.due(t), ms);
    return t;
  }

  pause(): void {
    this.pausedFlag = true;
  }

  /** Resume: held timers fire now, one clock step each, in the order they fell due. */
  resume(): void {
    if (!this.pausedFlag) return;
    this.pausedFlag = false;
    const held = this.held;
    this.held = [];
    for (const t of held) this.base.setTimeout(() => this.due(t), 0);
  }

  kill(): void {
    this.dead = true;
    this.held = [];
  }

  /** @internal `t` fell due (or was held and is let go now). */
  due(t: NodeTimer): void {
    if (t.cancelled || this.dead) return;
    if (this.pausedFlag) {
      this.held.push(t);
      return;
    }
    t.fn();
  }
}
