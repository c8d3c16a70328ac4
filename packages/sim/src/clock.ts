/**
 * A per-node view of the shared VirtualClock that can be paused, as SIGSTOP
 * pauses a process: time goes on (now() keeps moving), but the node's
 * timers do not run. Timers that fall due during a pause fire at resume, in
 * the order they fell due (each on its own clock step, so promise
 * continuations settle in between, as in a real event loop). `kill()` drops
 * every timer for good: a crashed process runs nothing any more.
 */
import type { Clock, TimerHandle, VirtualClock } from '@clusterinfra/core';

interface NodeTimer {
  fn: () => void;
  cancelled: boolean;
}

export class NodeClock implements Clock {
  private pausedFlag = false;
  private dead = false;
  private held: NodeTimer[] = [];

  constructor(private readonly base: VirtualClock) {}

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
    const timer: NodeTimer = { fn, cancelled: false };
    const inner = this.base.setTimeout(() => this.due(timer), ms);
    const handle: TimerHandle = {
      cancel: () => {
        timer.cancelled = true;
        inner.cancel();
      },
      unref: () => handle,
    };
    return handle;
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

  private due(t: NodeTimer): void {
    if (t.cancelled || this.dead) return;
    if (this.pausedFlag) {
      this.held.push(t);
      return;
    }
    t.fn();
  }
}
