/** Public types of the ICS runtime. */
import type { NodeIdentity, RejectedConnection } from '../contracts/transport.js';
import type { PoolConfig } from './options.js';

/** What a handler is given besides its arguments. */
export interface HandlerContext {
  /** The calling node and its incarnation. */
  readonly caller: { readonly nodeNum: number; readonly incarnation: number };
  readonly service: string;
  readonly method: string;
  /** Aborts when the caller cancels, the deadline passes, or the caller goes down. */
  readonly signal: AbortSignal;
  /** Absolute deadline on this node's clock, when the caller gave one. */
  readonly deadline: number | undefined;
  /** True when the message arrived on a priority lane. */
  readonly priority: boolean;
  /** True for one-way messages (nobody waits for the result). */
  readonly oneWay: boolean;
  /** The headers the Request carried (`CallOptions.headers`, a tracer's), if any. */
  readonly headers?: Readonly<Record<string, string>> | undefined;
}

export type Handler = (args: unknown, ctx: HandlerContext) => unknown;

export interface ServiceRegistration {
  /** Channel name (built-in `default`, `clms`, … or a user channel). @default 'default' */
  channel?: string;
  /** Subservice number within the channel, 0–65535. */
  subservice: number;
  /** A readable name, unique per node. */
  name: string;
  handlers: Record<string, Handler>;
  pool?: PoolConfig;
}

export interface RegisteredService {
  readonly id: number;
  readonly name: string;
  readonly channel: number;
  readonly subservice: number;
  /** Stop serving: new messages get NOT_FOUND; running handlers finish. */
  unregister(): void;
}

/** Per-call options. */
export interface CallOptions {
  signal?: AbortSignal;
  /** Overrides the default deadline. Inside a handler the earlier of this and the handler's deadline applies. */
  timeoutMs?: number;
  /**
   * Carried to the serving node in the Request's header field, next to a
   * tracer's (these win on a shared key), and given to the handler as
   * `ctx.headers`. Within the header limits (docs/ics.md, Tracing calls);
   * outside them the call fails with `ICS_ERR_NOT_SERIALIZABLE`.
   */
  headers?: Readonly<Record<string, string>>;
}

/** Addresses a service: its id, or its channel name and subservice. */
export type ServiceAddress = number | { channel: string; subservice: number };

/** An asynchronous request: the call is under way; wait for it when you choose. */
export interface RequestHandle<T = unknown> {
  readonly node: number;
  /** Settles with the result or the typed error; never rejects unhandled if you don't await it. */
  result(): Promise<T>;
  /** Cancel the call; the serving node's handler is aborted. */
  cancel(reason?: unknown): void;
  readonly settled: boolean;
}

/** How one client call ended, for observers (`Ics.observeCalls`): the raw material of RPC metrics. */
export interface CallRecord {
  /** The node called. */
  readonly node: number;
  /** The called service's channel name (or number, when this node does not know it) and subservice. */
  readonly channel: string;
  readonly subservice: number;
  readonly method: string;
  /** `OK`, or the error's `code` (e.g. `ICS_ERR_DEADLINE_EXCEEDED`); `UNKNOWN` for an error without one. */
  readonly status: string;
  /** Milliseconds from the call to its settling, on this node's clock. */
  readonly durationMs: number;
}

export type CallObserver = (record: CallRecord) => void;

export type Settled<T> = { ok: true; value: T } | { ok: false; error: Error };

export interface MulticastOptions extends CallOptions {
  /** Resolve when the first call succeeds, a majority has, or all have settled. @default 'all' */
  until?: 'first' | 'majority' | 'all';
}

export interface MulticastResult<T = unknown> {
  /** Per node: the value or the error, for every call settled so far. */
  results: Map<number, Settled<T>>;
  /** Whether enough calls succeeded: one for 'first', a majority for 'majority', every one for 'all'. */
  satisfied: boolean;
}

export interface LinkEventInfo {
  node: number;
  incarnation: number;
  state: 'up' | 'down';
  reason?: string;
}

/** Why a node refused our link (the `refused` event). */
export type RefusedReasonName = 'incarnation-down' | 'newer-incarnation' | 'node-number-in-use';

export interface IcsEvents {
  /** A link to a node came up or went down. */
  link: (info: LinkEventInfo) => void;
  /** A channel to a node ran out of credit (`throttled: true`) or got it back. */
  throttle: (info: { node: number; channel: number; throttled: boolean }) => void;
  /** The send queue of a channel to a node emptied after `trySend` returned false. */
  drain: (info: { node: number; channel: number }) => void;
  /** A message was dropped: from an old incarnation, for an unknown one-way target, a duplicate, undecodable… */
  drop: (info: { node: number; reason: string }) => void;
  /** A node with a newer incarnation appeared: its former incarnation is certainly gone. */
  incarnation: (info: { node: number; previous: number; current: number }) => void;
  /**
   * `node` refused our link and said why: it declared this incarnation of
   * ours down (`incarnation-down`), it knows a newer incarnation of our
   * node number (`newer-incarnation`), or another incarnation of our node
   * number is alive there (`node-number-in-use`: see `admitIncarnation`).
   * The link closes next.
   */
  refused: (info: { node: number; incarnation: number; reason: RefusedReasonName }) => void;
  /** The listener refused a connection during its handshake (wrong secret, cluster name, identity, limits). */
  rejected: (info: RejectedConnection) => void;
}

export interface IcsStats {
  callsStarted: number;
  callsSucceeded: number;
  callsFailed: number;
  messagesSent: number;
  messagesReceived: number;
  requestsServed: number;
  dropped: number;
  throttleEvents: number;
  pendingCalls: number;
  queuedMessages: number;
  reconnects: number;
  /** Out-of-line bytes handed to links. */
  bulkBytesSent: number;
  /** Out-of-line bytes received. */
  bulkBytesReceived: number;
  /** Bytes currently charged for out-of-line values still arriving (all peers; each value costs at least `bulkStreamCost`). */
  bulkBytesPending: number;
  /** Out-of-line values still arriving or not yet delivered (all peers). */
  bulkStreamsPending: number;
  /** Peers this endpoint keeps state for (links, calls, work); idle ones are forgotten. */
  peers: number;
  /** One-way messages accepted by `trySend` and dropped before they reached a link (each one also logged). */
  oneWayDropped: number;
  /** Bytes of messages from peers held for serving now (queued, held or running), all peers; bounded by `receiveBudgetTotal`. */
  receivedBytesHeld: number;
  /** Links closed because the peer broke the protocol: more than the window granted, or a write backlog past `linkMaxBacklog`. */
  linksClosedForViolation: number;
}

export type { NodeIdentity };

/** How a traced call or served request ended (`CallTracer`). */
export interface TraceOutcome {
  /** `OK`, or the error's `code` (`UNKNOWN` for an error without one). */
  readonly status: string;
  /** The error, when it failed. */
  readonly error?: Error;
}

/** A client call the tracer was told of (`CallTracer.onCall`). */
export interface TracedCall {
  /** The node called. */
  readonly node: number;
  /** The service's channel name (or number, when this node does not know it) and subservice. */
  readonly channel: string;
  readonly subservice: number;
  readonly method: string;
}

/** A request about to run its handler here (`CallTracer.onServe`). */
export interface ServedCall {
  /** The calling node (this node itself for a call to itself). */
  readonly caller: number;
  /** The registered service's name, its channel name and subservice. */
  readonly service: string;
  readonly channel: string;
  readonly subservice: number;
  readonly method: string;
}

/** What a tracer keeps for one client call. */
export interface CallTrace {
  /** Carried to the serving node in the Request's header field (at most 16 entries of ASCII; see docs/protocol.md). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Called once, when the call settles. */
  end(outcome: TraceOutcome): void;
}

/** What a tracer keeps for one served request. */
export interface ServeTrace {
  /** Runs the handler (e.g. inside the span's context), returning what `fn` returns. */
  run?<T>(fn: () => T): T;
  /** Called once, when the handler finished (before the Response is sent). */
  end(outcome: TraceOutcome): void;
}

/**
 * Call-tracing hooks (`Ics.instrument`): the seam an OpenTelemetry adapter
 * plugs into without core depending on it. Both run synchronously on the
 * call's path (`onCall` in the caller's async context), so they must be
 * cheap; one that throws is ignored (the call goes on untraced). One-way
 * messages are not traced.
 */
export interface CallTracer {
  /** A Request is about to be built: return its headers and how to end it, or undefined. */
  onCall?(call: TracedCall): CallTrace | undefined;
  /** A Request is about to run its handler; `headers` are the ones it carried (undefined: none). */
  onServe?(call: ServedCall, headers: Readonly<Record<string, string>> | undefined): ServeTrace | undefined;
}
