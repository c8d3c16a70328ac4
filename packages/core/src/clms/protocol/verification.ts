/**
 * Verification of a suspicion (docs/architecture.md, "What happens when a
 * node goes down", step 2), as a tally. Before a master declares a node
 * down it asks the node itself (`alive`) and, at the same time, up to five
 * other Up members to reach it (`probe`); the driver makes those calls and
 * feeds each answer in, together with the `suspect` reports members send on
 * their own (a killed process closes its links to everyone: their reports
 * may arrive before the probes).
 *
 * The rule: a node's own trouble is never evidence against another
 * (Lifeguard; DESIGN §4.7; docs/membership.md "A node's own trouble"):
 * - reachable as soon as anyone reaches it (the node answers, or a helper
 *   reached it);
 * - unreachable once the master could not reach it and either three of the
 *   first five other members (all of them when fewer) said so, by probe or
 *   by a report of their own made within the failure timeout, or every
 *   helper settled and at least one said so. Three of five, not all: one
 *   helper the scheduler or the network holds back does not hold the
 *   decision back;
 * - a probe that never came back is no evidence (it may be the master's own
 *   link that failed): when every helper settled and none could say
 *   anything, the suspicion is left open (`unknown`; the node stays);
 * - a member that already reported the node unreachable counts as it is and
 *   is not asked to dial it again.
 *
 * Each input returns the verdict when that input decided it, once;
 * undefined otherwise. Pure: no IO, no timers, nothing asynchronous
 * (test/architecture.test.ts).
 */

/** What a verification found: someone reached the node, others confirmed it unreachable, or nobody could say. */
export type Verdict = 'reachable' | 'unreachable' | 'unknown';

/** Master: members that reported a node unreachable (their link to it was lost, or their detector suspects it), and when. */
export class UnreachableReports {
  private readonly byNode = new Map<number, { incarnation: number; from: Map<number, number> }>();

  /** `from` reported (node, incarnation) unreachable at `now`; a report about another incarnation starts afresh. */
  note(node: number, incarnation: number, from: number, now: number): void {
    let seen = this.byNode.get(node);
    if (!seen || seen.incarnation !== incarnation) this.byNode.set(node, (seen = { incarnation, from: new Map() }));
    seen.from.set(from, now);
  }

  /** Who reported (node, incarnation) unreachable, and when (in the order they first did). */
  of(node: number, incarnation: number): ReadonlyMap<number, number> | undefined {
    const seen = this.byNode.get(node);
    return seen?.incarnation === incarnation ? seen.from : undefined;
  }

  /** The node is Down: its reports are of no more use. */
  forget(node: number): void {
    this.byNode.delete(node);
  }

  clear(): void {
    this.byNode.clear();
  }
}

export interface VerificationStart {
  node: number;
  incarnation: number;
  /** This master. */
  self: number;
  /** The Up members, by node number: the first five but the node and the master are the pool of helpers. */
  up: readonly number[];
  /** What each observer said (written as answers come in; it goes into the decision record). */
  observers: Record<string, string>;
  reports: UnreachableReports;
  failureTimeoutMs: number;
  /** When the verification begins (reports within the failure timeout before it count at once). */
  now: number;
}

/** One verification of (node, incarnation). */
export class Verification {
  /** The members asked to reach the node (the pool less those that reported it already). */
  readonly helpers: readonly number[];
  private readonly wanted: number;
  private readonly couldNot = new Set<number>();
  private selfFailed = false;
  private settled = 0;
  private result: Verdict | undefined;

  constructor(private readonly v: VerificationStart) {
    const pool = v.up.filter((n) => n !== v.node && n !== v.self).slice(0, 5);
    this.wanted = Math.min(3, pool.length);
    this.countReports(v.now);
    this.helpers = pool.filter((h) => !this.couldNot.has(h));
  }

  /** The verdict, once decided. */
  get outcome(): Verdict | undefined {
    return this.result;
  }

  /** The node answered this master's `alive`. */
  aliveAnswered(): Verdict | undefined {
    this.v.observers[String(this.v.self)] = 'answered';
    return this.decide('reachable');
  }

  /** This master's `alive` failed (`code`: the error's code, if it had one); the driver may try it again while undecided. */
  aliveFailed(code: string | undefined, now: number): Verdict | undefined {
    this.v.observers[String(this.v.self)] = code ?? 'no answer';
    this.selfFailed = true;
    return this.evaluate(now);
  }

  /** Helper `h` answered its probe. */
  probeAnswered(h: number, reachable: boolean, now: number): Verdict | undefined {
    this.v.observers[String(h)] = reachable ? 'reached it' : 'could not reach it';
    this.settled++;
    if (reachable) return this.decide('reachable');
    this.couldNot.add(h);
    return this.evaluate(now);
  }

  /** Helper `h` did not answer its probe: no evidence either way. */
  probeFailed(h: number, now: number): Verdict | undefined {
    this.v.observers[String(h)] ??= 'did not answer';
    this.settled++;
    return this.evaluate(now);
  }

  /** A member reported the node unreachable (see `UnreachableReports`). */
  reported(now: number): Verdict | undefined {
    return this.evaluate(now);
  }

  private countReports(now: number): void {
    const reports = this.v.reports.of(this.v.node, this.v.incarnation);
    if (!reports) return;
    const since = now - this.v.failureTimeoutMs;
    for (const [from, at] of reports) {
      if (at < since || this.couldNot.has(from) || this.couldNot.size >= this.wanted) continue;
      this.couldNot.add(from);
      this.v.observers[String(from)] ??= 'reported it unreachable';
    }
  }

  private evaluate(now: number): Verdict | undefined {
    if (this.result !== undefined || !this.selfFailed) return undefined;
    this.countReports(now);
    if (this.couldNot.size >= this.wanted) return this.decide('unreachable');
    if (this.settled === this.helpers.length) return this.decide(this.couldNot.size > 0 ? 'unreachable' : 'unknown');
    return undefined;
  }

  private decide(verdict: Verdict): Verdict | undefined {
    if (this.result !== undefined) return undefined;
    this.result = verdict;
    return verdict;
  }
}
