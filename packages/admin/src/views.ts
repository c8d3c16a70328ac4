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

/**
 * What `serveAdmin`'s `paths` option takes: a transport factory that
 * reports the health of each path of each link, such as the one
 * `multipath()` (`@clusterinfra/transport-multipath`) returns. Described by
 * shape, so this package does not depend on any transport.
 */
export interface PathHealthSource {
  health(): readonly LinkHealthReport[];
  /** Its own series, appended to `/metrics` when present. */
  metrics?(): string;
}

/** One link as a `PathHealthSource` reports it (the fields the endpoint reads). */
export interface LinkHealthReport {
  readonly id: string;
  readonly remoteNode: number;
  /** The node holding the link, when the source serves several nodes of one process. */
  readonly localNode?: number;
  readonly direction: 'inbound' | 'outbound';
  readonly paths: readonly {
    readonly index: number;
    readonly state: 'up' | 'down' | 'connecting';
    readonly active: boolean;
    readonly failures: number;
    readonly silentMs: number | undefined;
    readonly sinceMs: number;
    readonly lastError: string | undefined;
  }[];
  readonly unacknowledged: number;
  readonly retransmitted: number;
  readonly duplicatesDropped: number;
}

/** One path of one link, as `GET /v1/paths` and the page show it. */
export interface PathView {
  /** Position of the path in the transport's list. */
  index: number;
  state: 'up' | 'down' | 'connecting';
  /** It carries the link's data now. */
  active: boolean;
  /** Times it went down. */
  failures: number;
  /** Milliseconds since something arrived on it (`null`: it never was up). */
  silentMs: number | null;
  /** Milliseconds in its current state. */
  sinceMs: number;
  /** Why it last went down (`null`: it never did). */
  lastError: string | null;
}

export interface LinkPathsView {
  /** The node at the other end. */
  node: number;
  link: string;
  direction: 'inbound' | 'outbound';
  paths: PathView[];
  /** Frames sent and not yet acknowledged. */
  unacknowledged: number;
  /** Frames sent again after a path failed. */
  retransmitted: number;
  duplicatesDropped: number;
}

export interface PathsView {
  /** False when the endpoint has no `paths` source (a transport with one path per link). */
  available: boolean;
  /** This node's open links, by peer. */
  links: LinkPathsView[];
  /** Links with a path that is not up: they work, with less redundancy. */
  degraded: number;
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

/** The per-path health of `node`'s links, from the transport that reports it. */
export function pathsView(node: ClusterNode, source: PathHealthSource | undefined): PathsView {
  if (source === undefined) return { available: false, links: [], degraded: 0 };
  const links: LinkPathsView[] = source
    .health()
    .filter((l) => l.localNode === undefined || l.localNode === node.nodeNum)
    .map((l) => ({
      node: l.remoteNode,
      link: l.id,
      direction: l.direction,
      paths: l.paths.map((p) => ({
        index: p.index,
        state: p.state,
        active: p.active,
        failures: p.failures,
        silentMs: p.silentMs ?? null,
        sinceMs: p.sinceMs,
        lastError: p.lastError ?? null,
      })),
      unacknowledged: l.unacknowledged,
      retransmitted: l.retransmitted,
      duplicatesDropped: l.duplicatesDropped,
    }))
    .sort((a, b) => a.node - b.node || (a.link < b.link ? -1 : a.link > b.link ? 1 : 0));
  return { available: true, links, degraded: links.filter((l) => l.paths.some((p) => p.state !== 'up')).length };
}

export function keysView(node: ClusterNode): KeysView {
  return { formed: node.formed, keyServices: node.keyServices() };
}

export function decisionsView(node: ClusterNode): DecisionsView {
  return { decisions: [...node.decisionRecords()] };
}
