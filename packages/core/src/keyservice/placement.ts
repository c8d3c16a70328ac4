/**
 * Key-service placement (docs/key-services.md): which key services need a
 * new host, and which node, as a pure function of the view (where each key
 * service lives, from the history), the members and the time. The master
 * calls it after every transition and carries out what it returns, in
 * order: propose an assignment or a vacancy, place again after a wait, and
 * update its books.
 *
 * The rules, for a key service whose host is not Up or ComingUp:
 * - a hand-over that never completed (its new host went before it was
 *   ready): its source may still act, if it was cut off before it learnt of
 *   the newer epoch; nothing is placed until a failure timeout after the
 *   assignment (K1);
 * - vacated while its host was leaving or going down: that host may still
 *   act at its epoch (a leaver until it closes, a cut-off host until its
 *   lease ends); a new host only a failure timeout after its GoingDown or
 *   ShuttingDown (K1);
 * - host GoingDown: wait for its Down, that is fencing and cleanup (K4);
 * - host ShuttingDown (a clean leave): hand over to the next eligible node;
 * - host gone otherwise (Down, declared down, cut off one way): fail over
 *   once the fence wait since its down has passed (K1, K4);
 * - the next host is the Up node that announced the key service earliest in
 *   its own list, then the lowest number; with none, a critical key service
 *   halts and another goes vacant.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import type { KeyServiceInfo, MemberInfo, NodeState } from '../clms/index.js';

/** What placement reads. */
export interface PlacementInput {
  readonly now: number;
  /** The members, by node number. */
  readonly members: readonly MemberInfo[];
  /** One member of the same membership. */
  member(node: number): MemberInfo | undefined;
  /** Where each key service lives, from the history. */
  readonly view: ReadonlyMap<string, KeyServiceInfo>;
  /** The incarnation each key service's host was given it as. */
  readonly hostIncarnation: ReadonlyMap<string, number>;
  /** A hand-over whose new host is not ready yet: its source, and when the assignment was applied here. */
  readonly handoverSource: ReadonlyMap<string, { node: number; at: number }>;
  /** A key service made vacant or halted while its host (node, incarnation) was leaving or going down. */
  readonly vacatedFrom: ReadonlyMap<string, { node: number; incarnation: number | undefined }>;
  /** `node:incarnation` → when this node learnt it went down (GoingDown or ShuttingDown). */
  readonly downSince: ReadonlyMap<string, number>;
  /** How long after a host's down its key services may fail over. */
  readonly fenceWaitMs: number;
  readonly failureTimeoutMs: number;
  /** The test-only canary `moveKeyServiceEarly`: no wait at all (K4 must catch it). */
  readonly moveEarly: boolean;
}

/** What the master is to do, in order. */
export type PlacementStep =
  /** Propose `node` as the next host of `name` (unless the view of `name` changed since `since`). */
  | { kind: 'assign'; name: string; node: number; since: number | undefined; previousHost: number | undefined; handoverFrom: number | undefined }
  /** Propose that `name` has no host: halted when critical, else vacant. */
  | { kind: 'vacate'; name: string; critical: boolean; since: number | undefined }
  /** Place again after `ms`. */
  | { kind: 'wait'; ms: number }
  /** A wait is over: forget the hand-over source, or the host a vacancy came from. */
  | { kind: 'forget-handover'; name: string }
  | { kind: 'forget-vacancy'; name: string }
  /** (node, incarnation) went down before this node saw it go (a snapshot it installed): count its waits from now. */
  | { kind: 'down-seen'; node: number; incarnation: number | undefined };

export const downKey = (node: number, incarnation: number | undefined): string => `${node}:${incarnation}`;

/** Every key service without a live host, placed, waited for or left alone: the steps, in order. */
export function placement(input: PlacementInput): PlacementStep[] {
  const steps: PlacementStep[] = [];
  // Downs first seen in this pass (the same host may have hosted several key services).
  const seen = new Map<string, number>();
  const downWaitLeft = (node: number, incarnation: number | undefined, waitMs: number): number => {
    const key = downKey(node, incarnation);
    let since = input.downSince.get(key) ?? seen.get(key);
    if (since === undefined) {
      seen.set(key, (since = input.now));
      steps.push({ kind: 'down-seen', node, incarnation });
    }
    return since + waitMs - input.now;
  };
  const waitFor = (ms: number): true => {
    steps.push({ kind: 'wait', ms });
    return true;
  };
  const afterHandover = (name: string): boolean => {
    const src = input.handoverSource.get(name);
    if (!src || input.moveEarly) return false;
    const wait = src.at + input.failureTimeoutMs - input.now;
    if (wait > 0) return waitFor(wait);
    steps.push({ kind: 'forget-handover', name });
    return false;
  };
  const afterVacancy = (name: string): boolean => {
    const from = input.vacatedFrom.get(name);
    if (!from || input.moveEarly) return false;
    const m = input.members.find((x) => x.node === from.node);
    const state = m && (from.incarnation === undefined || m.incarnation === from.incarnation) ? m.state : 'Down';
    if (state !== 'Up' && state !== 'ComingUp') {
      const wait = downWaitLeft(from.node, from.incarnation, input.failureTimeoutMs);
      if (wait > 0) return waitFor(wait);
    }
    steps.push({ kind: 'forget-vacancy', name });
    return false;
  };
  const placeOne = (name: string, critical: boolean): void => {
    const v = input.view.get(name);
    const hostState = v?.host !== undefined ? hostStateOf(name, v.host, input.member, input.hostIncarnation) : undefined;
    if (v?.host !== undefined && (hostState === 'Up' || hostState === 'ComingUp')) return;
    if (afterHandover(name)) return;
    if (v !== undefined && v.host === undefined && afterVacancy(name)) return;
    if (v?.host !== undefined && hostState === 'GoingDown' && !input.moveEarly) return;
    const leaving = v?.host !== undefined && hostState === 'ShuttingDown' ? v.host : undefined;
    // A failover: the old host may still be alive (declared down by the API, cut off one way) until its lease has run out.
    if (v?.host !== undefined && leaving === undefined && !input.moveEarly) {
      const wait = downWaitLeft(v.host, input.hostIncarnation.get(name), input.fenceWaitMs);
      if (wait > 0) return void waitFor(wait);
    }
    const node = eligibleHost(name, input.members);
    if (node !== undefined) {
      steps.push({ kind: 'assign', name, node, since: v?.since, previousHost: v?.host, handoverFrom: leaving });
    } else if (!v?.halted && (critical || !v || v.host !== undefined)) {
      steps.push({ kind: 'vacate', name, critical, since: v?.since });
    }
  };
  // Every key service an Up member announced (critical when any announced it so), then those only the history knows.
  const names = new Map<string, boolean>();
  for (const m of input.members) {
    if (m.state !== 'Up') continue;
    for (const h of m.keyServices) names.set(h.name, (names.get(h.name) ?? false) || h.critical);
  }
  for (const v of input.view.values()) if (!names.has(v.name)) names.set(v.name, v.critical);
  for (const [name, critical] of names) placeOne(name, critical);
  return steps;
}

/** The Up node (but `except`) that announced `name` earliest in its own list, then the lowest number. */
export function eligibleHost(name: string, members: readonly MemberInfo[], except?: number): number | undefined {
  let best: { node: number; rank: number } | undefined;
  for (const m of members) {
    if (m.state !== 'Up' || m.node === except) continue;
    const rank = m.keyServices.findIndex((h) => h.name === name);
    if (rank < 0) continue;
    if (!best || rank < best.rank || (rank === best.rank && m.node < best.node)) best = { node: m.node, rank };
  }
  return best?.node;
}

/** The state of the incarnation `name` was placed on: a newer incarnation of that node is not it (that one is Down). */
export function hostStateOf(name: string, host: number, member: (node: number) => MemberInfo | undefined, hostIncarnation: ReadonlyMap<string, number>): NodeState | undefined {
  const m = member(host);
  if (!m) return undefined;
  const inc = hostIncarnation.get(name);
  return inc === undefined || m.incarnation === inc ? m.state : 'Down';
}
