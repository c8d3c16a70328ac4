/**
 * Registry errors: one class, `RegistryError`, with a stable `code` from the
 * catalog below. Codes are append only and never reused; docs/registry.md
 * has a row for each (a test checks it).
 */
import { ClusterInfraError, type ClusterInfraErrorOptions } from '@clusterinfra/core';
import type { Entry } from './types.js';

/** The catalog of every registry code, with what it means. Append only. */
export const REGISTRY_ERROR_CODES = {
  REGISTRY_ERR_CONFLICT: 'A compare-and-set failed: the entry is not at the version the write expected.',
  REGISTRY_ERR_INVALID_KEY: 'The key is not a non-empty string within the key size limit.',
  REGISTRY_ERR_INVALID_VALUE: 'The value is not plain data (null, boolean, finite number, string, array, plain object) within the nesting limit.',
  REGISTRY_ERR_ENTRY_TOO_LARGE: 'The key and value together are larger than the entry size limit.',
  REGISTRY_ERR_FULL: 'The write would take the map past its entry count or byte limit.',
  REGISTRY_ERR_OWNER_DOWN: 'An owned write came from an incarnation the membership no longer has Up, or a write or sync from an incarnation declared down.',
  REGISTRY_ERR_TOO_MANY_WATCHERS: 'This node already has as many watchers on the map as it allows.',
  REGISTRY_ERR_WATCH_OVERFLOW: 'A watcher fell behind by more events than its queue holds; it was ended.',
  REGISTRY_ERR_NOT_STARTED: 'The registry was used before start() (or before the node joined).',
  REGISTRY_ERR_CLOSED: 'The registry on this node is closed.',
  REGISTRY_ERR_NOT_SEQUENCER: 'The write reached a node that is not (or stopped being) the sequencer of this epoch; if it stopped during the write, the write may or may not be in the map.',
  REGISTRY_ERR_INVALID_ARGUMENT: 'A call was given something it cannot take: a node that is not a ClusterNode, options that are not an object, an expectVersion that is not a version, a signal that is not an AbortSignal, a prefix that is not a string.',
} as const;

export type RegistryErrorCode = keyof typeof REGISTRY_ERROR_CODES;

// The registry's codes join core's `ErrorCode` (core's extension point), so
// `err.code` and `isClusterInfraError(err, 'REGISTRY_ERR_…')` type-check as for core's own.
declare module '@clusterinfra/core' {
  interface ErrorCodeExtensions extends Record<RegistryErrorCode, true> {}
}

const RETRYABLE = new Set<RegistryErrorCode>(['REGISTRY_ERR_CONFLICT', 'REGISTRY_ERR_NOT_SEQUENCER', 'REGISTRY_ERR_NOT_STARTED']);

export class RegistryError extends ClusterInfraError {
  override readonly name = 'RegistryError';
  /** The same string as `code`, typed as a registry code only. */
  readonly registryCode: RegistryErrorCode;
  /** For `REGISTRY_ERR_CONFLICT`: the entry as the sequencer had it (null: absent). */
  readonly current: Entry | null | undefined;

  constructor(code: RegistryErrorCode, message: string, options: ClusterInfraErrorOptions & { current?: Entry | null } = {}) {
    super(code, message, { retryable: RETRYABLE.has(code), ...options });
    this.registryCode = code;
    this.current = options.current;
  }
}

/** True when `err` is a RegistryError, optionally with the given code. */
export function isRegistryError(err: unknown, code?: RegistryErrorCode): err is RegistryError {
  return err instanceof RegistryError && (code === undefined || err.registryCode === code);
}
