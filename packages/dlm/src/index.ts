// The public API of @clusterinfra/dlm, chosen name by name.
export { createDlm, Dlm, dlmService, Lock, type ConvertOptions, type DlmEvents, type LockOptions } from './driver.js';
export { DLM_DEFAULTS, type DlmOptions, type ResolvedDlmOptions } from './options.js';
export { compatible, isDownConversion, isLockMode, LOCK_MODES, writesValue, type LockMode } from './modes.js';
export {
  DLM_ERROR_CODES,
  DeadlockError,
  DlmClosedError,
  DlmError,
  DlmInvalidArgumentError,
  DlmLimitError,
  isDlmError,
  LockBusyError,
  LockCancelledError,
  LockLostError,
  LockTimeoutError,
  NoMasterError,
  NotHeldError,
  WouldBlockError,
  type DlmErrorCode,
} from './errors.js';
export { DlmState, TOKEN_ROUND_SPAN, type Effect, type GrantInfo, type Member, type StateLimits } from './protocol/state.js';
export { Resource, EMPTY_VALUE, type MasterLock, type ResourceOutput, type ValueBlock } from './protocol/resource.js';
export { masterOf } from './protocol/hash.js';
export { messageSchema, batchSchema, WIRE_LIMITS, type Message, type Batch, type LockReport, type ResourceRecord } from './protocol/messages.js';
// Test-only: planted bugs for the canary tests. Never turn on in production.
export { canaries as __dlmCanaries, resetCanaries as __resetDlmCanaries, type DlmCanaryName } from './canaries.js';
