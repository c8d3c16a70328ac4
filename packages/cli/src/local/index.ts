// The local-cluster launcher: N nodes as OS processes on 127.0.0.1 (see README.md here).
export { startLocalCluster, type LocalCluster, type LocalClusterOptions, type LocalEvent, type LocalNode, type NodeView } from './launcher.js';
export { formatEvent, formatTime } from './timeline.js';
export { LEDGER, type LedgerAnswer } from './ledger.js';
export type { RunnerConfig } from './protocol.js';
