/**
 * Errors of @clusterinfra/services: one class, `ServicesError`, with a
 * stable `code` from the catalog below. Codes are append only and never
 * reused; docs/services.md has a row for each (a test checks it). Errors of
 * the calls themselves (a node down, a deadline, invalid arguments) are
 * core's ICS errors, passed through unchanged; a mistake in what is passed
 * to this layer's own API is SERVICES_ERR_INVALID_ARGUMENT (src/args.ts).
 */
import { ClusterInfraError, type ClusterInfraErrorOptions } from '@clusterinfra/core';

/** The catalog of every services code, with what it means. Append only. */
export const SERVICES_ERROR_CODES = {
  SERVICES_ERR_NO_PROVIDER: 'No live node serves that name (with the roles asked for), or every one was tried.',
  SERVICES_ERR_UNKNOWN_METHOD: 'The nodes that serve that name do not announce that method.',
  SERVICES_ERR_INVALID_NAME: 'A service name, topic or group is not a non-empty string within the size limit.',
  SERVICES_ERR_INVALID_ROLES: 'Roles are not a list of non-empty strings within the limits.',
  SERVICES_ERR_ALREADY_SERVED: 'This node already serves a service under that name.',
  SERVICES_ERR_LIMIT: 'A bound was reached: services served, subscriptions, or by-name calls in flight on this node.',
  SERVICES_ERR_NOT_STARTED: 'The services layer was used before start() resolved.',
  SERVICES_ERR_CLOSED: 'The services layer on this node is closed.',
  SERVICES_ERR_INVALID_ARGUMENT: 'A call was given something it cannot take: a node that is not a ClusterNode, options that are not an object, an unknown policy or delivery, a handler that is not a function, a signal that is not an AbortSignal.',
} as const;

export type ServicesErrorCode = keyof typeof SERVICES_ERROR_CODES;

// The services codes join core's `ErrorCode` (core's extension point, as the
// registry's and the lock manager's do), so `err.code` and
// `isClusterInfraError(err, 'SERVICES_ERR_…')` type-check as for core's own.
declare module '@clusterinfra/core' {
  interface ErrorCodeExtensions extends Record<ServicesErrorCode, true> {}
}

const RETRYABLE = new Set<ServicesErrorCode>(['SERVICES_ERR_NO_PROVIDER', 'SERVICES_ERR_LIMIT', 'SERVICES_ERR_NOT_STARTED']);

export class ServicesError extends ClusterInfraError {
  override readonly name = 'ServicesError';
  /** The same string as `code`, typed as a services code only. */
  readonly servicesCode: ServicesErrorCode;

  constructor(code: ServicesErrorCode, message: string, options: ClusterInfraErrorOptions = {}) {
    super(code, message, { retryable: RETRYABLE.has(code), ...options });
    this.servicesCode = code;
  }
}

/** True when `err` is a ServicesError, optionally with the given code. */
export function isServicesError(err: unknown, code?: ServicesErrorCode): err is ServicesError {
  return err instanceof ServicesError && (code === undefined || err.servicesCode === code);
}
