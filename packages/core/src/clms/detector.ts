/**
 * Nodedown detection is pluggable (seed feature 12). CLMS feeds a detector
 * what it observes (answers to the master's heartbeats, links the transport
 * lost) and asks it, every heartbeat interval, which members to suspect.
 * A detector may also push suspicions of its own (an external watchdog, a
 * hardware monitor) through `start`. Whatever it suspects, CLMS verifies
 * (asks the node and a few others to reach it) before declaring anything.
 */
import type { Clock } from '../clock/index.js';
import type { Timing } from './options.js';

export interface Suspicion {
  readonly node: number;
  readonly reason: string;
  /**
   * Clock time until which verification waits for the node to answer
   * (a paused node that wakes before then is kept). Default: the RPC
   * timeout from when verification starts.
   */
  readonly deadline?: number;
}

export interface DetectorContext {
  readonly self: number;
  readonly clock: Clock;
  readonly timing: Timing;
  /** Report a suspicion now; CLMS verifies it. */
  suspect(node: number, reason: string): void;
}

export interface NodedownDetector {
  /** Named in decision records. */
  readonly name: string;
  /** Called once when the node starts; push-style detectors keep `ctx`. */
  start?(ctx: DetectorContext): void;
  stop?(): void;
  /** Something was heard from `node` (a heartbeat answer, on the master). */
  heard(node: number, now: number): void;
  /** The transport lost its link to `node`; true to suspect it at once (a dead process closes its sockets). */
  linkLost(node: number, now: number): boolean;
  /** Called every heartbeat interval on the master with the members it watches. */
  check(now: number, watched: readonly number[]): Suspicion[];
  /** `node` left the membership (or came back): drop what is known about it. */
  forget(node: number): void;
}

/**
 * The default detector: a member silent for `timeoutMs` (default: the
 * preset's failure timeout) since its last heartbeat answer is declared
 * down by then, not a verification later: it is suspected a verification
 * window earlier (the RPC timeout, at most half the timeout), and
 * verification waits for its answer until a quarter heartbeat interval
 * before the timeout is up (room for the commit to reach every member in
 * time). A node that answers meanwhile is kept, so a pause shorter than
 * the timeout less 1.25 heartbeat intervals (the last answer can be one
 * interval older than the pause) is never a failure. A broken link is
 * suspected at once.
 */
export function heartbeatDetector(options: { timeoutMs?: number } = {}): (timing: Timing) => NodedownDetector {
  return (timing) => {
    const timeoutMs = options.timeoutMs ?? timing.failureTimeoutMs;
    const window = Math.min(timing.rpcTimeoutMs, timeoutMs / 2);
    const answerBy = timeoutMs - Math.min(timing.heartbeatIntervalMs / 4, window / 2);
    const last = new Map<number, number>();
    return {
      name: 'heartbeat',
      heard: (node, now) => void last.set(node, now),
      linkLost: () => true,
      check: (now, watched) => {
        const out: Suspicion[] = [];
        for (const n of watched) {
          const t = last.get(n);
          if (t === undefined) last.set(n, now);
          else if (now - t > timeoutMs - window) out.push({ node: n, reason: `no heartbeat answer for ${timeoutMs} ms`, deadline: t + answerBy });
        }
        return out;
      },
      forget: (node) => void last.delete(node),
    };
  };
}
