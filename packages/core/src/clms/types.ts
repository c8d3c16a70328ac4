/** CLMS public types: states, transitions, members, events. */
import type { JoinProgress } from './progress.js';

/**
 * Node states. Legal moves (only the master commits them):
 * NeverUp → ComingUp → Up → ShuttingDown (clean leave) | GoingDown (failure) → Down,
 * and Down → ComingUp for a new incarnation once every node finished cleanup.
 */
export type NodeState = 'NeverUp' | 'ComingUp' | 'Up' | 'ShuttingDown' | 'GoingDown' | 'Down';

export const NODE_STATES: readonly NodeState[] = ['NeverUp', 'ComingUp', 'Up', 'ShuttingDown', 'GoingDown', 'Down'];

/** The legal graph of state changes (M7). */
export const LEGAL_MOVES: Readonly<Record<NodeState, readonly NodeState[]>> = {
  NeverUp: ['ComingUp'],
  ComingUp: ['Up', 'GoingDown'],
  Up: ['ShuttingDown', 'GoingDown', 'Up'],
  ShuttingDown: ['Down', 'GoingDown'],
  GoingDown: ['Down'],
  Down: ['ComingUp'],
};

/** What a transition records. `Up → Up` transitions record a master change or new metadata. */
export type TransitionKind = 'state' | 'master' | 'meta' | 'keyservice';

/** What a `keyservice` transition says about one key service. */
export interface KeyServiceChange {
  readonly name: string;
  /** Grows with every activation; a fencing token for external systems. */
  readonly epoch: number;
  /**
   * `assigned`: `node` takes over (failover, data pull) as host of `epoch`;
   * `ready`: it serves; `vacant`: no eligible node (non-critical);
   * `halted`: a critical key service has no eligible node left.
   */
  readonly phase: 'assigned' | 'ready' | 'vacant' | 'halted';
  /** For `assigned`: the host it takes over from by hand-over (a clean leave). */
  readonly handoverFrom?: number;
}

/** A key service a node may host, as announced when it joins. */
export interface HostedKeyService {
  readonly name: string;
  readonly critical: boolean;
  /** Where its methods live on the `keyservice` channel, so any member can call it by name. */
  readonly subservice?: number;
  /** Its methods that are safe to retry on a new host. */
  readonly idempotent?: readonly string[];
}

/** One numbered, clusterwide membership event. */
export interface Transition {
  /** 1, 2, 3, …: every node applies the same numbers in the same order (M1, M2). */
  readonly number: number;
  /** Term of the master that committed it. */
  readonly term: number;
  readonly kind: TransitionKind;
  readonly node: number;
  readonly incarnation: number;
  readonly from: NodeState;
  readonly to: NodeState;
  /** Why, in words: `joined`, `left`, `declared down by API`, `heartbeat timeout`, … */
  readonly cause: string;
  /** Wall-clock ms at the master when it was proposed. */
  readonly time: number;
  /** The node's address (on joins) and metadata (on joins and `meta`). */
  readonly address?: string;
  readonly meta?: Record<string, unknown>;
  /** On joins: the key services the node may host, in its order of preference. */
  readonly keyServices?: readonly HostedKeyService[];
  /** On `keyservice` transitions. */
  readonly keyService?: KeyServiceChange;
  /**
   * Only on delivered events, never in the history or on the wire: true
   * when the event delivers a transition after the fact rather than as it
   * was applied here, i.e. the history a late joiner receives with its join
   * (the transitions before its own ComingUp), and what `watch({ since })`
   * replays from the kept history. Absent on live transitions.
   */
  readonly replayed?: boolean;
}

export interface MemberInfo {
  readonly node: number;
  readonly state: NodeState;
  readonly incarnation: number;
  readonly address: string;
  readonly meta: Readonly<Record<string, unknown>>;
  /** Key services this node may host, in its order of preference. */
  readonly keyServices: readonly HostedKeyService[];
  /** Number of the transition that last changed this member. */
  readonly since: number;
}

export interface Membership {
  /** The transition number this view is valid at. */
  readonly number: number;
  readonly term: number;
  readonly master: number | undefined;
  readonly members: readonly MemberInfo[];
}

/** Why a node was declared down, quorum was lost or a master changed. */
export interface DecisionRecord {
  readonly kind: 'down' | 'quorum-lost' | 'quorum-regained' | 'master' | 'leave' | 'refused-join';
  readonly node?: number;
  readonly term: number;
  readonly time: number;
  /** The rule applied, in words. */
  readonly rule: string;
  /** Which detector or API raised it, who observed what. */
  readonly detector?: string;
  readonly observers?: Readonly<Record<string, string>>;
  /** Milliseconds from first suspicion to the decision, when relevant. */
  readonly tookMs?: number;
  /**
   * A down's steps, in milliseconds from the first suspicion: `verified`
   * (the probes agreed it is unreachable), `confirmed` (the policy hook and
   * the fence, when set), `committed` (a quorum has the GoingDown).
   */
  readonly timings?: Readonly<Record<string, number>>;
}

/** A subsystem: callbacks run on every surviving node, by band, then in registration order. */
export interface Subsystem {
  name: string;
  /** Lower bands run first. @default 0 */
  band?: number;
  nodeup?: (event: NodeEvent) => void | Promise<void>;
  nodedown?: (event: NodeEvent) => void | Promise<void>;
}

export interface NodeEvent {
  readonly node: number;
  readonly incarnation: number;
  readonly transition: Transition;
  /** Aborts when the node closes. */
  readonly signal: AbortSignal;
}

export type WatchEvent =
  | { type: 'transition'; transition: Transition }
  | { type: 'master'; master: number | undefined; term: number }
  | { type: 'quorum'; hasQuorum: boolean }
  | { type: 'keyservice'; keyService: KeyServiceInfo }
  | { type: 'formed'; formed: boolean }
  | { type: 'halted'; keyService: string; reason: string };

export interface ClusterEvents {
  /**
   * While this node looks for the cluster (start, or a rejoin): what it waits
   * for, in words, each time that changes (docs/membership.md, "Joining:
   * progress and timeouts").
   */
  joining: (progress: JoinProgress) => void;
  /** Every committed transition, in number order, exactly once per node (per incarnation). */
  transition: (t: Transition) => void;
  /** A node reached Up (after every member ran its nodeup callbacks). */
  nodeup: (info: MemberInfo) => void;
  /** A node reached GoingDown or ShuttingDown: its cleanup starts. */
  nodedown: (info: MemberInfo) => void;
  /** The master changed (or is unknown: `master` undefined). */
  master: (info: { master: number | undefined; term: number }) => void;
  /** This node gained or lost a quorum. */
  quorum: (info: { hasQuorum: boolean }) => void;
  /** A decision record (down, quorum loss, master change). */
  decision: (record: DecisionRecord) => void;
  /** This node was declared down by the others and restarts as a new incarnation. */
  evicted: (info: { incarnation: number }) => void;
  /** A key service moved, became ready, went vacant or halted (from the history: every node sees each once, in order). */
  keyservice: (info: KeyServiceInfo) => void;
  /** This node started serving a key service (ready) or stopped (a newer epoch, hand-over, lost quorum, closed); `reason` says why. */
  'keyservice-host': (info: KeyServiceActivity) => void;
  /** Every critical key service has a ready host (again): the cluster is formed. */
  formed: (info: { formed: boolean }) => void;
  /** A critical key service has no eligible node left: the cluster halts. */
  halted: (info: { keyService: string; reason: string }) => void;
  /** A subsystem callback failed or hung; the barrier it belongs to waits. */
  'callback-error': (info: { subsystem: string; phase: 'nodeup' | 'nodedown'; node: number; error: unknown }) => void;
}

/** Where a key service lives, as every node knows it from the history. */
export interface KeyServiceInfo {
  readonly name: string;
  readonly host: number | undefined;
  readonly epoch: number;
  readonly ready: boolean;
  readonly critical: boolean;
  readonly halted: boolean;
  /** Transition number of the last change. */
  readonly since: number;
  /** Why it is halted or vacant. */
  readonly reason?: string;
}

/** A local activation of a key service started or ended on this node. */
export interface KeyServiceActivity {
  readonly name: string;
  readonly epoch: number;
  readonly active: boolean;
  readonly reason: string;
}
