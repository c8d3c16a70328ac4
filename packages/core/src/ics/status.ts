/**
 * Wire statuses ⇄ local errors. Only a status name, a message and plain
 * details cross the wire; the caller rebuilds a typed error from them.
 */
import {
  CancelledError,
  ClusterInfraError,
  DeadlineExceededError,
  InvalidArgumentError,
  NotFoundError,
  RemoteError,
  RemoteInternalError,
  ResourceExhaustedError,
  UnavailableError,
} from '../errors/index.js';
import { WireStatus, type WireStatusCode, type WireStatusName } from './wire/types.js';

const NAMES = new Map<number, WireStatusName>(
  (Object.entries(WireStatus) as [WireStatusName, WireStatusCode][]).map(([k, v]) => [v, k]),
);

export function statusName(code: number): WireStatusName {
  return NAMES.get(code) ?? 'UNKNOWN';
}

/**
 * Throw this from a handler to answer with a chosen status. Any other
 * thrown error becomes INTERNAL with its message (never its stack).
 */
export class IcsStatusError extends Error {
  override readonly name = 'IcsStatusError';
  readonly status: Exclude<WireStatusName, 'OK'>;
  readonly details: unknown;
  constructor(status: Exclude<WireStatusName, 'OK'>, message: string, details?: unknown) {
    super(message);
    this.status = status;
    this.details = details;
  }
}

export interface WireError {
  status: WireStatusCode;
  message: string;
  details?: unknown;
}

const CODE_TO_STATUS: Partial<Record<string, WireStatusName>> = {
  ICS_ERR_NOT_FOUND: 'NOT_FOUND',
  ICS_ERR_INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  ICS_ERR_DEADLINE_EXCEEDED: 'DEADLINE_EXCEEDED',
  ICS_ERR_CANCELLED: 'CANCELLED',
  CORE_ERR_ABORTED: 'CANCELLED',
  ICS_ERR_RESOURCE_EXHAUSTED: 'RESOURCE_EXHAUSTED',
  ICS_ERR_UNAVAILABLE: 'UNAVAILABLE',
  ICS_ERR_NODE_DOWN: 'UNAVAILABLE',
  ICS_ERR_CLOSED: 'UNAVAILABLE',
};

/**
 * A zod validation failure (from any copy of zod): a handler that parses
 * its arguments with a schema refused them, which is the caller's mistake.
 */
export function isSchemaError(err: unknown): err is Error & { issues: unknown[] } {
  return err instanceof Error && err.name === 'ZodError' && Array.isArray((err as { issues?: unknown }).issues);
}

/** A schema failure's issues as plain details: where and what, never the input. */
function schemaIssues(err: Error & { issues: unknown[] }): { path: unknown; message: unknown; code: unknown }[] {
  return err.issues.slice(0, 16).map((i) => {
    const x = (typeof i === 'object' && i !== null ? i : {}) as { path?: unknown; message?: unknown; code?: unknown };
    return { path: Array.isArray(x.path) ? x.path.map((p) => (typeof p === 'number' ? p : String(p))) : [], message: String(x.message ?? ''), code: String(x.code ?? '') };
  });
}

/** A handler's schema failure as the InvalidArgumentError its caller gets (the same locally as through the wire). */
export function schemaErrorToInvalidArgument(err: Error & { issues: unknown[] }, what: string): InvalidArgumentError {
  return new InvalidArgumentError(`${what}: invalid arguments`, { details: schemaIssues(err) });
}

/** What a handler's failure looks like on the wire. */
export function errorToWire(err: unknown): WireError {
  if (err instanceof IcsStatusError) {
    return { status: WireStatus[err.status], message: err.message, details: err.details };
  }
  // A handler that parsed its arguments with zod and refused them: the
  // caller sent something wrong (INVALID_ARGUMENT), not an internal failure.
  if (isSchemaError(err)) return { status: WireStatus.INVALID_ARGUMENT, message: 'invalid arguments', details: schemaIssues(err) };
  if (err instanceof ClusterInfraError) {
    const name = CODE_TO_STATUS[err.code] ?? 'INTERNAL';
    const details = err instanceof InvalidArgumentError ? err.details : undefined;
    return { status: WireStatus[name], message: err.message, ...(details === undefined ? {} : { details }) };
  }
  const message = err instanceof Error ? err.message : typeof err === 'string' ? err : 'handler failed';
  return { status: WireStatus.INTERNAL, message };
}

/** The typed local error for a status received from `node`. */
export function wireToError(status: number, body: unknown, node: number, what: string): ClusterInfraError {
  const b = (typeof body === 'object' && body !== null ? body : {}) as { message?: unknown; details?: unknown };
  const remote = typeof b.message === 'string' ? b.message : '';
  const message = `${what} on node ${node}: ${remote || statusName(status).toLowerCase()}`;
  switch (status) {
    case WireStatus.NOT_FOUND:
      return new NotFoundError(message);
    case WireStatus.INVALID_ARGUMENT:
      return new InvalidArgumentError(message, { details: b.details });
    case WireStatus.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(message);
    case WireStatus.CANCELLED:
      return new CancelledError(message);
    case WireStatus.RESOURCE_EXHAUSTED:
      return new ResourceExhaustedError(message);
    case WireStatus.UNAVAILABLE:
      return new UnavailableError(message, { mayHaveRun: true });
    case WireStatus.INTERNAL:
      return new RemoteInternalError(message);
    default:
      return new RemoteError(statusName(status), message, { details: b.details });
  }
}
