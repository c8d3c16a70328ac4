/**
 * Handshake messages: a fixed binary layout, parsed by hand. Nothing an
 * unauthenticated peer sends goes through a general decoder; every field
 * has a fixed offset and size, lengths are checked against the message
 * size, and trailing bytes are an error.
 *
 * The parsers check structure only (magic, sizes, UTF-8). Whether a
 * version, cluster name or identity is acceptable is decided by the
 * handshake state machine, which knows the local node.
 */
import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { type HandshakeRejectReason, HANDSHAKE_REJECT_REASONS, MalformedFrameError } from '@clusterinfra/core';
import { LABELS, MAGIC, NONCE_SIZE, PROOF_SIZE, REJECT_CODES } from './constants.js';

export interface Hello {
  readonly minVersion: number;
  readonly maxVersion: number;
  readonly flags: number;
  readonly nodeNum: number;
  /** Read from a u64; may exceed MAX_SAFE_INTEGER, which the identity check refuses. */
  readonly incarnation: number;
  readonly maxFrameSize: number;
  readonly nonce: Uint8Array;
  /** UTF-8 bytes of the cluster name, 1..255 bytes. */
  readonly clusterName: Uint8Array;
}

export interface Welcome {
  readonly version: number;
  readonly flags: number;
  readonly nodeNum: number;
  readonly incarnation: number;
  readonly maxFrameSize: number;
  readonly nonce: Uint8Array;
  /** Empty without a pre-shared secret, else PROOF_SIZE bytes. */
  readonly proof: Uint8Array;
}

/** Fixed part of HELLO before the cluster name. */
const HELLO_FIXED = 4 + 2 + 2 + 1 + 4 + 8 + 4 + NONCE_SIZE + 1;
/** Part of WELCOME covered by the transcript (everything before the proof). */
export const WELCOME_CORE = 4 + 2 + 1 + 4 + 8 + 4 + NONCE_SIZE;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function checkMagic(body: Uint8Array, what: string): void {
  for (let i = 0; i < MAGIC.length; i++) {
    if (body[i] !== MAGIC[i]) throw new MalformedFrameError(`${what}: bad magic`);
  }
}

function view(body: Uint8Array): DataView {
  return new DataView(body.buffer, body.byteOffset, body.byteLength);
}

function readU64(dv: DataView, offset: number): number {
  return dv.getUint32(offset) * 0x1_0000_0000 + dv.getUint32(offset + 4);
}

function writeU64(dv: DataView, offset: number, value: number): void {
  dv.setUint32(offset, Math.floor(value / 0x1_0000_0000));
  dv.setUint32(offset + 4, value >>> 0);
}

/** Copy out of a (possibly shared) receive buffer, so that what we keep does not pin it. */
function copy(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}

export function encodeHello(h: Hello): Uint8Array {
  if (h.clusterName.byteLength < 1 || h.clusterName.byteLength > 255) throw new RangeError('cluster name must be 1..255 bytes');
  const out = new Uint8Array(HELLO_FIXED + h.clusterName.byteLength);
  const dv = view(out);
  out.set(MAGIC, 0);
  dv.setUint16(4, h.minVersion);
  dv.setUint16(6, h.maxVersion);
  dv.setUint8(8, h.flags);
  dv.setUint32(9, h.nodeNum);
  writeU64(dv, 13, h.incarnation);
  dv.setUint32(21, h.maxFrameSize);
  out.set(h.nonce, 25);
  dv.setUint8(57, h.clusterName.byteLength);
  out.set(h.clusterName, 58);
  return out;
}

export function parseHello(body: Uint8Array): Hello {
  if (body.byteLength < HELLO_FIXED + 1) throw new MalformedFrameError(`HELLO: ${body.byteLength} bytes is too short`);
  checkMagic(body, 'HELLO');
  const dv = view(body);
  const nameLength = dv.getUint8(57);
  if (nameLength === 0) throw new MalformedFrameError('HELLO: empty cluster name');
  if (body.byteLength !== HELLO_FIXED + nameLength)
    throw new MalformedFrameError(`HELLO: ${body.byteLength} bytes, expected ${HELLO_FIXED + nameLength}`);
  const clusterName = copy(body.subarray(58));
  try {
    utf8.decode(clusterName);
  } catch {
    throw new MalformedFrameError('HELLO: cluster name is not valid UTF-8');
  }
  const minVersion = dv.getUint16(4);
  const maxVersion = dv.getUint16(6);
  if (minVersion === 0 || minVersion > maxVersion) throw new MalformedFrameError('HELLO: bad version range');
  return {
    minVersion,
    maxVersion,
    flags: dv.getUint8(8),
    nodeNum: dv.getUint32(9),
    incarnation: readU64(dv, 13),
    maxFrameSize: dv.getUint32(21),
    nonce: copy(body.subarray(25, 25 + NONCE_SIZE)),
    clusterName,
  };
}

export function encodeWelcome(w: Welcome): Uint8Array {
  const out = new Uint8Array(WELCOME_CORE + 1 + w.proof.byteLength);
  const dv = view(out);
  out.set(MAGIC, 0);
  dv.setUint16(4, w.version);
  dv.setUint8(6, w.flags);
  dv.setUint32(7, w.nodeNum);
  writeU64(dv, 11, w.incarnation);
  dv.setUint32(19, w.maxFrameSize);
  out.set(w.nonce, 23);
  dv.setUint8(WELCOME_CORE, w.proof.byteLength);
  out.set(w.proof, WELCOME_CORE + 1);
  return out;
}

export function parseWelcome(body: Uint8Array): Welcome {
  if (body.byteLength < WELCOME_CORE + 1) throw new MalformedFrameError(`WELCOME: ${body.byteLength} bytes is too short`);
  checkMagic(body, 'WELCOME');
  const dv = view(body);
  const proofLength = dv.getUint8(WELCOME_CORE);
  if (proofLength !== 0 && proofLength !== PROOF_SIZE) throw new MalformedFrameError('WELCOME: bad proof length');
  if (body.byteLength !== WELCOME_CORE + 1 + proofLength)
    throw new MalformedFrameError(`WELCOME: ${body.byteLength} bytes, expected ${WELCOME_CORE + 1 + proofLength}`);
  const version = dv.getUint16(4);
  if (version === 0) throw new MalformedFrameError('WELCOME: version 0');
  return {
    version,
    flags: dv.getUint8(6),
    nodeNum: dv.getUint32(7),
    incarnation: readU64(dv, 11),
    maxFrameSize: dv.getUint32(19),
    nonce: copy(body.subarray(23, 23 + NONCE_SIZE)),
    proof: copy(body.subarray(WELCOME_CORE + 1)),
  };
}

export function encodeAuth(proof: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + proof.byteLength);
  out[0] = proof.byteLength;
  out.set(proof, 1);
  return out;
}

/** AUTH body: the client's proof (empty without a secret). */
export function parseAuth(body: Uint8Array): Uint8Array {
  if (body.byteLength < 1) throw new MalformedFrameError('AUTH: empty');
  const length = body[0]!;
  if (length !== 0 && length !== PROOF_SIZE) throw new MalformedFrameError('AUTH: bad proof length');
  if (body.byteLength !== 1 + length) throw new MalformedFrameError('AUTH: wrong size');
  return copy(body.subarray(1));
}

export function parseEmpty(body: Uint8Array, what: string): void {
  if (body.byteLength !== 0) throw new MalformedFrameError(`${what}: unexpected body`);
}

export function encodeReject(reason: HandshakeRejectReason): Uint8Array {
  return Uint8Array.of(REJECT_CODES[reason]);
}

/** REJECT body: one reason code; an unknown code reads as `malformed`. */
export function parseReject(body: Uint8Array): HandshakeRejectReason {
  if (body.byteLength !== 1) throw new MalformedFrameError('REJECT: wrong size');
  const code = body[0]!;
  return HANDSHAKE_REJECT_REASONS.find((r) => REJECT_CODES[r] === code) ?? 'malformed';
}

/** Highest version in both ranges, or undefined when they do not overlap. */
export function negotiateVersion(aMin: number, aMax: number, bMin: number, bMax: number): number | undefined {
  const high = Math.min(aMax, bMax);
  return high >= Math.max(aMin, bMin) ? high : undefined;
}

export function validNodeNum(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 0xffff_ffff;
}

export function validIncarnation(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 1;
}

export interface SessionIdentities {
  readonly clusterName: Uint8Array;
  readonly clientNodeNum: number;
  readonly clientIncarnation: number;
  readonly serverNodeNum: number;
  readonly serverIncarnation: number;
}

/**
 * HKDF-SHA256 over the secret, salted with both nonces, bound to the
 * cluster name and both identities: a different session, cluster or pair of
 * nodes gives an unrelated key.
 */
export function deriveSessionKey(
  secret: Uint8Array,
  clientNonce: Uint8Array,
  serverNonce: Uint8Array,
  ids: SessionIdentities,
): Uint8Array {
  const salt = Buffer.concat([clientNonce, serverNonce]);
  const label = Buffer.from(LABELS.sessionKey, 'utf8');
  const info = Buffer.alloc(label.byteLength + 1 + 1 + ids.clusterName.byteLength + 24);
  let o = label.copy(info, 0);
  info[o++] = 0;
  info[o++] = ids.clusterName.byteLength;
  info.set(ids.clusterName, o);
  o += ids.clusterName.byteLength;
  const dv = new DataView(info.buffer, info.byteOffset, info.byteLength);
  dv.setUint32(o, ids.clientNodeNum);
  writeU64(dv, o + 4, ids.clientIncarnation);
  dv.setUint32(o + 12, ids.serverNodeNum);
  writeU64(dv, o + 16, ids.serverIncarnation);
  return new Uint8Array(hkdfSync('sha256', secret, salt, info, 32));
}

/** HMAC-SHA256 under the session key of a role label and the transcript hash. */
export function computeProof(key: Uint8Array, role: 'client' | 'server', transcript: Uint8Array): Uint8Array {
  const digest = createHash('sha256').update(transcript).digest();
  return new Uint8Array(
    createHmac('sha256', key)
      .update(role === 'client' ? LABELS.clientProof : LABELS.serverProof)
      .update(Uint8Array.of(0))
      .update(digest)
      .digest(),
  );
}

export function verifyProof(key: Uint8Array, role: 'client' | 'server', transcript: Uint8Array, proof: Uint8Array): boolean {
  if (proof.byteLength !== PROOF_SIZE) return false;
  return timingSafeEqual(computeProof(key, role, transcript), proof);
}

/** The bytes both proofs cover: the whole HELLO body and WELCOME up to its proof. */
export function transcriptOf(helloBody: Uint8Array, welcomeBody: Uint8Array): Uint8Array {
  return Buffer.concat([helloBody, welcomeBody.subarray(0, WELCOME_CORE)]);
}
