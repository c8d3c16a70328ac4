/**
 * Errors are data: every error ClusterInfra raises is a `ClusterInfraError`
 * with a stable string `code`, an optional `cause`, and `retryable`, which
 * says whether the same operation may succeed if tried again unchanged.
 *
 * Codes are namespaced (`TRANSPORT_ERR_…`, `CONFIG_ERR_…`, `CORE_ERR_…`,
 * later `ICS_ERR_…` and `CLMS_ERR_…`), never reused, and each has a row in
 * `docs/errors.md`; a test fails when the catalog and the doc disagree.
 */

/** The catalog of every code, with what it means. Append only. */
export const ERROR_CODES = {
  CORE_ERR_ABORTED: 'The operation was cancelled by its AbortSignal.',
  CORE_ERR_TIMEOUT: 'The operation did not finish within its timeout.',
  CONFIG_ERR_INVALID_OPTION: 'An option failed validation; the message names its path.',
  TRANSPORT_ERR_CONNECTION_REFUSED: 'Nothing accepted the connection at that address.',
  TRANSPORT_ERR_CONNECT_TIMEOUT: 'The connection was not established within the connect timeout.',
  TRANSPORT_ERR_HANDSHAKE_TIMEOUT: 'The handshake did not complete within the handshake timeout.',
  TRANSPORT_ERR_HANDSHAKE_REJECTED: 'The peer refused the handshake; `reason` says why.',
  TRANSPORT_ERR_LINK_CLOSED: 'The link is closed (or closing) and takes no more frames.',
  TRANSPORT_ERR_LINK_RESET: 'The link was lost without a graceful close (peer crash, reset, network loss).',
  TRANSPORT_ERR_FRAME_TOO_LARGE: 'A frame is larger than the maximum frame size.',
  TRANSPORT_ERR_MALFORMED_FRAME: 'The peer sent bytes that are not a valid frame; the link is closed.',
  TRANSPORT_ERR_FRAME_DEADLINE: 'The peer started a frame and did not finish it within the deadline.',
  TRANSPORT_ERR_TOO_MANY_PENDING: 'Too many connections are waiting for their handshake; this one was dropped.',
  TRANSPORT_ERR_ADDRESS_IN_USE: 'The listen address is already taken.',
  TRANSPORT_ERR_INVALID_ADDRESS: 'The address is not valid for this transport.',
  TRANSPORT_ERR_TRANSPORT_CLOSED: 'The transport was closed; it neither listens nor connects any more.',
  TRANSPORT_ERR_TLS: 'TLS failed (certificate not trusted, expired, or missing).',
  ICS_ERR_NODE_DOWN: 'The node was declared down; `sent` says whether the message may have reached it.',
  ICS_ERR_UNAVAILABLE: 'The node could not be reached, or the link broke while the call was in flight.',
  ICS_ERR_NOT_FOUND: 'The serving node has no such service or method.',
  ICS_ERR_INVALID_ARGUMENT: 'The arguments failed validation (at the serving edge, or locally before sending).',
  ICS_ERR_DEADLINE_EXCEEDED: 'The call did not complete before its deadline.',
  ICS_ERR_CANCELLED: 'The call was cancelled (by the caller, or the handler was aborted).',
  ICS_ERR_RESOURCE_EXHAUSTED: 'A bounded queue or table is full (handler queue, pending calls, send queue).',
  ICS_ERR_INTERNAL: 'The handler failed on the serving node; the message says how, without a stack trace.',
  ICS_ERR_REMOTE: 'The serving node answered with another status; `status` names it.',
  ICS_ERR_MALFORMED_MESSAGE: 'A message could not be decoded (bad envelope, bad body, or a limit exceeded).',
  ICS_ERR_MESSAGE_TOO_LARGE: 'An encoded message is larger than the maximum message size.',
  ICS_ERR_NOT_SERIALIZABLE: 'A value to send is not plain data (e.g. a Map, Date, class instance, function or BigInt).',
  ICS_ERR_SERVICE_EXISTS: 'A service with that channel and subservice (or name) is already registered.',
  ICS_ERR_UNKNOWN_CHANNEL: 'No channel with that name or number is defined on this node.',
  ICS_ERR_CLOSED: 'ICS on this node is closed.',
  ADMIN_ERR_UNAUTHORIZED: 'The admin request carried no bearer token, or the wrong one.',
  ADMIN_ERR_NOT_FOUND: 'The admin endpoint has no such route.',
  ADMIN_ERR_METHOD_NOT_ALLOWED: 'The admin route exists but not for this HTTP method.',
  ADMIN_ERR_BAD_REQUEST: 'The admin request is malformed: bad JSON, a missing or mistyped field, a bad query parameter.',
  ADMIN_ERR_BODY_TOO_LARGE: 'The admin request body is larger than the limit.',
  ADMIN_ERR_UNKNOWN_NODE: 'The node named in the admin request is not a member of the cluster.',
  ADMIN_ERR_TOO_MANY_WATCHERS: 'The admin endpoint already streams to as many watchers as it allows.',
  ADMIN_ERR_INTERNAL: 'The admin endpoint failed while serving the request.',
  ADMIN_ERR_UNREACHABLE: 'The admin endpoint could not be reached (connection refused, timeout, bad URL).',
  ADMIN_ERR_BAD_RESPONSE: 'The admin endpoint answered with something that is not the admin API.',
  CLMS_ERR_KEYSERVICE_HALTED: 'A critical key service has no eligible node left; the cluster is halted until one joins.',
  CLMS_ERR_ALREADY_STARTED: 'start() was called on a node that was started already (or closed).',
  CLMS_ERR_NOT_MEMBER: 'The node named is not a member of this node\'s history.',
  CLMS_ERR_NOT_MASTER: 'A change was asked of a node that is not (or no longer) the master; it was not committed.',
  CLMS_ERR_NO_QUORUM: 'No master committed the change: no quorum acknowledged it, or no master acknowledged the request in time.',
  CLMS_ERR_LEAVE_FAILED: 'leave() could not get this node\'s ShuttingDown committed; the node did not leave and is still a member.',
  CLMS_ERR_NOT_JOINED: 'start() gave up (its timeout or signal) before the node joined; `reasons` says what it was waiting for.',
  CLMS_ERR_CLOSED: 'The node closed before the awaited state was reached (e.g. whenUp()).',
  CLMS_ERR_INVALID_STATE: 'The operation is not allowed in the node\'s current phase (e.g. registerKeyService after the node joined).',
  TRANSPORT_ERR_INTEGRITY: 'An encrypted record failed authentication (altered, replayed, reordered or out of key sync); the link is closed.',
  CLMS_ERR_KEYSERVICE_UNKNOWN: 'No member announced a key service of that name, and the history never placed one.',
  ICS_ERR_PROTOCOL_VIOLATION: 'A peer broke the ICS protocol (more than the window granted, or a write backlog past the hard cap); its link was closed.',
  CLMS_ERR_DUPLICATE_NODE: 'Another live process has this node number: a member refused this incarnation because the one in its history still answers.',
  CLMS_ERR_KEYSERVICE_OTHER_HISTORY: 'A key service\'s host follows another cluster history than the caller: it refused the call, which did not run.',
} as const;

/** A code of core's own catalog. */
export type CoreErrorCode = keyof typeof ERROR_CODES;

/**
 * The extension point for packages built on core: a package declares its
 * own codes (in its own namespace, e.g. `DLM_ERR_…`) by augmenting this
 * interface, one key per code, and its error classes then extend
 * `ClusterInfraError` with their codes typed as `ErrorCode`, no cast:
 *
 * ```ts
 * declare module '@clusterinfra/core' {
 *   interface ErrorCodeExtensions extends Record<MyErrorCode, true> {}
 * }
 * ```
 *
 * Core's catalog (`ERROR_CODES`, docs/errors.md) keeps only core's codes;
 * a package keeps its own catalog and its own doc rows.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface ErrorCodeExtensions {}

/** Every code a `ClusterInfraError` can carry: core's, and those packages declared (`ErrorCodeExtensions`). */
export type ErrorCode = CoreErrorCode | (keyof ErrorCodeExtensions & string);

export interface ClusterInfraErrorOptions {
  cause?: unknown;
  retryable?: boolean;
}

/**
 * A brand shared by every copy of this package in a process (the ESM and the
 * CommonJS build, or two versions side by side): `Symbol.for` gives the same
 * symbol everywhere, so `instanceof` can recognise an error made by another
 * copy by the names of the classes it was made from.
 */
const ERROR_BRAND = Symbol.for('@clusterinfra/core.error');

export class ClusterInfraError extends Error {
  override readonly name: string = 'ClusterInfraError';
  readonly code: ErrorCode;
  readonly retryable: boolean;

  /**
   * `err instanceof NodeDownError` holds for a `NodeDownError` made by any
   * copy of `@clusterinfra/core`, not only this one.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    if (typeof value !== 'object' || value === null) return false;
    const kinds = (value as { [ERROR_BRAND]?: unknown })[ERROR_BRAND];
    return Array.isArray(kinds) && kinds.includes(this.name);
  }

  /** The names of the classes this error was made from, most derived first (see `Symbol.hasInstance`). */
  get [ERROR_BRAND](): string[] {
    const kinds: string[] = [];
    for (let proto = Object.getPrototypeOf(this) as object | null; proto !== null && proto !== Error.prototype; proto = Object.getPrototypeOf(proto) as object | null) {
      kinds.push((proto as { constructor: { name: string } }).constructor.name);
    }
    return kinds;
  }

  constructor(code: ErrorCode, message: string, options: ClusterInfraErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** True when `err` is a ClusterInfraError, optionally with the given code. */
export function isClusterInfraError(err: unknown, code?: ErrorCode): err is ClusterInfraError {
  return err instanceof ClusterInfraError && (code === undefined || err.code === code);
}

export class AbortedError extends ClusterInfraError {
  override readonly name = 'AbortedError';
  constructor(message = 'operation aborted', options: ClusterInfraErrorOptions = {}) {
    super('CORE_ERR_ABORTED', message, options);
  }
}

export class TimeoutError extends ClusterInfraError {
  override readonly name = 'TimeoutError';
  constructor(message = 'operation timed out', options: ClusterInfraErrorOptions = {}) {
    super('CORE_ERR_TIMEOUT', message, { retryable: true, ...options });
  }
}

export class InvalidOptionError extends ClusterInfraError {
  override readonly name = 'InvalidOptionError';
  /** Dotted path of the first offending option, e.g. `limits.maxFrameSize`. */
  readonly path: string;
  constructor(path: string, message: string) {
    super('CONFIG_ERR_INVALID_OPTION', message);
    this.path = path;
  }
}

export class ConnectionRefusedError extends ClusterInfraError {
  override readonly name = 'ConnectionRefusedError';
  constructor(address: string, options: ClusterInfraErrorOptions = {}) {
    super('TRANSPORT_ERR_CONNECTION_REFUSED', `connection refused by ${address}`, { retryable: true, ...options });
  }
}

export class ConnectTimeoutError extends ClusterInfraError {
  override readonly name = 'ConnectTimeoutError';
  constructor(address: string, timeoutMs: number) {
    super('TRANSPORT_ERR_CONNECT_TIMEOUT', `connect to ${address} timed out after ${timeoutMs} ms`, { retryable: true });
  }
}

export class HandshakeTimeoutError extends ClusterInfraError {
  override readonly name = 'HandshakeTimeoutError';
  constructor(address: string, timeoutMs: number) {
    super('TRANSPORT_ERR_HANDSHAKE_TIMEOUT', `handshake with ${address} timed out after ${timeoutMs} ms`, {
      retryable: true,
    });
  }
}

/**
 * Why a handshake was refused. The refusing side sends the reason so that
 * the other side can log it; neither side learns more than the reason.
 */
export type HandshakeRejectReason =
  | 'version' // no protocol version in common
  | 'cluster-name' // the peer belongs to another cluster
  | 'auth' // the proof of the shared secret (or the certificate) did not verify
  | 'identity' // the node number or incarnation is invalid, or is our own
  | 'policy' // the admission policy refused this node or address
  | 'busy' // too many pending handshakes
  | 'malformed'; // the handshake bytes were not understood

export const HANDSHAKE_REJECT_REASONS: readonly HandshakeRejectReason[] = [
  'version',
  'cluster-name',
  'auth',
  'identity',
  'policy',
  'busy',
  'malformed',
];

export class HandshakeRejectedError extends ClusterInfraError {
  override readonly name = 'HandshakeRejectedError';
  readonly reason: HandshakeRejectReason;
  /** `remote` when the peer refused us, `local` when we refused the peer. */
  readonly by: 'local' | 'remote';
  constructor(reason: HandshakeRejectReason, by: 'local' | 'remote', detail?: string) {
    super(
      'TRANSPORT_ERR_HANDSHAKE_REJECTED',
      `handshake rejected by ${by} side: ${reason}${detail ? ` (${detail})` : ''}`,
      { retryable: reason === 'busy' },
    );
    this.reason = reason;
    this.by = by;
  }
}

export class LinkClosedError extends ClusterInfraError {
  override readonly name = 'LinkClosedError';
  constructor(message = 'link is closed', options: ClusterInfraErrorOptions = {}) {
    super('TRANSPORT_ERR_LINK_CLOSED', message, { retryable: true, ...options });
  }
}

export class LinkResetError extends ClusterInfraError {
  override readonly name = 'LinkResetError';
  constructor(message = 'link reset by peer or network', options: ClusterInfraErrorOptions = {}) {
    super('TRANSPORT_ERR_LINK_RESET', message, { retryable: true, ...options });
  }
}

export class FrameTooLargeError extends ClusterInfraError {
  override readonly name = 'FrameTooLargeError';
  readonly size: number;
  readonly max: number;
  constructor(size: number, max: number) {
    super('TRANSPORT_ERR_FRAME_TOO_LARGE', `frame of ${size} bytes exceeds the maximum of ${max} bytes`);
    this.size = size;
    this.max = max;
  }
}

export class MalformedFrameError extends ClusterInfraError {
  override readonly name = 'MalformedFrameError';
  constructor(message: string) {
    super('TRANSPORT_ERR_MALFORMED_FRAME', message);
  }
}

export class FrameDeadlineError extends ClusterInfraError {
  override readonly name = 'FrameDeadlineError';
  constructor(deadlineMs: number) {
    super('TRANSPORT_ERR_FRAME_DEADLINE', `a started frame was not completed within ${deadlineMs} ms`);
  }
}

export class TooManyPendingError extends ClusterInfraError {
  override readonly name = 'TooManyPendingError';
  constructor(message: string) {
    super('TRANSPORT_ERR_TOO_MANY_PENDING', message, { retryable: true });
  }
}

export class AddressInUseError extends ClusterInfraError {
  override readonly name = 'AddressInUseError';
  constructor(address: string, options: ClusterInfraErrorOptions = {}) {
    super('TRANSPORT_ERR_ADDRESS_IN_USE', `address ${address} is already in use`, options);
  }
}

export class InvalidAddressError extends ClusterInfraError {
  override readonly name = 'InvalidAddressError';
  constructor(address: string, why: string) {
    super('TRANSPORT_ERR_INVALID_ADDRESS', `invalid address ${JSON.stringify(address)}: ${why}`);
  }
}

export class TransportClosedError extends ClusterInfraError {
  override readonly name = 'TransportClosedError';
  constructor() {
    super('TRANSPORT_ERR_TRANSPORT_CLOSED', 'transport is closed');
  }
}

export class TlsError extends ClusterInfraError {
  override readonly name = 'TlsError';
  constructor(message: string, options: ClusterInfraErrorOptions = {}) {
    super('TRANSPORT_ERR_TLS', message, options);
  }
}

export class IntegrityError extends ClusterInfraError {
  override readonly name = 'IntegrityError';
  constructor(message: string) {
    super('TRANSPORT_ERR_INTEGRITY', message);
  }
}

// ---------------------------------------------------------------- ICS

/** Whether a message to a node that went down may have been acted on there. */
export type NodeDownSent = 'never-sent' | 'may-have-run';

export class NodeDownError extends ClusterInfraError {
  override readonly name = 'NodeDownError';
  readonly node: number;
  readonly sent: NodeDownSent;
  constructor(node: number, sent: NodeDownSent, options: ClusterInfraErrorOptions = {}) {
    super('ICS_ERR_NODE_DOWN', `node ${node} is down (${sent === 'never-sent' ? 'message never sent' : 'message may have run'})`, {
      retryable: sent === 'never-sent',
      ...options,
    });
    this.node = node;
    this.sent = sent;
  }
}

export class UnavailableError extends ClusterInfraError {
  override readonly name = 'UnavailableError';
  /** True when the request was handed to a link that then broke: it may have run. */
  readonly mayHaveRun: boolean;
  constructor(message: string, options: ClusterInfraErrorOptions & { mayHaveRun?: boolean } = {}) {
    super('ICS_ERR_UNAVAILABLE', message, { retryable: true, ...options });
    this.mayHaveRun = options.mayHaveRun ?? false;
  }
}

export class NotFoundError extends ClusterInfraError {
  override readonly name = 'NotFoundError';
  constructor(message: string, options: ClusterInfraErrorOptions = {}) {
    super('ICS_ERR_NOT_FOUND', message, options);
  }
}

export class InvalidArgumentError extends ClusterInfraError {
  override readonly name = 'InvalidArgumentError';
  /** Plain-data description of what failed validation (e.g. zod issues). */
  readonly details: unknown;
  constructor(message: string, options: ClusterInfraErrorOptions & { details?: unknown } = {}) {
    super('ICS_ERR_INVALID_ARGUMENT', message, options);
    this.details = options.details;
  }
}

export class DeadlineExceededError extends ClusterInfraError {
  override readonly name = 'DeadlineExceededError';
  constructor(message = 'deadline exceeded', options: ClusterInfraErrorOptions = {}) {
    super('ICS_ERR_DEADLINE_EXCEEDED', message, { retryable: true, ...options });
  }
}

export class CancelledError extends ClusterInfraError {
  override readonly name = 'CancelledError';
  constructor(message = 'cancelled', options: ClusterInfraErrorOptions = {}) {
    super('ICS_ERR_CANCELLED', message, options);
  }
}

export class ResourceExhaustedError extends ClusterInfraError {
  override readonly name = 'ResourceExhaustedError';
  constructor(message: string, options: ClusterInfraErrorOptions = {}) {
    super('ICS_ERR_RESOURCE_EXHAUSTED', message, { retryable: true, ...options });
  }
}

export class RemoteInternalError extends ClusterInfraError {
  override readonly name = 'RemoteInternalError';
  constructor(message: string, options: ClusterInfraErrorOptions = {}) {
    super('ICS_ERR_INTERNAL', message, options);
  }
}

export class RemoteError extends ClusterInfraError {
  override readonly name = 'RemoteError';
  /** The wire status name the serving node answered with, e.g. `FAILED_PRECONDITION`. */
  readonly status: string;
  readonly details: unknown;
  constructor(status: string, message: string, options: ClusterInfraErrorOptions & { details?: unknown } = {}) {
    super('ICS_ERR_REMOTE', message, options);
    this.status = status;
    this.details = options.details;
  }
}

export class MalformedMessageError extends ClusterInfraError {
  override readonly name = 'MalformedMessageError';
  constructor(message: string, options: ClusterInfraErrorOptions = {}) {
    super('ICS_ERR_MALFORMED_MESSAGE', message, options);
  }
}

export class MessageTooLargeError extends ClusterInfraError {
  override readonly name = 'MessageTooLargeError';
  constructor(size: number, max: number) {
    super('ICS_ERR_MESSAGE_TOO_LARGE', `message of ${size} bytes exceeds the maximum of ${max} bytes`);
  }
}

export class NotSerializableError extends ClusterInfraError {
  override readonly name = 'NotSerializableError';
  constructor(message: string, options: ClusterInfraErrorOptions = {}) {
    super('ICS_ERR_NOT_SERIALIZABLE', message, options);
  }
}

export class ServiceExistsError extends ClusterInfraError {
  override readonly name = 'ServiceExistsError';
  constructor(message: string) {
    super('ICS_ERR_SERVICE_EXISTS', message);
  }
}

export class UnknownChannelError extends ClusterInfraError {
  override readonly name = 'UnknownChannelError';
  constructor(channel: string | number) {
    super('ICS_ERR_UNKNOWN_CHANNEL', `no channel ${JSON.stringify(channel)} is defined`);
  }
}

export class IcsClosedError extends ClusterInfraError {
  override readonly name = 'IcsClosedError';
  constructor() {
    super('ICS_ERR_CLOSED', 'ICS is closed on this node');
  }
}

export class ProtocolViolationError extends ClusterInfraError {
  override readonly name = 'ProtocolViolationError';
  constructor(message: string) {
    super('ICS_ERR_PROTOCOL_VIOLATION', message);
  }
}

export class KeyServiceHaltedError extends ClusterInfraError {
  override readonly name = 'KeyServiceHaltedError';
  readonly keyService: string;
  readonly reason: string;
  constructor(keyService: string, reason: string) {
    super('CLMS_ERR_KEYSERVICE_HALTED', `key service ${keyService} is halted: ${reason}`);
    this.keyService = keyService;
    this.reason = reason;
  }
}

export class LeaveFailedError extends ClusterInfraError {
  override readonly name = 'LeaveFailedError';
  constructor(message: string, options: ClusterInfraErrorOptions = {}) {
    super('CLMS_ERR_LEAVE_FAILED', message, { retryable: true, ...options });
  }
}

export class NotJoinedError extends ClusterInfraError {
  override readonly name = 'NotJoinedError';
  /** What the node was waiting for when start() gave up, newest last (the `joining` event's reasons). */
  readonly reasons: readonly string[];
  constructor(message: string, options: ClusterInfraErrorOptions & { reasons?: readonly string[] } = {}) {
    const reasons = options.reasons ?? [];
    super('CLMS_ERR_NOT_JOINED', reasons.length > 0 ? `${message}: ${reasons.join('; ')}` : message, { retryable: true, ...(options.cause === undefined ? {} : { cause: options.cause }) });
    this.reasons = [...reasons];
  }
}

export class NodeClosedError extends ClusterInfraError {
  override readonly name = 'NodeClosedError';
  constructor(message = 'the node closed', options: ClusterInfraErrorOptions = {}) {
    super('CLMS_ERR_CLOSED', message, options);
  }
}

export class InvalidStateError extends ClusterInfraError {
  override readonly name = 'InvalidStateError';
  constructor(message: string, options: ClusterInfraErrorOptions = {}) {
    super('CLMS_ERR_INVALID_STATE', message, options);
  }
}

export class UnknownKeyServiceError extends ClusterInfraError {
  override readonly name = 'UnknownKeyServiceError';
  readonly keyService: string;
  constructor(keyService: string) {
    super('CLMS_ERR_KEYSERVICE_UNKNOWN', `no member announced key service ${JSON.stringify(keyService)}: check the name, or that a node registering it has joined`);
    this.keyService = keyService;
  }
}

/**
 * A key-service call reached a host that follows another cluster history
 * than the caller (a re-formed cluster, where epochs start again), or the
 * caller follows none: the host refused it and the method did not run.
 * `callKeyService` waits (within its deadline) for the caller's view to
 * change and tries again; this is what it rejects with when the deadline
 * passes first. `host`: the node that refused; `callerHistory`,
 * `hostHistory`: the two `historyId`s (null: none).
 */
export class KeyServiceHistoryError extends ClusterInfraError {
  override readonly name = 'KeyServiceHistoryError';
  readonly keyService: string;
  readonly host: number;
  readonly callerHistory: string | null;
  readonly hostHistory: string | null;
  constructor(keyService: string, host: number, callerHistory: string | null, hostHistory: string | null) {
    super(
      'CLMS_ERR_KEYSERVICE_OTHER_HISTORY',
      `key service ${keyService}: node ${host} follows cluster history ${hostHistory ?? 'none'}, this node ${callerHistory ?? 'none'}; the call was refused and did not run`,
      { retryable: true },
    );
    this.keyService = keyService;
    this.host = host;
    this.callerHistory = callerHistory;
    this.hostHistory = hostHistory;
  }
}

export class AlreadyStartedError extends ClusterInfraError {
  override readonly name = 'AlreadyStartedError';
  constructor(message = 'start() was called twice') {
    super('CLMS_ERR_ALREADY_STARTED', message);
  }
}

export class NotAMemberError extends ClusterInfraError {
  override readonly name = 'NotAMemberError';
  readonly node: number;
  constructor(node: number, message = `node ${node} is not a member`) {
    super('CLMS_ERR_NOT_MEMBER', message);
    this.node = node;
  }
}

/**
 * Another process runs with this node number: a member refused this
 * incarnation's link because the incarnation its history holds for the
 * number still answers. `node`: the number; `refusedBy`: the member that said so.
 */
export class DuplicateNodeError extends ClusterInfraError {
  override readonly name = 'DuplicateNodeError';
  readonly node: number;
  readonly refusedBy: number;
  constructor(node: number, refusedBy: number) {
    super('CLMS_ERR_DUPLICATE_NODE', `node number ${node} is in use by another live process: node ${refusedBy} refused this incarnation (give every process its own nodeNum)`);
    this.node = node;
    this.refusedBy = refusedBy;
  }
}

export class NotMasterError extends ClusterInfraError {
  override readonly name = 'NotMasterError';
  constructor(message = 'not the master', options: ClusterInfraErrorOptions = {}) {
    super('CLMS_ERR_NOT_MASTER', message, { retryable: true, ...options });
  }
}

export class NoQuorumError extends ClusterInfraError {
  override readonly name = 'NoQuorumError';
  constructor(message: string, options: ClusterInfraErrorOptions = {}) {
    super('CLMS_ERR_NO_QUORUM', message, { retryable: true, ...options });
  }
}
