/**
 * Defaults and wire constants of the TCP transport, in one place.
 *
 * Wire numbers (control types, reject codes, protocol versions) are
 * append-only: a number, once shipped, keeps its meaning forever and is
 * never reused. README.md has the table with the version that added each.
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
  maxPendingHandshakes: 64,
  maxPendingPerAddress: 8,
  noDelay: true,
} as const;

/** The frame header is 4 bytes: bit 31 marks a control frame, bits 0..30 hold the length. */
export const HEADER_SIZE = 4;
export const CONTROL_BIT = 0x8000_0000;
export const LENGTH_MASK = 0x7fff_ffff;
/** Largest length the 31-bit header field can carry. */
export const MAX_WIRE_LENGTH = LENGTH_MASK;

/** Every control frame (type byte + body), handshake messages included, fits in this. */
export const MAX_CONTROL_SIZE = 1024;

/** First bytes of HELLO and WELCOME: "CITP", ClusterInfra transport protocol. */
export const MAGIC = Uint8Array.of(0x43, 0x49, 0x54, 0x50);

/** Protocol versions this build speaks. The handshake picks the highest common one. */
export const PROTOCOL_VERSION_MIN = 1;
export const PROTOCOL_VERSION_MAX = 1;

export const NONCE_SIZE = 32;
export const PROOF_SIZE = 32;

/** Control frame types. Append-only: never renumber, never reuse. */
export const ControlType = {
  /** v1, client → server: first handshake message. */
  HELLO: 1,
  /** v1, server → client: the server's half of the handshake. */
  WELCOME: 2,
  /** v1, client → server: the client's proof. */
  AUTH: 3,
  /** v1, server → client: handshake accepted; frames may follow. */
  READY: 4,
  /** v1, either way during the handshake: refused, with a reason code. */
  REJECT: 5,
  /** v1, either way after the handshake: graceful close, nothing follows. */
  GOODBYE: 6,
} as const;

/** Handshake flag bits. Append-only; unknown bits are ignored. */
export const Flags = {
  /** The sender is configured with a pre-shared secret. */
  PSK: 0x01,
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

/** Labels that keep the key derivation and the two proofs apart. */
export const LABELS = {
  sessionKey: 'clusterinfra-tcp v1 session key',
  clientProof: 'clusterinfra-tcp v1 client proof',
  serverProof: 'clusterinfra-tcp v1 server proof',
} as const;
