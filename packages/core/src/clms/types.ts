/** CLMS public types: states, transitions, members, events. */
import type { JoinProgress } from './progress.js';

import { type MemberInfo, type NodeState, nodeStateSchema, type Transition } from './protocol/messages.js';

// Transitions, members and node states are what crosses the wire: their
// types are inferred from the schemas in protocol/messages.ts.
export type { HostedKeyService, KeyServiceChange, MemberInfo, NodeState, Transition, TransitionKind } from './protocol/messages.js';

export const NODE_STATES: readonly NodeState[] = nodeStateSchema.options;

/** The legal graph of state changes (M7). */
export const LEGAL_MOVES: Readonly<Record<NodeState, readonly NodeState[]>> = {
  NeverUp: ['ComingUp'],
  ComingUp: ['Up', 'GoingDown'],
  Up: ['ShuttingDown', 'GoingDown', 'Up'],
  ShuttingDown: ['Down', 'GoingDown'],
  GoingDown: ['Down'],
  Down: ['ComingUp'],
};

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
