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
  /**
   * Something was heard from `node` (on the master: an answer to a
   * heartbeat or to an append, which stands for the next heartbeat).
   * `stretch`: the node's own local-health multiplier as it reported it
   * (above 1 when its timers run late: give it as much longer to answer).
   */
  heard(node: number, now: number, stretch?: number): void;
  /** The transport lost its link to `node`; true to suspect it at once (a dead process closes its sockets). */
  linkLost(node: number, now: number): boolean;
  /**
   * Called every heartbeat interval on the master with the members it
   * watches. `stretch` (1 when healthy) is this node's local-health
   * multiplier: its own timers ran late, so its silence measures are
   * suspect and waits should be multiplied by it (Lifeguard).
   */
  check(now: number, watched: readonly number[], stretch?: number): Suspicion[];
  /** `node` left the membership (or came back): drop what is known about it. */
  forget(node: number): void;
}

/**
 * The default detector: a member silent for `timeoutMs` (default: the
 * preset's failure timeout) since its last heartbeat (or append) answer is declared
 * down by then, not a verification later: it is suspected a verification
 * window earlier (the RPC timeout, at most half the timeout), and
 * verification waits for its answer until a quarter heartbeat interval
 * before the timeout is up (room for the commit to reach every member in
 * time). A node that answers meanwhile is kept, so a pause shorter than
 * the timeout less 1.25 heartbeat intervals (the last answer can be one
 * interval older than the pause) is never a failure. A broken link is
 * suspected at once. While this node's own timers run late, the timeout and
 * the verification window are multiplied by its local-health `stretch`: a
 * starved master does not take the silence its own lateness made for its
 * members' fault.
 */
export function heartbeatDetector(options: { timeoutMs?: number } = {}): (timing: Timing) => NodedownDetector {
  return (timing) => {
    const base = options.timeoutMs ?? timing.failureTimeoutMs;
    const last = new Map<number, number>();
    /** What each member last said of its own health (bounded by the members watched). */
    const theirs = new Map<number, number>();
    return {
      name: 'heartbeat',
      heard: (node, now, stretch) => {
        last.set(node, now);
        if (stretch !== undefined && Number.isFinite(stretch)) theirs.set(node, Math.min(65, Math.max(1, stretch)));
      },
      linkLost: () => true,
      check: (now, watched, ours = 1) => {
        const out: Suspicion[] = [];
        for (const n of watched) {
          // The longer of our lateness and the node's own, as it last reported it.
          const stretch = Math.max(ours, theirs.get(n) ?? 1);
          const timeoutMs = base * stretch;
          const window = Math.min(timing.rpcTimeoutMs * stretch, timeoutMs / 2);
          const answerBy = timeoutMs - Math.min(timing.heartbeatIntervalMs / 4, window / 2);
          const t = last.get(n);
          if (t === undefined) last.set(n, now);
          else if (now - t > timeoutMs - window) out.push({ node: n, reason: `no heartbeat answer for ${timeoutMs} ms`, deadline: t + answerBy });
        }
        return out;
      },
      forget: (node) => {
        last.delete(node);
        theirs.delete(node);
      },
    };
  };
}
