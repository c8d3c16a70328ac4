/**
 * Deadlines of many entries on few clock timers (the call table's: a timer
 * per call was an object, a closure and a timer-list insert and removal on
 * every call).
 *
 * Entries with the same timeout length share one list, in the order they
 * were added. The clock does not go back, so deadlines along a list never
 * decrease, and the list needs one timer, for its head. An entry that
 * leaves is unlinked at once and the timer is left alone: when it fires
 * for an entry that has left, it is set again for the new head. A list
 * that empties is dropped with its timer, so there are never more lists
 * (and timers) than entries. Each entry expires when its own deadline is
 * reached on the clock, as with a timer of its own; entries whose
 * deadlines fall at the same time expire in the order they were added.
 */
import type { Clock, TimerHandle } from '../clock/index.js';

/** What an entry carries for its list (fields of the entry itself: no object per entry). */
export interface DeadlineEntry {
  /** Clock time it expires at. */
  deadline: number;
  dlPrev: DeadlineEntry | undefined;
  dlNext: DeadlineEntry | undefined;
  /** The list it is in; undefined when in none. */
  dlList: DeadlineList | undefined;
}

/** Entries with one timeout length, oldest (earliest deadline) first. */
export class DeadlineList {
  head: DeadlineEntry | undefined = undefined;
  tail: DeadlineEntry | undefined = undefined;
  timer: TimerHandle | undefined = undefined;
  /** The deadline the timer was set for. */
  armedFor = 0;

  constructor(readonly timeoutMs: number) {}
}

export class Deadlines<E extends DeadlineEntry> {
  private readonly lists = new Map<number, DeadlineList>();

  constructor(
    private readonly clock: Clock,
    /** Called for an entry whose deadline passed; it is out of its list by then. */
    private readonly expired: (entry: E) => void,
  ) {}

  /** Lists (and timers) in use, for tests of the bound. */
  get listCount(): number {
    return this.lists.size;
  }

  /** Expire `entry` `timeoutMs` after `now` (the clock's time when the caller read it). */
  add(entry: E, now: number, timeoutMs: number): void {
    let list = this.lists.get(timeoutMs);
    if (list === undefined) {
      list = new DeadlineList(timeoutMs);
      this.lists.set(timeoutMs, list);
    }
    entry.deadline = now + timeoutMs;
    entry.dlList = list;
    entry.dlNext = undefined;
    entry.dlPrev = list.tail;
    if (list.tail) list.tail.dlNext = entry;
    else list.head = entry;
    list.tail = entry;
    if (list.timer === undefined) this.arm(list, now);
  }

  /** Take `entry` out of its list (it settled); nothing when it is in none. */
  remove(entry: E): void {
    const list = entry.dlList;
    if (list === undefined) return;
    this.unlink(list, entry);
    if (list.head === undefined) {
      list.timer?.cancel();
      list.timer = undefined;
      this.lists.delete(list.timeoutMs);
    }
  }

  private unlink(list: DeadlineList, entry: DeadlineEntry): void {
    const { dlPrev: prev, dlNext: next } = entry;
    if (prev) prev.dlNext = next;
    else list.head = next;
    if (next) next.dlPrev = prev;
    else list.tail = prev;
    entry.dlPrev = entry.dlNext = entry.dlList = undefined;
  }

  private arm(list: DeadlineList, now: number): void {
    const at = list.head!.deadline;
    list.armedFor = at;
    list.timer = this.clock.setTimeout(() => this.fire(list), at - now);
  }

  /**
   * The list's timer fired: expire every entry due by the time it was set
   * for (or by now, if later: a late real timer), then set it for the next.
   */
  private fire(list: DeadlineList): void {
    list.timer = undefined;
    const due = Math.max(list.armedFor, this.clock.now());
    for (let e = list.head; e !== undefined && e.deadline <= due; e = list.head) {
      this.unlink(list, e);
      this.expired(e as E);
    }
    if (list.head === undefined) {
      // Unless an expiry handler started a new list of this length meanwhile.
      if (this.lists.get(list.timeoutMs) === list) this.lists.delete(list.timeoutMs);
    } else if (list.timer === undefined) this.arm(list, this.clock.now());
  }
}
