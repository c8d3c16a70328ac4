/**
 * ICS wire frames: what one transport frame carries between two nodes.
 *
 * The envelope (type, channel, service, ids, flags) is a fixed binary
 * layout read by hand; only the body is msgpack, and only after the
 * transport authenticated the peer. Frame type numbers are append-only:
 * never renumber or reuse one. `docs/protocol.md` has the table.
 */

/** Frame types. Append only. */
export const FrameType = {
  /** A call that expects a Response (sync RPC and async request/response). */
  Request: 1,
  /** The answer to a Request, matched by `id`. */
  Response: 2,
  /** A one-way message: no Response. */
  OneWay: 3,
  /** The caller gave up on Request `id` (abort or deadline): abort the handler. */
  Cancel: 4,
  /** The receiver returns flow-control credit for a channel. */
  Credit: 5,
  /** A piece of an out-of-line bulk value. */
  BulkChunk: 6,
  /** The sender abandons a bulk stream (its message failed or was cancelled). */
  BulkAbort: 7,
  /** The sender refuses this link (it closes next) and says why: see `RefusedReason`. Added in ICS 1.1. */
  Refused: 8,
} as const;

/**
 * Why a node refused a link, told to the refused side before the link closes,
 * so that it learns what it cannot learn otherwise: the others stopped
 * talking to this incarnation of it. Append only.
 */
export const RefusedReason = {
  /** This incarnation of yours was declared down here (its GoingDown or ShuttingDown was applied). */
  IncarnationDown: 1,
  /** A newer incarnation of your node number is known here. */
  NewerIncarnation: 2,
  /** Your node number is in use here by a live incarnation (it answered when asked): two processes were given one number. */
  NodeNumberInUse: 3,
} as const;
export type RefusedReasonCode = (typeof RefusedReason)[keyof typeof RefusedReason];
export type FrameTypeNumber = (typeof FrameType)[keyof typeof FrameType];

/**
 * Wire status codes: a small closed set, separate from local error
 * classes. Numbers follow gRPC's where the meaning is the same. Append only.
 */
export const WireStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;
export type WireStatusName = keyof typeof WireStatus;
export type WireStatusCode = (typeof WireStatus)[WireStatusName];

/**
 * Where a bulk value was taken out of a body. In the encoded body it is a
 * msgpack extension (type `BULK_EXT_TYPE`) holding the stream number; the
 * codec turns it back into a `BulkRef` on decode.
 */
export class BulkRef {
  constructor(
    /** Stream number, unique per sending link direction. */
    readonly stream: number,
    /** Total byte length of the value. */
    readonly length: number,
  ) {}
}

/** The msgpack extension type number that marks a BulkRef. */
export const BULK_EXT_TYPE = 0x42;

interface Addressed {
  /** Channel number (0–65535) the message travels on. */
  channel: number;
  /** Service id: (channel << 16) | subservice, as ICS_NSC_SVC in the seeds. */
  service: number;
  /** Method name (UTF-8, at most 255 bytes). */
  method: string;
  /** Raised priority: the message was sent from inside a handler. */
  priority: boolean;
  /** The decoded body (arguments). May contain BulkRef values. */
  body: unknown;
}

export interface RequestFrame extends Addressed {
  type: typeof FrameType.Request;
  /** Request id, unique per sending link direction, 1..2^32-1. */
  id: number;
  /** Milliseconds the caller will still wait, 0 = no deadline. */
  timeoutMs: number;
  /**
   * Call headers (trace context): a small map of ASCII strings, see
   * `HEADER_LIMITS`. Absent or empty: the frame's bytes are those of a
   * Request without the field (flag bit 1 clear).
   */
  headers?: Readonly<Record<string, string>>;
}

export interface OneWayFrame extends Addressed {
  type: typeof FrameType.OneWay;
  /** Message id, unique per sending link direction, 1..2^32-1: receivers drop duplicates. */
  id: number;
}

export interface ResponseFrame {
  type: typeof FrameType.Response;
  id: number;
  status: WireStatusCode;
  /** On OK: the result. Otherwise: `{ message: string, details?: plain data }`; never a stack trace. */
  body: unknown;
}

export interface CancelFrame {
  type: typeof FrameType.Cancel;
  id: number;
  /** Why the caller gave up. */
  status: typeof WireStatus.CANCELLED | typeof WireStatus.DEADLINE_EXCEEDED;
}

export interface CreditFrame {
  type: typeof FrameType.Credit;
  channel: number;
  /** Messages the sender may send beyond what it already could. */
  messages: number;
  /** Bytes likewise. */
  bytes: number;
}

export interface BulkChunkFrame {
  type: typeof FrameType.BulkChunk;
  stream: number;
  /** Byte offset of `data` within the value. */
  offset: number;
  /** True on the final chunk. */
  last: boolean;
  data: Uint8Array;
}

export interface BulkAbortFrame {
  type: typeof FrameType.BulkAbort;
  stream: number;
}

export interface RefusedFrame {
  type: typeof FrameType.Refused;
  reason: RefusedReasonCode;
}

export type IcsFrame =
  | RefusedFrame
  | RequestFrame
  | ResponseFrame
  | OneWayFrame
  | CancelFrame
  | CreditFrame
  | BulkChunkFrame
  | BulkAbortFrame;

/** Limits applied while decoding, before anything is allocated for a value. */
export interface DecodeLimits {
  /** Deepest nesting of arrays/maps. @default 32 */
  maxDepth: number;
  /** Most elements (array items + map entries) in one body. @default 1_000_000 */
  maxElements: number;
  /** Longest string, in bytes. @default 16 MiB */
  maxStringBytes: number;
  /** Extension types a body may carry besides BulkRef. @default none */
  allowedExtensions: readonly number[];
  /** Most out-of-line references (BulkRef) in one body. @default 1024 */
  maxBulkRefs: number;
}
