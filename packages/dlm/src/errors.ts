/**
 * The DLM's errors are core's errors: every one is a `ClusterInfraError`
 * (so `isClusterInfraError` and `retryable` work as for the rest of the
 * SDK) with a stable code of its own namespace, `DLM_ERR_…`. Codes are
 * append-only and never reused; docs/dlm.md has a row per code and a test
 * fails when the two disagree.
 */
import { ClusterInfraError, type ClusterInfraErrorOptions } from '@clusterinfra/core';

/** The catalog of every DLM code, with what it means. Append only. */
export const DLM_ERROR_CODES = {
  DLM_ERR_INVALID_ARGUMENT: 'A resource name, lock mode, value block or option is not valid; the message says which.',
  DLM_ERR_WOULD_BLOCK: 'A request with noQueue could not be granted at once.',
  DLM_ERR_TIMEOUT: 'The request waited longer than its timeoutMs and was cancelled at the resource master.',
  DLM_ERR_CANCELLED: "The request was cancelled by its AbortSignal before it was granted.",
  DLM_ERR_DEADLOCK: 'The request was chosen as the victim of a deadlock (a conversion deadlock, or a wait longer than deadlockTimeoutMs).',
  DLM_ERR_LOCK_LOST: 'This node was declared down (or the lock manager closed, or the cluster re-formed from nothing): the cluster released its locks.',
  DLM_ERR_NOT_HELD: 'The lock was released already (or never granted).',
  DLM_ERR_BUSY: 'Another operation on this lock (a conversion or release) has not finished yet.',
  DLM_ERR_LIMIT: 'A bounded table is full: locks on this node, or resources at the resource master.',
  DLM_ERR_CLOSED: 'The lock manager on this node is closed.',
  DLM_ERR_NO_MASTER: 'The lock manager is restricted to roles (masterRoles) and no member has one of them: nobody can master the resource.',
} as const;

export type DlmErrorCode = keyof typeof DLM_ERROR_CODES;

// The DLM's codes join core's `ErrorCode` (core's extension point), so
// `err.code` and `isClusterInfraError(err, 'DLM_ERR_…')` type-check as for core's own.
declare module '@clusterinfra/core' {
  interface ErrorCodeExtensions extends Record<DlmErrorCode, true> {}
}

/**
 * The base class of every DLM error. Its `code` is a `DlmErrorCode`;
 * `dlmCode` is the same string typed as the DLM's codes only.
 */
export class DlmError extends ClusterInfraError {
  override readonly name: string = 'DlmError';
  readonly dlmCode: DlmErrorCode;
  constructor(code: DlmErrorCode, message: string, options: ClusterInfraErrorOptions = {}) {
    super(code, message, options);
    this.dlmCode = code;
  }
}

/** True when `err` is a DlmError, optionally with the given code. */
export function isDlmError(err: unknown, code?: DlmErrorCode): err is DlmError {
  return err instanceof DlmError && (code === undefined || err.dlmCode === code);
}

export class DlmInvalidArgumentError extends DlmError {
  override readonly name = 'DlmInvalidArgumentError';
  constructor(message: string) {
    super('DLM_ERR_INVALID_ARGUMENT', message);
  }
}

export class WouldBlockError extends DlmError {
  override readonly name = 'WouldBlockError';
  constructor(message: string) {
    super('DLM_ERR_WOULD_BLOCK', message, { retryable: true });
  }
}

export class LockTimeoutError extends DlmError {
  override readonly name = 'LockTimeoutError';
  constructor(message: string) {
    super('DLM_ERR_TIMEOUT', message, { retryable: true });
  }
}

export class LockCancelledError extends DlmError {
  override readonly name = 'LockCancelledError';
  constructor(message: string, options: ClusterInfraErrorOptions = {}) {
    super('DLM_ERR_CANCELLED', message, options);
  }
}

export class DeadlockError extends DlmError {
  override readonly name = 'DeadlockError';
  constructor(message: string) {
    super('DLM_ERR_DEADLOCK', message, { retryable: true });
  }
}

export class LockLostError extends DlmError {
  override readonly name = 'LockLostError';
  constructor(message: string) {
    super('DLM_ERR_LOCK_LOST', message);
  }
}

export class NotHeldError extends DlmError {
  override readonly name = 'NotHeldError';
  constructor(message: string) {
    super('DLM_ERR_NOT_HELD', message);
  }
}

export class LockBusyError extends DlmError {
  override readonly name = 'LockBusyError';
  constructor(message: string) {
    super('DLM_ERR_BUSY', message, { retryable: true });
  }
}

export class DlmLimitError extends DlmError {
  override readonly name = 'DlmLimitError';
  constructor(message: string) {
    super('DLM_ERR_LIMIT', message, { retryable: true });
  }
}

export class DlmClosedError extends DlmError {
  override readonly name = 'DlmClosedError';
  constructor(message = 'the lock manager is closed') {
    super('DLM_ERR_CLOSED', message);
  }
}

export class NoMasterError extends DlmError {
  override readonly name = 'NoMasterError';
  constructor(message: string) {
    super('DLM_ERR_NO_MASTER', message, { retryable: true });
  }
}

/** The error for a code the protocol settled an operation with. */
export function errorFor(code: DlmErrorCode, message: string): DlmError {
  switch (code) {
    case 'DLM_ERR_INVALID_ARGUMENT':
      return new DlmInvalidArgumentError(message);
    case 'DLM_ERR_WOULD_BLOCK':
      return new WouldBlockError(message);
    case 'DLM_ERR_TIMEOUT':
      return new LockTimeoutError(message);
    case 'DLM_ERR_CANCELLED':
      return new LockCancelledError(message);
    case 'DLM_ERR_DEADLOCK':
      return new DeadlockError(message);
    case 'DLM_ERR_LOCK_LOST':
      return new LockLostError(message);
    case 'DLM_ERR_NOT_HELD':
      return new NotHeldError(message);
    case 'DLM_ERR_BUSY':
      return new LockBusyError(message);
    case 'DLM_ERR_LIMIT':
      return new DlmLimitError(message);
    case 'DLM_ERR_CLOSED':
      return new DlmClosedError(message);
    case 'DLM_ERR_NO_MASTER':
      return new NoMasterError(message);
  }
}
