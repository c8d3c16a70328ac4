/**
 * The key-service view: who hosts what at which epoch, as this node learnt
 * it from the history, plus what placement must remember between
 * transitions (the incarnation each host was given its key service as,
 * hand-overs under way, vacancies, when each host went down). Every node
 * keeps one and applies every committed transition to it, in order, so all
 * agree on it (docs/key-services.md, "One place, agreed by all").
 *
 * Pure: no IO, no timers, nothing asynchronous; time comes in as `now`
 * (test/architecture.test.ts). The driver (manager.ts) starts and stops
 * local activations and emits the events from what `applyKeyService`
 * returns.
 */
import type { KeyServiceInfo, MemberInfo, NodeState, Transition } from '../clms/index.js';
import { downKey, hostStateOf, type PlacementInput } from './placement.js';

type KeyServiceTransition = NonNullable<Transition['keyService']>;

/** What changed with a `keyservice` transition. */
export interface ViewChange {
  readonly info: KeyServiceInfo;
  /** The view of that key service before. */
  readonly before: KeyServiceInfo | undefined;
}

/** What placement needs besides the view (PlacementInput without what the view holds). */
export type PlacementContext = Pick<PlacementInput, 'now' | 'members' | 'member' | 'fenceWaitMs' | 'failureTimeoutMs' | 'moveEarly'>;

export class KeyServiceView {
  /** The clusterwide view, from the history. */
  private readonly view = new Map<string, KeyServiceInfo>();
  /** The incarnation of each key service's recorded host (moves are asked by that incarnation only). */
  private readonly hostIncarnation = new Map<string, number>();
  /**
   * A hand-over whose new host is not ready yet: its source, and when this
   * node applied the assignment (see keyservice/placement.ts).
   */
  private readonly handoverSource = new Map<string, { node: number; at: number }>();
  /** A key service made vacant or halted while its host (node, incarnation) was leaving or going down: it may still act for a while. */
  private readonly vacatedFrom = new Map<string, { node: number; incarnation: number | undefined }>();
  /** `node:incarnation` → when this node learnt it went down (GoingDown or ShuttingDown): the fence wait counts from there. */
  private readonly downSince = new Map<string, number>();
  /** Highest epoch seen per key service in former histories (see reset). */
  private readonly epochFloor = new Map<string, number>();
  private formedState = false;
  /** The members list `formedState` was last computed from in full (undefined: compute it again). */
  private formedFrom: readonly MemberInfo[] | undefined;
  /** The nodes that announced key services (any state) when `formedFrom` was scanned. */
  private announcers = new Set<number>();

  /**
   * Forget the clusterwide view (a joiner rebuilds it from the history it
   * installs; a founder starts a new history). The epochs it knew stay as a
   * floor: a key service this node places in a new history starts above
   * them, so fencing tokens never go back while this process lives.
   */
  reset(): void {
    for (const v of this.view.values()) this.epochFloor.set(v.name, Math.max(this.epochFloor.get(v.name) ?? 0, v.epoch));
    this.view.clear();
    this.hostIncarnation.clear();
    this.handoverSource.clear();
    this.vacatedFrom.clear();
    this.formedFrom = undefined;
  }

  /** The epoch `name` is at: from the history, else the floor from former histories. */
  epochOf(name: string): number {
    return this.view.get(name)?.epoch ?? this.epochFloor.get(name) ?? 0;
  }

  info(name: string): KeyServiceInfo | undefined {
    return this.view.get(name);
  }

  all(): KeyServiceInfo[] {
    return [...this.view.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The first halted critical key service and why, if any. */
  halted(): { keyService: string; reason: string } | undefined {
    for (const v of this.all()) if (v.halted) return { keyService: v.name, reason: v.reason ?? 'no eligible node left' };
    return undefined;
  }

  get formed(): boolean {
    return this.formedState;
  }

  /** The incarnation `name`'s recorded host was given it as. */
  hostIncarnationOf(name: string): number | undefined {
    return this.hostIncarnation.get(name);
  }

  /** The view of `name` has not changed since transition `since` (no double placement). */
  unchangedSince(name: string, since: number | undefined): boolean {
    return this.view.get(name)?.since === since;
  }

  /** A committed `keyservice` transition; `critical`: whether a member or this node registers `name` as critical. */
  applyKeyService(t: Transition, ks: KeyServiceTransition, now: number, critical: boolean): ViewChange {
    const hosted = ks.phase === 'assigned' || ks.phase === 'ready';
    const info: KeyServiceInfo = {
      name: ks.name,
      host: hosted ? t.node : undefined,
      epoch: ks.epoch,
      ready: ks.phase === 'ready',
      critical,
      halted: ks.phase === 'halted',
      since: t.number,
      ...(ks.phase === 'halted' || ks.phase === 'vacant' ? { reason: t.cause } : {}),
    };
    const before = this.view.get(ks.name);
    // Ready: the new host collected the hand-over (or waited its source out).
    if (ks.phase === 'ready') this.handoverSource.delete(ks.name);
    else if (ks.phase === 'assigned' && ks.handoverFrom !== undefined) this.handoverSource.set(ks.name, { node: ks.handoverFrom, at: now });
    if ((ks.phase === 'vacant' || ks.phase === 'halted') && before?.host !== undefined) this.vacatedFrom.set(ks.name, { node: before.host, incarnation: this.hostIncarnation.get(ks.name) });
    else if (hosted) this.vacatedFrom.delete(ks.name);
    this.view.set(ks.name, info);
    if (hosted) this.hostIncarnation.set(ks.name, t.incarnation);
    else this.hostIncarnation.delete(ks.name);
    return { info, before };
  }

  /** A committed `state` transition: when a node went down, and critical key services a joiner announced. */
  applyState(t: Transition, now: number): void {
    if (t.kind !== 'state') return;
    if (t.to === 'GoingDown' || t.to === 'ShuttingDown') {
      const key = downKey(t.node, t.incarnation);
      if (!this.downSince.has(key)) this.downSince.set(key, now);
    }
    if (t.to === 'ComingUp' || t.to === 'Up') {
      // New critical key services may have been announced.
      for (const h of t.keyServices ?? []) {
        const v = this.view.get(h.name);
        if (v && h.critical && !v.critical) this.view.set(h.name, { ...v, critical: true });
      }
    }
  }

  /**
   * Formed: every critical key service (announced by a live member, or
   * known from the history) has a ready host that is Up. True when that
   * changed (read `formed` for the new value).
   */
  updateFormed(members: readonly MemberInfo[], member: (node: number) => MemberInfo | undefined, t?: Transition): boolean {
    if (t && members === this.formedFrom && !this.mayChangeFormed(t, member)) return false;
    this.formedFrom = members;
    const critical = new Set<string>();
    this.announcers.clear();
    for (const m of members) {
      if (m.keyServices.length > 0) this.announcers.add(m.node);
      if (m.state !== 'Up' && m.state !== 'ComingUp') continue;
      for (const h of m.keyServices) if (h.critical) critical.add(h.name);
    }
    for (const v of this.view.values()) if (v.critical) critical.add(v.name);
    let formed = true;
    for (const name of critical) {
      const v = this.view.get(name);
      if (!v?.ready || v.host === undefined || this.hostState(v.name, v.host, member) !== 'Up') formed = false;
    }
    if (formed === this.formedState) return false;
    this.formedState = formed;
    return true;
  }

  /**
   * Whether applying `t` may have changed `formed`: it announces key
   * services, changes the view, is about a member that announces some, or
   * about a host. Other transitions (most joins and Ups of a large cluster)
   * leave it as it is, so `updateFormed` skips its scan of every member,
   * which made a formation cubic in the node count. A join announces its
   * key services, most often none (`[]`): that changes nothing unless an
   * earlier incarnation of the node announced some. Exact only while the
   * members list is the one last scanned (a snapshot installed makes a new
   * one) and every transition applied since came through here.
   */
  private mayChangeFormed(t: Transition, member: (node: number) => MemberInfo | undefined): boolean {
    if (t.kind === 'keyservice' || (t.keyServices?.length ?? 0) > 0 || this.announcers.has(t.node) || (member(t.node)?.keyServices.length ?? 0) > 0) return true;
    for (const v of this.view.values()) if (v.host === t.node) return true;
    return false;
  }

  /** The state of the incarnation `name` was placed on (keyservice/placement.ts). */
  hostState(name: string, host: number, member: (node: number) => MemberInfo | undefined): NodeState | undefined {
    return hostStateOf(name, host, member, this.hostIncarnation);
  }

  /**
   * Time left of `waitMs` at `now`, counted from when this node learnt
   * (node, incarnation) went down (GoingDown or ShuttingDown). `longest`:
   * the longest wait anyone counts, past which an entry is of no use.
   */
  downWaitLeft(node: number, incarnation: number | undefined, waitMs: number, now: number, longest: number): number {
    const key = downKey(node, incarnation);
    let since = this.downSince.get(key);
    // Gone before we saw it go (a snapshot we installed): count from now.
    if (since === undefined) this.downSince.set(key, (since = now));
    // Bounded: entries whose every wait is long over are of no use.
    if (this.downSince.size > 4096) for (const [k, at] of this.downSince) if (now - at > longest) this.downSince.delete(k);
    return since + waitMs - now;
  }

  /** Placement's input: this view and what the caller adds. */
  placementInput(ctx: PlacementContext): PlacementInput {
    return { ...ctx, view: this.view, hostIncarnation: this.hostIncarnation, handoverSource: this.handoverSource, vacatedFrom: this.vacatedFrom, downSince: this.downSince };
  }

  /** A hand-over's wait is over (placement's `forget-handover`). */
  forgetHandover(name: string): void {
    this.handoverSource.delete(name);
  }

  /** A vacancy's wait is over (placement's `forget-vacancy`). */
  forgetVacancy(name: string): void {
    this.vacatedFrom.delete(name);
  }
}
