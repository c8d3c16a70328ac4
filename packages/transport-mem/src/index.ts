// The public API of @clusterinfra/transport-mem, chosen name by name.
export {
  createMemoryNetwork,
  MemoryNetwork,
  type MemoryNetworkEvents,
  type MemoryNetworkStats,
  type PartitionOptions,
  type SetLinkFaultsOptions,
} from './network.js';
export {
  memory,
  MemoryListener,
  MemoryTransport,
  type MemoryTransportFactory,
  type MemoryTransportOptions,
} from './transport.js';
export { MemoryLink } from './link.js';
export type { LinkFaults, MemoryNetworkOptions } from './options.js';
export type { TraceEntry, TraceEvent } from './trace.js';
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HIGH_WATER_MARK,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_SEED,
  DEFAULT_TRACE_LIMIT,
  MAX_FRAME_SIZE_LIMIT,
} from './constants.js';
