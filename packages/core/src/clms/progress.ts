/**
 * Join progress: what a node that has not joined yet is waiting for, in
 * words (docs/membership.md, "Joining: progress and timeouts").
 *
 * The join loop reports each round's findings here (which seeds answered
 * and how the others failed, how an election went, what a master said);
 * the tracker turns them into a list of reasons, emits a `joining` event
 * when the list changes, and warns through the logger at a bounded rate
 * (by the injected clock). `start({ timeoutMs, signal })` gives up with the
 * current reasons. Handshakes refused in either direction are also kept,
 * bounded, for `cluster status`.
 */
import type { ClusterInfraError } from '../errors/index.js';
import type { Logger } from '../logging/index.js';
import { nodeList, reachFailure, refusedInbound } from './reasons.js';

/** What a `joining` event carries. */
export interface JoinProgress {
  /** The incarnation that is joining. */
  readonly incarnation: number;
  /** What it waits for now, one line each, e.g. `handshake with 127.0.0.1:7201 rejected: auth (check the secret)`. */
  readonly reasons: readonly string[];
  /** Milliseconds (node clock) since this incarnation began to look for the cluster. */
  readonly waitedMs: number;
}

/** A handshake refused lately, in either direction (see `ClusterNode.refusedHandshakes`). */
export interface RefusedHandshake {
  /** `inbound`: a peer's handshake with this node failed; `outbound`: this node's handshake with a seed failed (either side may have found the mismatch). */
  readonly direction: 'inbound' | 'outbound';
  /** The peer's address as the transport reports it. */
  readonly address: string;
  /** The node number the peer claimed, when known. */
  readonly node?: number;
  /** The handshake reason (`auth`, `cluster-name`, `identity`, …) or the error code. */
  readonly reason: string;
  /** The same in words, with what to check. */
  readonly text: string;
  /** How often since it was first seen. */
  readonly count: number;
  /** Milliseconds (node clock) since it was last seen, at the time of asking. */
  readonly lastAgoMs: number;
}

/** Warning rate: the first after `afterMs` of joining, then one per `everyMs` at most. */
export const JOIN_WARN = { afterMs: 2000, everyMs: 10_000 } as const;
/** Per-address reasons listed in one round at most (the rest are counted). */
const MAX_LISTED = 8;
/** Refused handshakes remembered (the oldest go first). */
const MAX_REFUSALS = 32;

/** What one round of probing the seeds found. */
export interface ProbeRound {
  /** Addresses probed. */
  readonly tried: number;
  /** Addresses that answered the master question (with a master or without). */
  readonly answered: number;
  /** address → why it could not be asked. */
  readonly failures: ReadonlyMap<string, unknown>;
  /** The master named by the best answer, if any. */
  readonly master: number | undefined;
}

export interface JoinTrackerContext {
  readonly now: () => number;
  readonly log: Logger;
  readonly emit: (progress: JoinProgress) => void;
}

export class JoinTracker {
  private incarnation = 0;
  private began = 0;
  private probe: string[] = [];
  private election: string | undefined;
  private join: string | undefined;
  private current: readonly string[] = [];
  private lastWarnAt = Number.NEGATIVE_INFINITY;
  private lastWarned = '';
  private readonly refusals = new Map<string, Omit<RefusedHandshake, 'lastAgoMs'> & { at: number }>();

  constructor(private readonly ctx: JoinTrackerContext) {}

  /** An incarnation begins to look for the cluster: forget the former one's reasons. */
  begin(incarnation: number): void {
    this.incarnation = incarnation;
    this.began = this.ctx.now();
    this.probe = [];
    this.election = undefined;
    this.join = undefined;
    this.current = [];
    this.lastWarnAt = Number.NEGATIVE_INFINITY;
    this.lastWarned = '';
  }

  /** The reasons as of the last round (what `start()` rejects with). */
  reasons(): readonly string[] {
    return this.current;
  }

  /** One round of asking the seeds who the master is. */
  probed(r: ProbeRound, candidate: boolean, candidates: readonly number[]): void {
    const out: string[] = [];
    if (r.master !== undefined) this.election = undefined;
    if (r.tried === 0) {
      out.push(candidate ? 'no seeds to probe: only the other candidates can reach this node' : 'no seeds configured (nor discovery) and this node is not a candidate: nobody to join');
    } else if (r.answered === 0) {
      out.push('no seed answers');
    } else if (r.master === undefined) {
      out.push(`no master yet (${r.answered} of ${r.tried} seeds answered; candidates ${candidates.join(', ')} form the cluster)`);
    }
    let listed = 0;
    for (const [address, err] of r.failures) {
      if (listed++ < MAX_LISTED) out.push(reachFailure(address, err));
      this.noteOutbound(address, err);
    }
    if (r.failures.size > MAX_LISTED) out.push(`… and ${r.failures.size - MAX_LISTED} more seeds that do not answer`);
    this.probe = out;
  }

  /**
   * A bootstrap election (no history anywhere yet) did not win: `missing`
   * are the candidates whose votes it lacks.
   */
  electionWaits(missing: readonly number[], formation: 'all-candidates' | 'majority' | 'quorum', voters: readonly number[]): void {
    if (missing.length === 0) this.election = undefined;
    else if (formation === 'all-candidates') this.election = `waiting for candidates ${missing.join(', ')} (formation: all-candidates)`;
    else this.election = `waiting for a quorum of candidates ${voters.join(', ')}: no vote yet from ${nodeList(missing)} (formation: ${formation})`;
  }

  /** What the master said to a join request (undefined: accepted or still queued). */
  joinAnswer(master: number, reason: string | undefined): void {
    this.join = reason === undefined ? undefined : `join refused by master ${master}: ${reason}`;
  }

  /** This node refused a peer's handshake (a listener `rejected` event). */
  refusedInbound(remoteAddress: string, err: ClusterInfraError, node: number | undefined): void {
    const reason = (err as { reason?: string }).reason ?? err.code;
    this.remember({ direction: 'inbound', address: remoteAddress, ...(node !== undefined ? { node } : {}), reason, text: refusedInbound(remoteAddress, err, node) });
  }

  /** Handshakes refused lately, newest last, with how long ago each was last seen. */
  refused(): RefusedHandshake[] {
    const now = this.ctx.now();
    return [...this.refusals.values()].map(({ at, ...r }) => ({ ...r, lastAgoMs: now - at }));
  }

  /** End of a round: publish the reasons when they changed; warn at a bounded rate. */
  publish(): void {
    const reasons = [...this.probe, ...(this.election ? [this.election] : []), ...(this.join ? [this.join] : [])];
    const key = reasons.join('\n');
    if (key !== this.current.join('\n')) {
      this.current = reasons;
      this.ctx.emit({ incarnation: this.incarnation, reasons, waitedMs: this.ctx.now() - this.began });
    }
    const now = this.ctx.now();
    const waited = now - this.began;
    if (reasons.length === 0 || waited < JOIN_WARN.afterMs || now - this.lastWarnAt < JOIN_WARN.everyMs) return;
    // The same reasons again are worth a line only every few periods.
    if (key === this.lastWarned && now - this.lastWarnAt < JOIN_WARN.everyMs * 6) return;
    this.lastWarnAt = now;
    this.lastWarned = key;
    this.ctx.log.warn({ reasons, waitedMs: waited }, `not joined yet after ${Math.round(waited)} ms: ${reasons.join('; ')}`);
  }

  private noteOutbound(address: string, err: unknown): void {
    const reason = (err as { reason?: string }).reason;
    if (reason === undefined) return;
    this.remember({ direction: 'outbound', address, reason, text: reachFailure(address, err) });
  }

  private remember(r: Omit<RefusedHandshake, 'lastAgoMs' | 'count'>): void {
    // By node when it is known, else by host: an inbound peer dials from a new port every time.
    const key = `${r.direction}|${r.node ?? r.address.replace(/:\d+$/, '')}|${r.reason}`;
    const seen = this.refusals.get(key);
    this.refusals.delete(key);
    this.refusals.set(key, { ...r, count: (seen?.count ?? 0) + 1, at: this.ctx.now() });
    if (this.refusals.size > MAX_REFUSALS) this.refusals.delete(this.refusals.keys().next().value!);
  }
}
