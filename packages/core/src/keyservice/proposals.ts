/**
 * The master's decisions (docs/key-services.md), as pure functions: the
 * `keyservice` and `meta` transitions it proposes to carry out placement
 * (placement.ts), a move a host asks for, a withdrawal, a ready report.
 * Each is built from the membership as it is when the proposal is made
 * (the driver, master.ts, calls them inside the proposal's build), and is
 * undefined when the world changed so that it no longer holds: no double
 * placement, no failover before a Down (K4).
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import type { KeyServiceInfo, MemberInfo, NodeState, Transition } from '../clms/index.js';
import type { MoveRequest } from './messages.js';
import { eligibleHost, type PlacementStep } from './placement.js';

/** A transition as the master proposes it (the history numbers and stamps it). */
export type Change = Omit<Transition, 'number' | 'term' | 'time'>;

/** No eligible node for `name` at `epoch`: halted (critical) or vacant, as a change by the master itself (`self`: its own record). */
export function vacancyChange(me: number, self: MemberInfo | undefined, name: string, critical: boolean, epoch: number): Change {
  return {
    kind: 'keyservice',
    node: me,
    incarnation: self?.incarnation ?? 0,
    // The master's own state, whatever it is (it may be leaving): a keyservice transition changes no state.
    from: self?.state ?? 'Up',
    to: self?.state ?? 'Up',
    cause: critical ? `no eligible node left for critical key service ${name}` : `no eligible node for ${name}`,
    keyService: { name, epoch, phase: critical ? 'halted' : 'vacant' },
  };
}

/**
 * `node` (its record: `target`) takes `name` over at the epoch after
 * `epoch`: a hand-over from a leaving host, a failover, or a first
 * placement. Undefined when the target is not Up any more, or a leaving
 * host (its state as placed: `leavingState`) failed meanwhile: it is failed
 * over after its Down and the fence wait instead (K4).
 */
export function hostChange(
  a: { name: string; node: number; previousHost: number | undefined; handoverFrom: number | undefined },
  target: MemberInfo | undefined,
  leavingState: NodeState | undefined,
  epoch: number,
): Change | undefined {
  const leaving = a.handoverFrom;
  if (target?.state !== 'Up') return undefined;
  if (leaving !== undefined && leavingState !== 'ShuttingDown') return undefined;
  return {
    kind: 'keyservice',
    node: a.node,
    incarnation: target.incarnation,
    from: target.state,
    to: target.state,
    cause: leaving !== undefined ? `hand-over from node ${leaving}` : a.previousHost !== undefined ? `failover from node ${a.previousHost}` : 'placed',
    keyService: { name: a.name, epoch: epoch + 1, phase: 'assigned', ...(leaving !== undefined ? { handoverFrom: leaving } : {}) },
  };
}

/**
 * A move is asked by the host incarnation the history names, at its epoch:
 * a request left over from a former incarnation (or history) whose numbers
 * happen to match is not it.
 */
export function moveAsked(v: KeyServiceInfo | undefined, hostIncarnation: number | undefined, p: MoveRequest, from: number, incarnation: number): v is KeyServiceInfo {
  return v !== undefined && v.epoch === p.epoch && v.host === from && hostIncarnation === incarnation;
}

/**
 * Where the move `p` asked by `from` (that incarnation) goes: the node that
 * registers it first, but `from` when it hands over (it leaves). None when
 * the move is not asked by the host the history names (`moveAsked`), or no
 * node can take it.
 */
export function moveTarget(v: KeyServiceInfo | undefined, hostIncarnation: number | undefined, p: MoveRequest, from: number, incarnation: number, members: readonly MemberInfo[]): number | undefined {
  if (!moveAsked(v, hostIncarnation, p, from, incarnation)) return undefined;
  return eligibleHost(p.name, members, p.handover ? from : undefined);
}

/**
 * The move `p` of `from` to `target` (its record: `m`), at the epoch after
 * `epoch`. Undefined when `from` went down meanwhile (failed over after its
 * Down instead, K4) or the target is not Up.
 */
export function moveChange(p: MoveRequest, from: number, fromState: NodeState | undefined, target: number, m: MemberInfo | undefined, epoch: number): Change | undefined {
  if (fromState !== 'Up') return undefined;
  if (!m || m.state !== 'Up') return undefined;
  return {
    kind: 'keyservice',
    node: target,
    incarnation: m.incarnation,
    from: m.state,
    to: m.state,
    cause: p.handover ? `hand-over from node ${from}` : `placed again (node ${from} had stopped it)`,
    keyService: { name: p.name, epoch: epoch + 1, phase: 'assigned', ...(p.handover ? { handoverFrom: from } : {}) },
  };
}

/** `m` is the record of that incarnation, Up, and still announces `name`. */
export function announces(m: MemberInfo | undefined, name: string, incarnation: number): m is MemberInfo {
  return m?.incarnation === incarnation && m.state === 'Up' && m.keyServices.some((h) => h.name === name);
}

/** Drop `name` from what `node` (its record: `m`, that incarnation) announced: a `meta` transition; undefined when it no longer does. */
export function withdrawChange(node: number, m: MemberInfo | undefined, name: string, incarnation: number): Change | undefined {
  if (!announces(m, name, incarnation)) return undefined;
  const keyServices = m.keyServices.filter((h) => h.name !== name);
  return { kind: 'meta', node, incarnation, from: m.state, to: m.state, cause: `key service ${name} unregistered`, keyServices };
}

/**
 * What a withdrawal of `name` by `from` (that incarnation; its record:
 * `m`) asks first: drop it from what `from` announced (`drop`, a `meta`
 * transition), nothing to drop any more (`dropped`), or nothing at all
 * (`refuse`: another incarnation of `from` is the member now).
 */
export function withdrawStart(m: MemberInfo | undefined, name: string, incarnation: number): 'drop' | 'dropped' | 'refuse' {
  if (m?.incarnation !== incarnation) return 'refuse';
  return announces(m, name, incarnation) ? 'drop' : 'dropped';
}

/**
 * Once `from` (that incarnation) no longer announces `name`: when it is
 * still the recorded host (it stopped its activation before asking), place
 * `name` on another node that registers it, or nowhere (halted when still
 * critical). Undefined when `from` is not its host.
 */
export function afterWithdraw(
  v: KeyServiceInfo | undefined,
  hostIncarnation: number | undefined,
  name: string,
  from: number,
  incarnation: number,
  members: readonly MemberInfo[],
): Extract<PlacementStep, { kind: 'assign' | 'vacate' }> | undefined {
  if (!v || v.host !== from || hostIncarnation !== incarnation) return undefined;
  const node = eligibleHost(name, members);
  if (node === undefined) return { kind: 'vacate', name, critical: stillCritical(name, members), since: v.since };
  return { kind: 'assign', name, node, since: v.since, previousHost: from, handoverFrom: undefined };
}

/** Halted only while a member (a Down one too: it may come back) still announces `name` as critical. */
export function stillCritical(name: string, members: readonly MemberInfo[]): boolean {
  return members.some((m) => m.keyServices.some((h) => h.name === name && h.critical));
}

/** A ready report of `from` for `name` at `epoch` is still to be committed: that epoch, that host, not ready yet. */
export function readyWanted(v: KeyServiceInfo | undefined, epoch: number, from: number): boolean {
  return v !== undefined && v.epoch === epoch && v.host === from && !v.ready;
}

/** The ready transition; undefined unless still wanted and the host (its record: `m`) is Up (one that went down meanwhile gets a failover after its Down instead). */
export function readyChange(v: KeyServiceInfo | undefined, name: string, epoch: number, from: number, m: MemberInfo | undefined): Change | undefined {
  if (!readyWanted(v, epoch, from)) return undefined;
  if (m?.state !== 'Up') return undefined;
  return { kind: 'keyservice', node: from, incarnation: m.incarnation, from: m.state, to: m.state, cause: 'failover complete', keyService: { name, epoch, phase: 'ready' } };
}
