/**
 * The committed transition history of one node: bounded in memory, with a
 * snapshot of the membership just before the oldest transition kept, so a
 * late joiner can start from the snapshot plus the tail.
 *
 * Invariant (M1): transitions are appended with numbers going up by
 * exactly one; nothing is ever removed except from the front, into the
 * snapshot.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import type { HistorySnapshot, MemberInfo, NodeState, Transition } from './messages.js';
import { InvalidArgumentError } from '../../errors/index.js';

/** The states of the members a master appends to and heartbeats (it follows them; a node going down or out of the history gets neither). */
export const FOLLOWER_STATES: readonly NodeState[] = ['Up', 'ComingUp', 'ShuttingDown'];

export type { HistorySnapshot } from './messages.js';

/**
 * A history is named after its first transition (the founder's ComingUp):
 * two clusters formed apart have different names even when their numbers
 * and terms coincide, so no member of one ever applies the other's.
 */
export function historyIdOf(first: Transition): string {
  return `${first.node}.${first.incarnation}.${first.time}`;
}

/**
 * Orders two history names (`ClusterNode.historyId`): by the founder's
 * wall-clock time at founding, then founder node number, then incarnation;
 * 0 for the same history. A history founded after another one ended
 * compares higher as long as the founders' wall clocks are not further
 * apart than the gap between the two foundings (a clock set back breaks
 * this; equality never depends on clocks). A name that is not one of ours
 * is an InvalidArgumentError (`ICS_ERR_INVALID_ARGUMENT`).
 */
export function compareHistoryIds(a: string, b: string): number {
  const [x, y] = [parseHistoryId(a), parseHistoryId(b)];
  return x.time - y.time || x.node - y.node || x.incarnation - y.incarnation;
}

function parseHistoryId(id: string): { node: number; incarnation: number; time: number } {
  const m = typeof id === 'string' ? /^(\d+)\.(\d+)\.(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)$/i.exec(id) : null;
  if (!m) throw new InvalidArgumentError(`not a history id (node.incarnation.time, as ClusterNode.historyId): ${typeof id === 'string' ? JSON.stringify(id.slice(0, 100)) : typeof id}`);
  return { node: Number(m[1]), incarnation: Number(m[2]), time: Number(m[3]) };
}

export class History {
  private readonly items: Transition[] = [];
  private historyId: string | null = null;
  private snapshotNumber = 0;
  private snapshotTerm = 0;
  private snapshotMembers = new Map<number, MemberInfo>();
  /** The last `keyservice` transition of each key service compacted into the snapshot. */
  private snapshotKeyServices = new Map<string, Transition>();
  private readonly current = new Map<number, MemberInfo>();
  /**
   * `current` ordered by node number, kept in step with it: the membership
   * is read on every transition (key services, barriers), and sorting it
   * each time cost O(n log n) per transition on every node at 256 nodes.
   */
  private sorted: MemberInfo[] = [];

  constructor(private readonly limit: number) {}

  /** The name of this history (null while empty). */
  get id(): string | null {
    return this.historyId;
  }

  /** Number of the last committed transition (0 when none). */
  get last(): number {
    return this.snapshotNumber + this.items.length;
  }

  get lastTerm(): number {
    return this.items.length > 0 ? this.items[this.items.length - 1]!.term : this.snapshotTerm;
  }

  /** The first transition number still held in memory. */
  get first(): number {
    return this.snapshotNumber + 1;
  }

  member(node: number): MemberInfo | undefined {
    return this.current.get(node);
  }

  members(): MemberInfo[] {
    return this.sorted.slice();
  }

  /** `members()` without the copy, for readers that only iterate it now. */
  membersView(): readonly MemberInfo[] {
    return this.sorted;
  }

  stateOf(node: number): NodeState {
    return this.current.get(node)?.state ?? 'NeverUp';
  }

  /** Nodes whose state is in `states`. */
  nodesIn(...states: readonly NodeState[]): number[] {
    const out: number[] = [];
    for (const m of this.sorted) if (states.includes(m.state)) out.push(m.node);
    return out;
  }

  get(number: number): Transition | undefined {
    if (number <= this.snapshotNumber) return undefined;
    return this.items[number - this.snapshotNumber - 1];
  }

  /** Transitions with numbers in (after, last], as far as memory holds them. */
  since(after: number, max = Number.MAX_SAFE_INTEGER): Transition[] {
    const from = Math.max(after, this.snapshotNumber) - this.snapshotNumber;
    return this.items.slice(from, from + max);
  }

  /** Append the next transition; returns the member it changed. */
  append(t: Transition): MemberInfo {
    if (t.number !== this.last + 1) throw new Error(`transition ${t.number} does not follow ${this.last}`);
    if (t.number === 1) this.historyId = historyIdOf(t);
    this.items.push(t);
    const info = memberAfter(t, this.current.get(t.node));
    this.setCurrent(info);
    while (this.items.length > this.limit) this.compactOne();
    return info;
  }

  snapshot(): HistorySnapshot {
    const keyServices = this.keyServiceBase();
    return {
      id: this.historyId,
      number: this.snapshotNumber,
      term: this.snapshotTerm,
      members: [...this.snapshotMembers.values()],
      tail: [...this.items],
      ...(keyServices.length > 0 ? { keyServices } : {}),
    };
  }

  /**
   * The last `keyservice` transition of each key service that is no longer
   * in memory (compacted into the snapshot), by number: with the tail,
   * what the key-service view is rebuilt from.
   */
  keyServiceBase(): Transition[] {
    return [...this.snapshotKeyServices.values()].sort((a, b) => a.number - b.number);
  }

  /** Start from another node's snapshot (a late joiner). */
  install(s: HistorySnapshot): void {
    this.items.length = 0;
    this.historyId = s.id;
    this.snapshotNumber = s.number;
    this.snapshotTerm = s.term;
    this.snapshotMembers = new Map(s.members.map((m) => [m.node, m]));
    this.snapshotKeyServices = new Map((s.keyServices ?? []).flatMap((t) => (t.keyService ? [[t.keyService.name, t] as const] : [])));
    this.current.clear();
    this.sorted = [];
    for (const m of s.members) this.setCurrent(m);
    for (const t of s.tail) this.append(t);
  }

  private setCurrent(info: MemberInfo): void {
    const had = this.current.has(info.node);
    this.current.set(info.node, info);
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.sorted[mid]!.node < info.node) lo = mid + 1;
      else hi = mid;
    }
    if (had) this.sorted[lo] = info;
    else this.sorted.splice(lo, 0, info);
  }

  private compactOne(): void {
    const t = this.items.shift()!;
    // When t is the node's latest transition, the snapshot's member is the
    // current one: share the object (at 1,000 nodes each node held two
    // copies of the whole membership).
    const now = this.current.get(t.node);
    this.snapshotMembers.set(t.node, now?.since === t.number ? now : memberAfter(t, this.snapshotMembers.get(t.node)));
    if (t.keyService) this.snapshotKeyServices.set(t.keyService.name, t);
    this.snapshotNumber = t.number;
    this.snapshotTerm = t.term;
  }
}

const NO_META: MemberInfo['meta'] = Object.freeze({});
const NO_SERVICES: MemberInfo['keyServices'] = Object.freeze([]);

/** A member as transition `t` leaves it: what `t` does not say is kept from before. */
function memberAfter(t: Transition, before: MemberInfo | undefined): MemberInfo {
  return {
    node: t.node,
    state: t.to,
    incarnation: t.incarnation,
    address: t.address ?? before?.address ?? '',
    meta: t.meta ?? before?.meta ?? NO_META,
    keyServices: t.keyServices ?? before?.keyServices ?? NO_SERVICES,
    since: t.number,
  };
}
