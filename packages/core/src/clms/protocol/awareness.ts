/**
 * Local health (DESIGN §4.7; docs/membership.md "A node's own trouble"), the
 * idea of Lifeguard's self-awareness as memberlist applies it: a node whose
 * own timers run late (a starved event loop, a long GC pause, a stopped
 * process) cannot tell a silent peer from its own slowness, so it first
 * suspects itself. It measures how late its own periodic tick fires against
 * when it was due; each late tick raises a score by the number of intervals
 * it lost, each tick on time lowers it by one. The score multiplies the
 * node's own waits (failure detection, verification deadlines, the silence
 * it allows its master), so a node in trouble is slow to accuse others and
 * gives the accused longer to answer, and it is back to normal after `max`
 * ticks on time.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 * Time comes in as the arguments.
 */

export interface LocalHealthOptions {
  /** The period of the tick being measured. */
  intervalMs: number;
  /**
   * Highest score: waits are stretched at most `max + 1` times. 0 turns the
   * measure off (the score stays 0).
   */
  max: number;
  /** Lateness below this is jitter, not trouble. @default a quarter interval */
  toleranceMs?: number;
}

export class LocalHealth {
  private current = 0;
  private late = 0;
  private readonly tolerance: number;

  constructor(private readonly o: LocalHealthOptions) {
    this.tolerance = o.toleranceMs ?? o.intervalMs / 4;
  }

  /** 0 when healthy, up to `max`. */
  get score(): number {
    return this.current;
  }

  /** How many late events were seen so far (only grows): lets a caller ask "was I late since then?". */
  get lateEvents(): number {
    return this.late;
  }

  /** What this node's waits are multiplied by: score + 1. */
  get multiplier(): number {
    return this.current + 1;
  }

  /** Stretch a wait by the multiplier. */
  scale(ms: number): number {
    return ms * this.multiplier;
  }

  /** The periodic tick due at `dueAt` ran at `ranAt`; returns the new score. */
  tick(dueAt: number, ranAt: number): number {
    if (!this.lateBy(ranAt - dueAt)) this.current = Math.max(0, this.current - 1);
    return this.current;
  }

  /**
   * Something this node timed (a call's timeout) came `ms` after it was due:
   * true when that is its own lateness, which then raises the score as a
   * late tick does (a timeout that fires that late says nothing about the
   * peer it was waiting for).
   */
  lateBy(ms: number): boolean {
    if (ms <= this.tolerance || this.o.max <= 0) return false;
    this.late++;
    this.current = Math.min(this.o.max, this.current + Math.ceil(ms / this.o.intervalMs));
    return true;
  }
}
