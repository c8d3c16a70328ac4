/**
 * Barriers and owed reports (docs/membership.md, C1).
 *
 * A barrier is the master's list of members that must still report before
 * a node moves on: every Up or ComingUp member runs its nodeup callbacks for
 * a ComingUp node (then it is Up), and its nodedown callbacks for a node
 * going down or leaving (then it is Down, and may rejoin). A barrier opens
 * when its list is empty; a member that goes down meanwhile reports nothing
 * more and is dropped from every list.
 *
 * A member owes the master each report until the master acknowledged it, or
 * the history shows its effect; a new master (or term) gets every report
 * still owed, since it rebuilds its barriers from the history.
 *
 * Pure: the driver proposes the transition of each barrier that opens and
 * sends the reports; these classes only keep the books. No IO, no timers,
 * nothing asynchronous (test/architecture.test.ts).
 */
import type { MemberInfo, Report } from './messages.js';

export type BarrierKind = 'nodeup' | 'cleanup';

/** Who must still report before `node` (that incarnation) moves on. */
export interface Barrier {
  readonly kind: BarrierKind;
  readonly node: number;
  readonly incarnation: number;
  readonly waiting: Set<number>;
}

/** The master's open barriers, one per node and kind. */
export class Barriers {
  private readonly open: Record<BarrierKind, Map<number, Barrier>> = { nodeup: new Map(), cleanup: new Map() };

  /** A barrier for (node, incarnation): every node in `waiting` must report. Replaces an older one for the node. */
  start(kind: BarrierKind, node: number, incarnation: number, waiting: Iterable<number>): void {
    this.open[kind].set(node, { kind, node, incarnation, waiting: new Set(waiting) });
  }

  /** No barriers (a master that steps down, a new incarnation). */
  clear(): void {
    this.open.nodeup.clear();
    this.open.cleanup.clear();
  }

  /**
   * `from` reported for the barrier of (node, incarnation): the barrier, now
   * closed and gone, when that was the last report it waited for. Only that
   * barrier can open now (members that went down were dropped when their
   * transition was applied, see `prune`), so no scan per report (a report
   * per member per transition would make that quadratic).
   */
  report(kind: BarrierKind, node: number, incarnation: number, from: number): Barrier | undefined {
    const b = this.open[kind].get(node);
    if (!b || b.incarnation !== incarnation) return undefined;
    b.waiting.delete(from);
    return this.openIfDone(b);
  }

  /**
   * Drop from every barrier the nodes no longer `alive` (Up or ComingUp),
   * and return the barriers that opened, nodeup ones first, each in the
   * order it was started. `dropAllCleanup` is the test-only canary that
   * skips the cleanup barrier.
   */
  prune(alive: ReadonlySet<number>, dropAllCleanup = false): Barrier[] {
    const opened: Barrier[] = [];
    for (const kind of ['nodeup', 'cleanup'] as const) {
      for (const b of this.open[kind].values()) {
        for (const w of b.waiting) if (!alive.has(w) || (kind === 'cleanup' && dropAllCleanup)) b.waiting.delete(w);
        const o = this.openIfDone(b);
        if (o) opened.push(o);
      }
    }
    return opened;
  }

  /**
   * A new master rebuilds every barrier from the history: a nodeup barrier
   * for each ComingUp member and a cleanup barrier for each member going
   * down or leaving, waiting for every `alive` member (Up or ComingUp) but
   * the node itself. What opens then comes from `report` and `prune`.
   */
  rebuild(members: readonly MemberInfo[], alive: readonly number[]): void {
    for (const m of members) {
      if (m.state === 'ComingUp') this.start('nodeup', m.node, m.incarnation, alive);
      if (m.state === 'GoingDown' || m.state === 'ShuttingDown') this.start('cleanup', m.node, m.incarnation, alive.filter((n) => n !== m.node));
    }
  }

  private openIfDone(b: Barrier): Barrier | undefined {
    if (b.waiting.size > 0) return undefined;
    this.open[b.kind].delete(b.node);
    return b;
  }
}

/** The key of an owed report: a later report of the same thing replaces it. */
export function reportKey(r: Report): string {
  return `${r.kind}:${r.node}:${r.incarnation}${r.keyService ? `:${r.keyService}:${r.epoch}` : ''}`;
}

/** A report this member owes the master. */
export interface Owed {
  readonly report: Report;
  /**
   * The `master:term` a send is under way to or was acknowledged by: the
   * tick does not send it there again, so a member's resends per tick are
   * bounded by its reports not yet acknowledged, not by every member it
   * ever saw come up (that made formation quadratic).
   */
  sentTo?: string | undefined;
}

/** Barrier and ready reports: sent again until the history shows their effect (`due`). */
function resent(r: Report): boolean {
  return r.kind === 'nodeup-done' || r.kind === 'cleanup-done' || r.kind === 'keyservice-ready';
}

/** An owed report's place in the order: a report that replaces another takes it. */
interface Slot {
  o: Owed;
}

/** Whether `a` and `b` report the same thing (`reportKey` equal): a later one replaces an earlier. */
function sameThing(a: Report, b: Report): boolean {
  return a.kind === b.kind && a.node === b.node && a.incarnation === b.incarnation && a.keyService === b.keyService && (a.keyService === undefined || a.epoch === b.epoch);
}

/**
 * The reports a member owes the master, one per thing reported (see
 * `reportKey`), oldest first. Found by node, without a string key per
 * lookup: a formation settles a report for every member about every
 * joiner, and building and hashing those keys was a twentieth of its CPU.
 */
export class OwedReports {
  /** A slot per thing reported, in the order first owed: a report that replaces another takes its slot. */
  private readonly owed = new Set<Slot>();
  /** The slots about each node: a handful at most (its incarnation's barriers, its key services' ready reports). */
  private readonly byNode = new Map<number, Slot[]>();
  /**
   * Of the entries `due` considers (`resent`): how many there are, and how
   * many are marked sent to each `master:term`. When the two are equal
   * `due` has nothing to yield and skips its walk over every entry (a
   * member owes hundreds in a join storm, and the tick asks every interval).
   */
  private resendable = 0;
  private readonly sentCount = new Map<string, number>();
  /** Entries per kind: `reports(kind)` of a kind owed nowhere walks nothing. */
  private readonly kinds = new Map<Report['kind'], number>();

  /** `r` is owed from now on (replacing an older report of the same thing). */
  owe(r: Report): void {
    const o: Owed = { report: r };
    const slot = this.find(r);
    if (slot) {
      this.drop(slot.o);
      slot.o = o;
    } else {
      const fresh = { o };
      this.owed.add(fresh);
      const list = this.byNode.get(r.node);
      if (list) list.push(fresh);
      else this.byNode.set(r.node, [fresh]);
    }
    this.kinds.set(r.kind, (this.kinds.get(r.kind) ?? 0) + 1);
    if (resent(r)) this.resendable++;
  }

  /** The history shows the effect of (kind, node, incarnation): nothing more to report. */
  settle(kind: 'nodeup-done' | 'cleanup-done', node: number, incarnation: number): void {
    const list = this.byNode.get(node);
    if (list === undefined) return;
    for (const slot of list) {
      const r = slot.o.report;
      if (r.kind === kind && r.incarnation === incarnation && r.keyService === undefined) return this.remove(slot);
    }
  }

  /** Whether `r` itself is still what is owed (not settled, not replaced). */
  isOwed(r: Report): boolean {
    return this.find(r)?.o.report === r;
  }

  /** A send of `r` to `to` (`master:term`) begins: the entry of `r`, marked, if `r` itself is still what is owed. */
  sending(r: Report, to: string): Owed | undefined {
    const o = this.find(r)?.o;
    if (o?.report === r) this.mark(o, to);
    return o;
  }

  /**
   * The master of `to` answered `r` (`ok`) or not. Requests (suspect, leave,
   * down) are owed no more once acknowledged; barrier and ready reports stay
   * until the history shows their effect (the master that acknowledged one
   * may lose the commit with its mastership). Not acknowledged, a send is
   * made again on the next tick; a ready report, acknowledged or not.
   */
  answered(r: Report, o: Owed | undefined, to: string, ok: boolean): void {
    if (ok && (r.kind === 'suspect' || r.kind === 'leave' || r.kind === 'down')) this.remove(this.find(r));
    // A ready report goes again every tick, acknowledged or not, until the
    // history shows it ready: a new master may get it before it applied the
    // assignment (its key-service view is still at the epoch before) and
    // then proposes nothing, and the same master and term would never be
    // asked again (simulator seed 265 at 3 nodes: ks.a never ready). The
    // master proposes one ready transition at a time per epoch and host.
    if ((!ok || r.kind === 'keyservice-ready') && o?.sentTo === to) this.mark(o, undefined);
  }

  /** `r`, marked sent to `to` without an answer to tell (it went in an append's answer), is due again. */
  resend(r: Report, to: string): void {
    const o = this.find(r)?.o;
    if (o?.report === r && o.sentTo === to) this.mark(o, undefined);
  }

  /**
   * Barrier and ready reports not yet sent to or acknowledged by `to`
   * (`master:term`), oldest first, at most `max`: the tick sends these. The
   * bound keeps a member that owes hundreds (a join storm) from sending
   * them all again every tick while the master is too busy to answer, which
   * only kept it busy.
   */
  *due(to: string, max = Number.POSITIVE_INFINITY): Generator<Report> {
    if (this.resendable === (this.sentCount.get(to) ?? 0)) return;
    let n = 0;
    for (const { o } of this.owed) {
      if (n >= max) return;
      if (resent(o.report) && o.sentTo !== to) {
        n++;
        yield o.report;
      }
    }
  }

  /** Every report owed (of `kind` only, when given), oldest first. */
  *reports(kind?: Report['kind']): Generator<Report> {
    if (kind !== undefined && !this.kinds.has(kind)) return;
    for (const { o } of this.owed) if (kind === undefined || o.report.kind === kind) yield o.report;
  }

  /** Forget `r` (a ready report whose epoch is over or is ready in the history). */
  forget(r: Report): void {
    this.remove(this.find(r));
  }

  clear(): void {
    this.owed.clear();
    this.byNode.clear();
    this.kinds.clear();
    this.resendable = 0;
    this.sentCount.clear();
  }

  /** The slot of the thing `r` reports. */
  private find(r: Report): Slot | undefined {
    const list = this.byNode.get(r.node);
    if (list !== undefined) for (const slot of list) if (sameThing(slot.o.report, r)) return slot;
    return undefined;
  }

  /** `slot` leaves the books (settled, answered or forgotten). */
  private remove(slot: Slot | undefined): void {
    if (!slot || !this.owed.delete(slot)) return;
    const node = slot.o.report.node;
    const list = this.byNode.get(node)!;
    if (list.length === 1) this.byNode.delete(node);
    else list.splice(list.indexOf(slot), 1);
    this.drop(slot.o);
  }

  /** `o` leaves the books (removed or replaced): its share of the counts goes. */
  private drop(o: Owed): void {
    const left = this.kinds.get(o.report.kind)! - 1;
    if (left === 0) this.kinds.delete(o.report.kind);
    else this.kinds.set(o.report.kind, left);
    if (!resent(o.report)) return;
    this.resendable--;
    this.mark(o, undefined);
  }

  private mark(o: Owed, to: string | undefined): void {
    if (o.sentTo === to) return;
    if (resent(o.report)) {
      if (o.sentTo !== undefined) {
        const left = this.sentCount.get(o.sentTo)! - 1;
        if (left === 0) this.sentCount.delete(o.sentTo);
        else this.sentCount.set(o.sentTo, left);
      }
      if (to !== undefined) this.sentCount.set(to, (this.sentCount.get(to) ?? 0) + 1);
    }
    o.sentTo = to;
  }
}
