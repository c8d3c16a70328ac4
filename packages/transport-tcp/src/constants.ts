/**
 * Defaults and wire constants of the TCP transport, in one place.
 *
 * Wire numbers (control types, reject codes, protocol versions) are
 * append-only: a number, once shipped, keeps its meaning forever and is
 * never reused. docs/protocol.md (Transport handshake) has the table with
 * the version that added each.
 */
import type { HandshakeRejectReason } from '@clusterinfra/core';

const MiB = 1024 * 1024;

/** Option defaults; `TcpOptions` documents each one. */
export const DEFAULTS = {
  host: '127.0.0.1',
  port: 0,
  maxFrameSize: MiB,
  highWaterMark: 2 * MiB,
  connectTimeoutMs: 3_000,
  handshakeTimeoutMs: 5_000,
  frameDeadlineMs: 30_000,
  closeTimeoutMs: 5_000,
  silentTimeoutMs: 1_000,
  maxPendingHandshakes: 64,
  maxPendingPerAddress: 8,
  pendingReservedForKnown: 16,
  noDelay: true,
  encrypt: true,
  rekeyAfterBytes: 2 ** 32,
} as const;

/** A pre-shared secret shorter than this is refused: a short secret falls to offline guessing. */
export const MIN_SECRET_BYTES = 16;
/** Keys in a keyring (the primary and the ones still accepted), at most. Each costs one HMAC per handshake. */
export const MAX_KEYRING_KEYS = 8;
/** Source addresses remembered as known members (they authenticated once), at most. */
export const MAX_KNOWN_ADDRESSES = 4096;

/** The frame header is 4 bytes: bit 31 marks a control frame, bits 0..30 hold the length. */
export const HEADER_SIZE = 4;
export const CONTROL_BIT = 0x8000_0000;
export const LENGTH_MASK = 0x7fff_ffff;
/** Largest length the 31-bit header field can carry. */
export const MAX_WIRE_LENGTH = LENGTH_MASK;

/** Every control frame (type byte + body), handshake messages included, fits in this. */
export const MAX_CONTROL_SIZE = 1024;

/** First bytes of HELLO and WELCOME/WELCOME2: "CITP", ClusterInfra transport protocol. */
export const MAGIC = Uint8Array.of(0x43, 0x49, 0x54, 0x50);

/** Protocol versions this build speaks. The handshake picks the highest common one. */
export const PROTOCOL_VERSION_MIN = 2;
export const PROTOCOL_VERSION_MAX = 3;
// Version 3 differs from 2 only in the largest record (RECORD_MAX_PLAINTEXT_V3); the key schedule and its labels are v2's.
// Version 1 is retired: its server proved first (offline guessing from one HELLO) and frames were not encrypted.

export const NONCE_SIZE = 32;
export const PROOF_SIZE = 32;

/** Control frame types. Append-only: never renumber, never reuse. */
export const ControlType = {
  /** v1+, client → server: first handshake message (same layout in every version). */
  HELLO: 1,
  /** v1 only (retired): server → client, the server's identity and proof before the client proved anything. */
  WELCOME: 2,
  /** v1+, client → server: the client's proof. */
  AUTH: 3,
  /** v1 only (retired): server → client, handshake accepted. */
  READY: 4,
  /** v1+, either way during the handshake: refused, with a reason code. */
  REJECT: 5,
  /** v1+, either way after the handshake: graceful close, nothing follows (sealed on an encrypted link). */
  GOODBYE: 6,
  /** v2, server → client: chosen version, flags, server nonce; no identity, no proof. */
  WELCOME2: 7,
  /** v2, server → client: the client's proof verified; the server's identity and proof. */
  READY2: 8,
  /** v2, client → server: the server's proof verified and admitted; frames (or records) may follow. */
  FINISH: 9,
} as const;

/** Handshake flag bits. Append-only; unknown bits are ignored. */
export const Flags = {
  /** v1+: the sender is configured with a pre-shared secret. */
  PSK: 0x01,
  /** v2: the sender wants the link encrypted; a PSK link is encrypted when either side sets it. */
  ENCRYPT: 0x02,
} as const;

/** REJECT reason codes on the wire. Append-only; an unknown code reads as `malformed`. */
export const REJECT_CODES: Readonly<Record<HandshakeRejectReason, number>> = {
  version: 1,
  'cluster-name': 2,
  auth: 3,
  identity: 4,
  policy: 5,
  busy: 6,
  malformed: 7,
};

/** Frames up to this size are copied into the coalescing buffer; larger ones are written as they are. */
export const COALESCE_MAX_FRAME = 16 * 1024;
/** Size of each coalescing slab. */
export const SLAB_SIZE = 64 * 1024;

/** Labels that keep the derived keys and the two proofs apart. */
export const LABELS = {
  handshakeKey: 'clusterinfra-tcp v2 handshake key',
  clientProof: 'clusterinfra-tcp v2 client proof',
  serverProof: 'clusterinfra-tcp v2 server proof',
  clientToServer: 'clusterinfra-tcp v2 client to server',
  serverToClient: 'clusterinfra-tcp v2 server to client',
  keyUpdate: 'clusterinfra-tcp v2 key update',
} as const;

/**
 * Records: on an encrypted link every byte after the handshake travels in
 * sealed records (AES-256-GCM). A record header is 4 bytes: bit 31 (K) says
 * the sender switches to its next key after this record, bits 0..30 the
 * sealed length (plaintext + tag).
 */
export const RECORD_CIPHER = 'aes-256-gcm';
export const RECORD_KEY_SIZE = 32;
export const RECORD_TAG_SIZE = 16;
export const RECORD_NONCE_SIZE = 12;
/** Largest plaintext in one record under protocol 2; the receiver buffers at most one record before it can check it. */
export const RECORD_MAX_PLAINTEXT = 64 * 1024;
/**
 * Largest plaintext in one record under protocol 3: a write batch of up to
 * 256 KiB (a 64 KiB frame with its header, a 256 KiB bulk chunk) is one
 * record, so one cipher context, where protocol 2 needed two or more.
 */
export const RECORD_MAX_PLAINTEXT_V3 = 256 * 1024 + 1024;
/** The record size limit of a protocol version (both directions of a link use the negotiated one). */
export function recordMaxPlaintext(version: number): number {
  return version >= 3 ? RECORD_MAX_PLAINTEXT_V3 : RECORD_MAX_PLAINTEXT;
}
/** A sealed record up to this size goes out as one buffer (header, ciphertext, tag): one socket write, not three. */
export const RECORD_JOIN_MAX = 16 * 1024;
export const RECORD_KEY_UPDATE_BIT = 0x8000_0000;
/**
 * A key seals at most this many records, whatever `rekeyAfterBytes` says:
 * with counter nonces and records of at most 257 KiB, this and 2^32 bytes keep
 * AES-GCM far inside its safe limits (NIST SP 800-38D; the TLS 1.3 record limit).
 */
export const RECORD_MAX_PER_KEY = 2 ** 24;
