// The public API of @clusterinfra/registry, chosen name by name.
export { createRegistry, Registry, type PutOptions, type RegistryEvents, type WatchOptions, type WriteOptions } from './registry.js';
export type { RegistryOptions } from './options.js';
export { REGISTRY_DEFAULTS } from './constants.js';
export { isRegistryError, RegistryError, REGISTRY_ERROR_CODES, type RegistryErrorCode } from './errors.js';
export { revision, SEQ_SPACE, type Change, type Entry, type Owner, type PlainValue, type RegistryEvent, type Snapshot, type WriteOp } from './types.js';
export { ReplicaState, type ReceiveStatus, type Step } from './replica.js';
export { freshest, SequencerState, type MapLimits, type WriteResult } from './sequencer.js';
// Test-only: planted bugs for the canary tests (the simulator's workload turns them on). Never turn on in production.
export { registryCanaries as __registryCanaries, type RegistryCanaryName } from './canaries.js';
