/**
 * Pub/sub, the receiving side: subscriptions with bounded queues, run one
 * event at a time each; and the wire shape of an event.
 *
 * Order: the event service's handler puts an event on every target
 * subscription's queue before it awaits anything, and ICS starts a peer's
 * one-way messages in the order they were sent, so each subscription sees
 * one publisher's events in publish order. Each event also carries the
 * publisher's sequence number for this node: a gap (an event handed to a
 * link that was then lost) is counted and reported, never silent.
 */
import { z } from 'zod';

export const eventMessage = z.strictObject({
  /** Topic. */
  t: z.string().min(1).max(200),
  /** The publisher's sequence number of events to this node (per publisher incarnation). */
  s: z.number().int().positive(),
  /** `null`: broadcast (every subscription of the topic); else the groups this node delivers to (one subscription each). */
  g: z.array(z.string().min(1).max(200)).max(64).nullable(),
  /** Balanced delivery: also every subscription without a group. */
  o: z.boolean(),
  /** The data. */
  d: z.unknown(),
});
export type EventMessage = z.infer<typeof eventMessage>;

/** What a subscription's handler is given besides the data. */
export interface EventInfo {
  readonly topic: string;
  /** The publishing node. */
  readonly publisher: number;
  /** The publisher's sequence number of events to this node. */
  readonly seq: number;
  /** How it was published. */
  readonly delivery: Delivery;
}

export type Delivery = 'broadcast' | 'balanced';

export type EventHandler = (data: unknown, info: EventInfo) => unknown;

/** One subscription on this node: a bounded queue and a handler that runs one event at a time. */
export class LocalSubscription {
  private readonly queue: { data: unknown; info: EventInfo }[] = [];
  private running = false;
  private drained: (() => void)[] = [];
  closed = false;

  constructor(
    readonly topic: string,
    readonly group: string | undefined,
    private readonly handler: EventHandler,
    private readonly maxQueue: number,
    private readonly failed: (err: unknown, info: EventInfo) => void,
  ) {}

  get queued(): number {
    return this.queue.length;
  }

  /** Over its bound: the event service waits (see `whenBelow`) before it takes more, so flow control slows the publishers. */
  get full(): boolean {
    return this.queue.length >= this.maxQueue;
  }

  push(data: unknown, info: EventInfo): void {
    if (this.closed) return;
    this.queue.push({ data, info });
    if (!this.running) void this.run();
  }

  /** Resolves once the queue is below its bound (or the subscription ended). */
  whenBelow(): Promise<void> {
    if (!this.full || this.closed) return Promise.resolve();
    return new Promise((r) => this.drained.push(r));
  }

  /** Ends the subscription: queued events are not run (they are counted by the caller). */
  close(): number {
    this.closed = true;
    const left = this.queue.length;
    this.queue.length = 0;
    this.wake();
    return left;
  }

  private wake(): void {
    const waiting = this.drained;
    this.drained = [];
    for (const r of waiting) r();
  }

  /**
   * Run the queued events in order, one at a time. A handler that returns
   * no promise is run inline (no promise per event); one that returns a
   * promise is waited for before the next event.
   */
  private run(): void {
    this.running = true;
    for (let e = this.queue.shift(); e && !this.closed; e = this.queue.shift()) {
      if (!this.full) this.wake();
      let r: unknown;
      try {
        r = this.handler(e.data, e.info);
      } catch (err) {
        this.failed(err, e.info);
        continue;
      }
      if (typeof (r as PromiseLike<unknown> | undefined)?.then === 'function') {
        const info = e.info;
        (r as PromiseLike<unknown>).then(
          () => this.run(),
          (err: unknown) => {
            this.failed(err, info);
            this.run();
          },
        );
        return;
      }
    }
    this.running = false;
    this.wake();
  }
}
