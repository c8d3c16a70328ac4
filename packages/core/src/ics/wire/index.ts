/**
 * The ICS wire codec: frame envelopes and msgpack bodies. This file is the
 * layer's only door; everything public is named here.
 */
export {
  BULK_EXT_TYPE,
  BulkRef,
  FrameType,
  RefusedReason,
  type RefusedFrame,
  type RefusedReasonCode,
  WireStatus,
  type BulkAbortFrame,
  type BulkChunkFrame,
  type CancelFrame,
  type CreditFrame,
  type DecodeLimits,
  type FrameTypeNumber,
  type IcsFrame,
  type OneWayFrame,
  type RequestFrame,
  type ResponseFrame,
  type WireStatusCode,
  type WireStatusName,
} from './types.js';
export { DEFAULT_DECODE_LIMITS, HEADER_LIMITS, MAX_DEPTH_LIMIT, MAX_METHOD_BYTES } from './constants.js';
export { decodeBody, encodeBody, Encoded, encodeOnce, resolveDecodeLimits, type EncodeOptions } from './codec.js';
export { decodeFrame, type DecodedFrame, encodeBulkChunkHeader, encodeFrame, FRAME_HEADER_BYTES } from './frame.js';
export { IcsDecodeError, IcsEncodeError, type IcsDecodeReason } from './errors.js';
