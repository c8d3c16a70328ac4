/**
 * The partial-frame deadline: a frame whose first byte arrived must be
 * complete within `ms`. One timer per connection, re-armed lazily: when it
 * fires for a frame that has since completed, it re-arms for the frame in
 * progress instead of expiring, so a steady stream of chunk-spanning frames
 * costs one timer at a time, not one per frame.
 */
import type { Clock, TimerHandle } from '@clusterinfra/core';

/** What the deadline watches: a frame decoder, or a record opener and the decoder behind it. */
export interface ReadProgress {
  /** Part of a unit (frame or record) has arrived and the rest has not. */
  readonly partial: boolean;
  /** Units completed so far: tells which one is the partial one. */
  readonly completed: number;
  readonly failed: boolean;
}

export class FrameDeadline {
  private timer: TimerHandle | undefined;
  private startedAt = 0;
  private frameIndex = -1;
  private suspended = false;

  constructor(
    private readonly clock: Clock,
    private readonly ms: number,
    private readonly decoder: ReadProgress,
    private readonly onExpire: () => void,
  ) {}

  /** Call after the decoder consumed input: starts, keeps or stops the deadline. */
  update(): void {
    if (this.suspended || this.decoder.failed || !this.decoder.partial) {
      this.cancel();
      return;
    }
    const index = this.decoder.completed;
    if (this.timer !== undefined && index === this.frameIndex) return;
    this.frameIndex = index;
    this.startedAt = this.clock.now();
    this.timer ??= this.clock.setTimeout(() => this.fire(), this.ms);
  }

  /** We stopped reading (paused link): the peer is not late, we are. */
  suspend(): void {
    this.suspended = true;
    this.cancel();
  }

  /** Reading again: a frame still partial gets a fresh deadline from now. */
  unsuspend(): void {
    this.suspended = false;
    this.frameIndex = -1;
    this.update();
  }

  cancel(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  private fire(): void {
    this.timer = undefined;
    if (this.suspended || !this.decoder.partial) return;
    if (this.decoder.completed !== this.frameIndex) {
      // The frame we timed has completed; time the one in progress.
      this.frameIndex = this.decoder.completed;
      this.startedAt = this.clock.now();
    }
    const left = this.startedAt + this.ms - this.clock.now();
    if (left > 0) this.timer = this.clock.setTimeout(() => this.fire(), left);
    else this.onExpire();
  }
}
