/**
 * The two ways the ICS wire codec fails. Both are data: a stable `code`,
 * a machine-readable `reason` or `path`, and a message that never quotes
 * the offending bytes (they come from an untrusted peer and may be huge).
 *
 * They refine the catalog's classes, so code that catches
 * MalformedMessageError (ICS_ERR_MALFORMED_MESSAGE) or NotSerializableError
 * (ICS_ERR_NOT_SERIALIZABLE) catches them too; `name` stays the parent's.
 */
import { type ClusterInfraErrorOptions, MalformedMessageError, NotSerializableError } from '../../errors/index.js';

/** Why a frame or body was refused. Append only: tests and metrics key on these. */
export type IcsDecodeReason =
  /** The input ended inside a header, a field or a value. */
  | 'truncated'
  /** Bytes remain after the frame's last field or the body's single value. */
  | 'trailing-bytes'
  /** A declared array/map/str/bin/ext length cannot fit in the bytes that remain. */
  | 'length'
  /** Arrays/maps nested deeper than `maxDepth`. */
  | 'depth'
  /** More array items + map entries than `maxElements`. */
  | 'elements'
  /** A string longer than `maxStringBytes`. */
  | 'string-length'
  /** A string (value, map key or method name) is not well-formed UTF-8. */
  | 'utf8'
  /** A map key that is not a string, or is `__proto__`, `constructor` or `prototype`. */
  | 'key'
  /** An extension type that is neither BulkRef nor allowed, or a malformed BulkRef. */
  | 'extension'
  /** More BulkRef extensions than `maxBulkRefs`. */
  | 'bulk-refs'
  /** A 64-bit integer outside the safe-integer range (|n| > 2^53 - 1). */
  | 'integer'
  /** A byte that is not a msgpack type (0xc1). */
  | 'token'
  /** The first byte is not a known frame type. */
  | 'frame-type'
  /** An envelope field is out of range (status, channel/service, id, method, flags, error body). */
  | 'field'
  /** msgpackr refused bytes the pre-scan passed; only possible through an allowed extension. */
  | 'unreadable';

/** The peer sent bytes that are not a valid ICS frame or body; nothing was built from them. */
export class IcsDecodeError extends MalformedMessageError {
  readonly reason: IcsDecodeReason;
  /** Byte offset (within the decoded buffer) where the problem was found. */
  readonly offset: number;
  constructor(reason: IcsDecodeReason, offset: number, message: string, options: ClusterInfraErrorOptions = {}) {
    super(`${message} (at byte ${offset})`, options);
    this.reason = reason;
    this.offset = offset;
  }
}

/**
 * A value or a frame field cannot go on the wire: the body holds something
 * that is not plain data (Map, Date, class instance, function, symbol,
 * BigInt, undefined outside an object property, a lone surrogate, a cycle or
 * nesting beyond the depth limit), or an envelope field is out of range.
 * Raised on the sending side so that the mistake surfaces where it was made.
 */
export class IcsEncodeError extends NotSerializableError {
  /** Where in the frame the bad value sits, e.g. `body.args[2].when` or `channel`. */
  readonly path: string;
  constructor(path: string, message: string) {
    super(`${path}: ${message}`);
    this.path = path;
  }
}
