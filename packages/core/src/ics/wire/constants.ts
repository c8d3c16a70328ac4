/**
 * Defaults and fixed sizes of the ICS wire codec, in one place.
 */
import type { DecodeLimits } from './types.js';

/**
 * Limits applied to every decoded body unless the caller passes others
 * (TESTING.md, "Default limits"). Frozen: callers merge, never mutate.
 */
export const DEFAULT_DECODE_LIMITS: Readonly<DecodeLimits> = Object.freeze({
  maxDepth: 32,
  maxElements: 1_000_000,
  maxStringBytes: 16 * 1024 * 1024,
  allowedExtensions: Object.freeze([]) as readonly number[],
  maxBulkRefs: 1024,
});

/**
 * Payload of the BulkRef extension: u32 stream, u64 length, big-endian.
 * Always written as ext 8 (`c7 0c 42 …`), 15 bytes in all.
 */
export const BULK_REF_PAYLOAD_BYTES = 12;

/** Longest method name, in UTF-8 bytes (its length travels in one byte). */
export const MAX_METHOD_BYTES = 255;

/**
 * Extension types msgpackr's decoder interprets as changing the msgpack
 * grammar itself (record definitions, string bundles, structured-clone
 * references, and the tag extensions Error/Set/RegExp that consume the
 * *following* value). The pre-scan could not vouch for bytes read under
 * those rules (an allowed extension is handed to msgpackr alone), so they
 * can never be put in `allowedExtensions`.
 */
export const FORBIDDEN_EXTENSIONS: readonly number[] = Object.freeze([
  0x62, // 'b' bundled strings
  0x65, // 'e' Error (reads the next value)
  0x69, // 'i' structured-clone id
  0x70, // 'p' structured-clone pointer
  0x72, // 'r' record definition
  0x73, // 's' Set (reads the next value)
  0x78, // 'x' RegExp (reads the next value)
]);

/**
 * Highest `maxDepth` a caller may configure. The decoder and the encoder
 * recurse once per level, and a recursive msgpack reader runs out of stack
 * somewhere between 2,000 and 5,000 levels on Node 20's default stack.
 * 1,000 leaves a wide margin.
 */
export const MAX_DEPTH_LIMIT = 1000;

/**
 * Bounds of a Request's headers (flag bit 1), checked on both sides before
 * anything is built: W3C `traceparent` (55 bytes), `tracestate` (at most 512)
 * and a modest `baggage` fit; a peer cannot make a header block cost more
 * than `maxBlockBytes`. Keys are 1..`maxKeyBytes` of `a-z 0-9 - _ .`, unique,
 * never `__proto__`, `constructor` or `prototype`; values are
 * 0..`maxValueBytes` of printable ASCII (0x20..0x7e).
 */
export const HEADER_LIMITS = Object.freeze({
  maxEntries: 16,
  maxKeyBytes: 64,
  maxValueBytes: 1024,
  /** The block after its u16 length: count byte and entries. */
  maxBlockBytes: 4096,
});
