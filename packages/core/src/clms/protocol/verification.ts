/**
 * Verification of a suspicion (docs/architecture.md, "What happens when a
 * node goes down", step 2), as a tally. Before a master declares a node
 * down it asks the node itself (`alive`) and, at the same time, up to five
 * other Up members to reach it (`probe`); the driver makes those calls and
 * feeds each answer in, together with the `suspect` reports members send on
 * their own (a killed process closes its links to everyone: their reports
 * may arrive before the probes).
 *
 * The rule (a node's own trouble is never evidence against another: the
 * master's own failed call is not enough):
 * - reachable as soon as anyone reaches it (the node answers, or a helper
 *   reached it);
 * - unreachable once the master could not reach it and either three of the
 *   helpers (all of them when fewer) said so, by probe or by a report of
 *   their own made within the failure timeout, or every probe came back
 *   without reaching it. Three of five, not all: one helper the scheduler
 *   or the network holds back does not hold the decision back.
 *
 * Each input returns the outcome when that input decided it (true:
 * reachable, false: unreachable), once; undefined otherwise. Pure: no IO,
 * no timers, nothing asynchronous (test/architecture.test.ts).
 */

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
  /** The Up members, by node number: the first five but the node and the master help. */
  up: readonly number[];
  /** What each observer said (written as answers come in; it goes into the decision record). */
  observers: Record<string, string>;
  reports: UnreachableReports;
  failureTimeoutMs: number;
}

/** One verification of (node, incarnation). */
export class Verification {
  /** The members asked to reach the node. */
  readonly helpers: readonly number[];
  private readonly wanted: number;
  private readonly couldNot = new Set<number>();
  private selfFailed = false;
  private settled = 0;
  private result: boolean | undefined;

  constructor(private readonly v: VerificationStart) {
    this.helpers = v.up.filter((n) => n !== v.node && n !== v.self).slice(0, 5);
    this.wanted = Math.min(3, this.helpers.length);
  }

  /** The outcome, once decided. */
  get outcome(): boolean | undefined {
    return this.result;
  }

  /** The node answered this master's `alive`. */
  aliveAnswered(): boolean | undefined {
    this.v.observers[String(this.v.self)] = 'answered';
    return this.decide(true);
  }

  /** This master's `alive` failed (`code`: the error's code, if it had one). */
  aliveFailed(code: string | undefined, now: number): boolean | undefined {
    this.v.observers[String(this.v.self)] = code ?? 'no answer';
    this.selfFailed = true;
    return this.evaluate(now);
  }

  /** Helper `h` answered its probe. */
  probeAnswered(h: number, reachable: boolean, now: number): boolean | undefined {
    this.v.observers[String(h)] = reachable ? 'reached it' : 'could not reach it';
    this.settled++;
    if (reachable) return this.decide(true);
    this.couldNot.add(h);
    return this.evaluate(now);
  }

  /** Helper `h` did not answer its probe. */
  probeFailed(h: number, now: number): boolean | undefined {
    this.v.observers[String(h)] ??= 'did not answer';
    this.settled++;
    return this.evaluate(now);
  }

  /** A member reported the node unreachable (see `UnreachableReports`). */
  reported(now: number): boolean | undefined {
    return this.evaluate(now);
  }

  private evaluate(now: number): boolean | undefined {
    if (this.result !== undefined || !this.selfFailed) return undefined;
    const reports = this.v.reports.of(this.v.node, this.v.incarnation);
    if (reports) {
      const since = now - this.v.failureTimeoutMs;
      for (const [from, at] of reports) {
        if (at < since || this.couldNot.has(from) || this.couldNot.size >= this.wanted) continue;
        this.couldNot.add(from);
        this.v.observers[String(from)] ??= 'reported it unreachable';
      }
    }
    if (this.couldNot.size >= this.wanted || this.settled === this.helpers.length) return this.decide(false);
    return undefined;
  }

  private decide(reachable: boolean): boolean | undefined {
    if (this.result !== undefined) return undefined;
    this.result = reachable;
    return reachable;
  }
}
