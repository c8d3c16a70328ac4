export { ClusterNode, createClusterNode } from './node.js';
export { hasQuorum, MAX_META_BYTES, presets, type AdmissionRequest, type ClusterNodeOptions, type Discovery, type QuorumPolicy, type Timing, type VoterRule } from './options.js';
export { compareHistoryIds, History, type HistorySnapshot } from './protocol/history.js';
export { DNS_DISCOVERY_DEFAULTS, dnsDiscovery, type DnsDiscoveryOptions } from './discovery.js';
export { heartbeatDetector, type DetectorContext, type NodedownDetector, type Suspicion } from './detector.js';
export {
  LEGAL_MOVES,
  NODE_STATES,
  type ClusterEvents,
  type DecisionRecord,
  type HostedKeyService,
  type KeyServiceActivity,
  type KeyServiceChange,
  type KeyServiceInfo,
  type MemberInfo,
  type Membership,
  type NodeEvent,
  type NodeState,
  type Subsystem,
  type Transition,
  type TransitionKind,
  type WatchEvent,
} from './types.js';
export { type JoinProgress, type RefusedHandshake } from './progress.js';
export { type StartOptions } from './lifecycle.js';
