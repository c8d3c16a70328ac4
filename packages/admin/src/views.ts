/**
 * The JSON the admin endpoint answers with: built from a ClusterNode's
 * public API only, and typed here so that clients (the `cluster` command)
 * share the shapes.
 */
import type { ClusterNode, DecisionRecord, KeyServiceInfo, NodeState, RefusedHandshake, Transition } from '@clusterinfra/core';

export interface MemberView {
  node: number;
  state: NodeState;
  incarnation: number;
  address: string;
  meta: Record<string, unknown>;
  /** This member is the master the answering node knows. */
  master: boolean;
  /** Key services this member hosts now (ready or taking over). */
  hosts: string[];
  /** Number of the transition that last changed this member. */
  since: number;
}

export interface StatusView {
  cluster: string;
  /** The node that answered. */
  node: number;
  incarnation: number | null;
  address: string | null;
  master: number | null;
  term: number;
  formed: boolean;
  hasQuorum: boolean;
  /** Number of the last committed transition (0 before the first). */
  lastTransition: number;
  /** The oldest transition the bounded history still holds. */
  firstTransition: number;
  members: MemberView[];
  /** Nodes under suspicion, when the node exposes them (this version does not: `null`). */
  suspected: number[] | null;
  /**
   * Handshakes refused lately, both ways (a node with the wrong secret or
   * cluster name knocking, a seed refusing this node). Absent from older
   * endpoints.
   */
  refusedHandshakes?: RefusedHandshake[];
  health: Health;
}

/** Whether the cluster looks healthy from the answering node, and if not why. */
export interface Health {
  ok: boolean;
  problems: string[];
}

export interface HistoryView {
  first: number;
  last: number;
  transitions: Transition[];
  /** Ask `since=next` for the following page; `null` when this page reached the end. */
  next: number | null;
}

export interface KeysView {
  formed: boolean;
  keyServices: KeyServiceInfo[];
}

export interface DecisionsView {
  decisions: DecisionRecord[];
}

/** A refused handshake counts against health while it was seen within this long. */
export const REFUSED_RECENT_MS = 60_000;

/** States that mean a member is on its way out without having left cleanly. */
const TROUBLED: ReadonlySet<NodeState> = new Set<NodeState>(['GoingDown', 'ShuttingDown']);

/**
 * The one rule for "healthy", shared by the endpoint and the `cluster`
 * command's exit code: formed, with quorum, a master known, and no member
 * suspected or on its way down.
 */
export function assessHealth(s: Pick<StatusView, 'formed' | 'hasQuorum' | 'master' | 'members' | 'suspected' | 'refusedHandshakes'>): Health {
  const problems: string[] = [];
  if (s.master === null) problems.push('no master known');
  if (!s.hasQuorum) problems.push('no quorum');
  if (!s.formed) problems.push('not formed (a critical key service has no ready host)');
  for (const m of s.members) if (TROUBLED.has(m.state)) problems.push(`node ${m.node} is ${m.state}`);
  for (const n of s.suspected ?? []) problems.push(`node ${n} is suspected`);
  // A node that cannot get in (wrong secret, cluster name, node number) is a problem of the cluster too.
  for (const r of s.refusedHandshakes ?? []) {
    if (r.lastAgoMs <= REFUSED_RECENT_MS) problems.push(`${r.text} (${r.count} ${r.count === 1 ? 'time' : 'times'}, last ${Math.round(r.lastAgoMs / 1000)} s ago)`);
  }
  return { ok: problems.length === 0, problems };
}

/** ICS exists only once the node started; before that (or between incarnations) some fields are unknown. */
function icsField<T>(read: () => T | undefined): T | null {
  try {
    return read() ?? null;
  } catch {
    return null;
  }
}

export function statusView(node: ClusterNode): StatusView {
  const m = node.membership();
  const hosted = new Map<number, string[]>();
  for (const k of node.keyServices()) {
    if (k.host === undefined || k.halted) continue;
    const list = hosted.get(k.host) ?? [];
    list.push(k.name);
    hosted.set(k.host, list);
  }
  const members: MemberView[] = m.members.map((x) => ({
    node: x.node,
    state: x.state,
    incarnation: x.incarnation,
    address: x.address,
    meta: { ...x.meta },
    master: x.node === m.master,
    hosts: hosted.get(x.node) ?? [],
    since: x.since,
  }));
  const base = {
    cluster: node.clusterName,
    node: node.nodeNum,
    incarnation: icsField(() => node.incarnation),
    address: icsField(() => node.address),
    master: m.master ?? null,
    term: m.term,
    formed: node.formed,
    hasQuorum: node.hasQuorum,
    lastTransition: node.lastTransition,
    firstTransition: node.firstTransition,
    members,
    suspected: null,
    refusedHandshakes: node.refusedHandshakes(),
  };
  return { ...base, health: assessHealth(base) };
}

/** One bounded page of the history from transition `since` on (inclusive). */
export function historyView(node: ClusterNode, since: number | undefined, limit: number): HistoryView {
  const first = node.firstTransition;
  const last = node.lastTransition;
  const from = Math.max(since ?? first, first, 1);
  const transitions = node.transitions(from - 1).slice(0, limit);
  const end = transitions.at(-1)?.number ?? from - 1;
  return { first, last, transitions, next: end < last ? end + 1 : null };
}

export function keysView(node: ClusterNode): KeysView {
  return { formed: node.formed, keyServices: node.keyServices() };
}

export function decisionsView(node: ClusterNode): DecisionsView {
  return { decisions: [...node.decisionRecords()] };
}
