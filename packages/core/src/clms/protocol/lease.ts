/**
 * Leases: how long this node may act on what it was last told (K1, K5,
 * docs/key-services.md). Two sides, one rule: count from the *sending* of a
 * request that was answered, never from the answer, on this node's own
 * clock. An answer that waited in a queue (this process was paused, a link
 * stalled) proves nothing about the time since.
 *
 * - A member holds a lease for a failure timeout after it sent the last
 *   lease request its master granted. A master grants none once it applied
 *   the member's down, so the lease ends at most a failure timeout after
 *   that (the fence wait).
 * - A master holds one while it heard a quorum of the voters (itself
 *   included) within the failure timeout; the same table of acknowledgements
 *   tells it when it lost its quorum.
 *
 * The driver sends the requests and feeds the answers in; this class only
 * counts. Pure: no IO, no timers, nothing asynchronous
 * (test/architecture.test.ts).
 */
import { hasQuorum, type QuorumPolicy } from './quorum.js';

export class Lease {
  /** Member: when it sent the last lease request its master granted. */
  private grantedFrom = Number.NEGATIVE_INFINITY;
  /** Member: a lease request is under way (one at a time). */
  asking = false;
  /** Master: per member, when it sent the last request that member answered. */
  private readonly acks = new Map<number, number>();

  constructor(
    private readonly failureTimeoutMs: number,
    private readonly policy: QuorumPolicy,
  ) {}

  // ---------------------------------------------------------------- member side

  /** The master granted a lease request sent at `sentAt`. */
  granted(sentAt: number): void {
    this.grantedFrom = Math.max(this.grantedFrom, sentAt);
  }

  /** A member's lease at `now`. */
  memberHolds(now: number): boolean {
    return now - this.grantedFrom <= this.failureTimeoutMs;
  }

  // ---------------------------------------------------------------- master side

  /** `node` answered a request sent at `sentAt`: it was with us then. */
  ack(node: number, sentAt: number): void {
    this.acks.set(node, Math.max(this.acks.get(node) ?? Number.NEGATIVE_INFINITY, sentAt));
  }

  /** A new mastership: every voter counts as heard at `now` (they just voted). */
  elected(voters: readonly number[], now: number): void {
    for (const v of voters) this.acks.set(v, now);
  }

  /** Members not heard of before count from `now`: a new member gets a whole timeout. */
  expect(members: readonly number[], now: number): void {
    for (const n of members) if (!this.acks.has(n)) this.acks.set(n, now);
  }

  /**
   * `self` and the voters heard within `windowMs` (the failure timeout
   * unless told otherwise) at `now` (never heard: counts as now).
   */
  heard(self: number, voters: readonly number[], now: number, windowMs = this.failureTimeoutMs): Set<number> {
    const heard = new Set<number>([self]);
    for (const v of voters) if (now - (this.acks.get(v) ?? now) <= windowMs) heard.add(v);
    return heard;
  }

  /** A master's lease at `now`: it heard a quorum of the voters within the failure timeout. */
  masterHolds(self: number, voters: readonly number[], now: number): boolean {
    return hasQuorum(this.policy, this.heard(self, voters, now), voters);
  }

  /** A new incarnation starts with no acknowledgements. */
  forgetAcks(): void {
    this.acks.clear();
  }
}
