/** Typed errors of the admin endpoint: a stable `code` and the HTTP status that carries it. */
import { ClusterInfraError, type ClusterInfraErrorOptions, type ErrorCode } from '@clusterinfra/core';

/** The admin codes and the HTTP status each one is answered with. */
export const ADMIN_ERROR_STATUS = {
  ADMIN_ERR_UNAUTHORIZED: 401,
  ADMIN_ERR_NOT_FOUND: 404,
  ADMIN_ERR_METHOD_NOT_ALLOWED: 405,
  ADMIN_ERR_BAD_REQUEST: 400,
  ADMIN_ERR_BODY_TOO_LARGE: 413,
  ADMIN_ERR_UNKNOWN_NODE: 404,
  ADMIN_ERR_TOO_MANY_WATCHERS: 503,
  ADMIN_ERR_INTERNAL: 500,
  // Raised on the client side (no HTTP answer, or not the admin API).
  ADMIN_ERR_UNREACHABLE: 502,
  ADMIN_ERR_BAD_RESPONSE: 502,
} as const satisfies Partial<Record<ErrorCode, number>>;

export type AdminErrorCode = keyof typeof ADMIN_ERROR_STATUS;

const RETRYABLE = new Set<AdminErrorCode>(['ADMIN_ERR_TOO_MANY_WATCHERS', 'ADMIN_ERR_INTERNAL', 'ADMIN_ERR_UNREACHABLE']);

export class AdminError extends ClusterInfraError {
  override readonly name = 'AdminError';
  /** The HTTP status this error is (or was) answered with. */
  readonly httpStatus: number;
  constructor(code: AdminErrorCode, message: string, options: ClusterInfraErrorOptions & { httpStatus?: number } = {}) {
    super(code, message, { retryable: RETRYABLE.has(code), ...options });
    this.httpStatus = options.httpStatus ?? ADMIN_ERROR_STATUS[code];
  }
}

/** The body of every error answer: `{ error: { code, message } }`. */
export interface ErrorBody {
  error: { code: string; message: string };
}
