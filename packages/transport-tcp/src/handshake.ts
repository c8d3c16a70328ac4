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
import { LABELS, MAGIC, NONCE_SIZE, PROOF_SIZE, RECORD_KEY_SIZE, REJECT_CODES } from './constants.js';

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

/** v2 WELCOME: what the server says before the client has proven anything (no identity, no proof). */
export interface Welcome {
  readonly version: number;
  readonly flags: number;
  readonly nonce: Uint8Array;
}

/** v2 READY: sent once the client's proof verified. */
export interface Ready {
  readonly nodeNum: number;
  readonly incarnation: number;
  readonly maxFrameSize: number;
  /** Empty without a pre-shared secret, else PROOF_SIZE bytes. */
  readonly proof: Uint8Array;
}

/** Fixed part of HELLO before the cluster name. */
const HELLO_FIXED = 4 + 2 + 2 + 1 + 4 + 8 + 4 + NONCE_SIZE + 1;
const WELCOME_SIZE = 4 + 2 + 1 + NONCE_SIZE;
/** Part of READY the server's proof covers (everything before the proof length). */
export const READY_CORE = 4 + 8 + 4;

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
  const out = new Uint8Array(WELCOME_SIZE);
  const dv = view(out);
  out.set(MAGIC, 0);
  dv.setUint16(4, w.version);
  dv.setUint8(6, w.flags);
  out.set(w.nonce, 7);
  return out;
}

export function parseWelcome(body: Uint8Array): Welcome {
  if (body.byteLength !== WELCOME_SIZE) throw new MalformedFrameError(`WELCOME: ${body.byteLength} bytes, expected ${WELCOME_SIZE}`);
  checkMagic(body, 'WELCOME');
  const dv = view(body);
  const version = dv.getUint16(4);
  if (version === 0) throw new MalformedFrameError('WELCOME: version 0');
  return { version, flags: dv.getUint8(6), nonce: copy(body.subarray(7, 7 + NONCE_SIZE)) };
}

export function encodeReady(r: Ready): Uint8Array {
  const out = new Uint8Array(READY_CORE + 1 + r.proof.byteLength);
  const dv = view(out);
  dv.setUint32(0, r.nodeNum);
  writeU64(dv, 4, r.incarnation);
  dv.setUint32(12, r.maxFrameSize);
  dv.setUint8(READY_CORE, r.proof.byteLength);
  out.set(r.proof, READY_CORE + 1);
  return out;
}

export function parseReady(body: Uint8Array): Ready {
  if (body.byteLength < READY_CORE + 1) throw new MalformedFrameError(`READY: ${body.byteLength} bytes is too short`);
  const dv = view(body);
  const proofLength = dv.getUint8(READY_CORE);
  if (proofLength !== 0 && proofLength !== PROOF_SIZE) throw new MalformedFrameError('READY: bad proof length');
  if (body.byteLength !== READY_CORE + 1 + proofLength)
    throw new MalformedFrameError(`READY: ${body.byteLength} bytes, expected ${READY_CORE + 1 + proofLength}`);
  return {
    nodeNum: dv.getUint32(0),
    incarnation: readU64(dv, 4),
    maxFrameSize: dv.getUint32(12),
    proof: copy(body.subarray(READY_CORE + 1)),
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

/** What the handshake key is bound to besides the secret and the nonces. */
export interface ClientBinding {
  /** The cluster name as the deriving side knows it: a client in another cluster derives another key. */
  readonly clusterName: Uint8Array;
  readonly clientNodeNum: number;
  readonly clientIncarnation: number;
}

/**
 * The handshake key: HKDF-SHA256 over the secret, salted with both nonces,
 * bound to the cluster name and the client's identity. Both proofs and the
 * traffic keys come from it; a different session, cluster or client gives
 * an unrelated key. (The server's identity is bound through its proof,
 * which covers READY.)
 */
export function deriveHandshakeKey(secret: Uint8Array, clientNonce: Uint8Array, serverNonce: Uint8Array, b: ClientBinding): Uint8Array {
  const salt = Buffer.concat([clientNonce, serverNonce]);
  const label = Buffer.from(LABELS.handshakeKey, 'utf8');
  const info = Buffer.alloc(label.byteLength + 2 + b.clusterName.byteLength + 12);
  let o = label.copy(info, 0);
  info[o++] = 0;
  info[o++] = b.clusterName.byteLength;
  info.set(b.clusterName, o);
  o += b.clusterName.byteLength;
  const dv = new DataView(info.buffer, info.byteOffset, info.byteLength);
  dv.setUint32(o, b.clientNodeNum);
  writeU64(dv, o + 4, b.clientIncarnation);
  return new Uint8Array(hkdfSync('sha256', secret, salt, info, 32));
}

/**
 * SHA-256 over handshake messages, each as its type byte, a u32 length and
 * its body, so that no two different sequences hash alike.
 */
export function transcriptHash(messages: ReadonlyArray<readonly [type: number, body: Uint8Array]>): Uint8Array {
  const h = createHash('sha256');
  const head = Buffer.alloc(5);
  for (const [type, body] of messages) {
    head[0] = type;
    head.writeUInt32BE(body.byteLength, 1);
    h.update(head).update(body);
  }
  return new Uint8Array(h.digest());
}

/** HMAC-SHA256 under the handshake key of a role label and a transcript hash. */
export function computeProof(key: Uint8Array, role: 'client' | 'server', transcript: Uint8Array): Uint8Array {
  return new Uint8Array(
    createHmac('sha256', key)
      .update(role === 'client' ? LABELS.clientProof : LABELS.serverProof)
      .update(Uint8Array.of(0))
      .update(transcript)
      .digest(),
  );
}

export function verifyProof(key: Uint8Array, role: 'client' | 'server', transcript: Uint8Array, proof: Uint8Array): boolean {
  if (proof.byteLength !== PROOF_SIZE) return false;
  return timingSafeEqual(computeProof(key, role, transcript), proof);
}

export interface TrafficKeys {
  readonly clientToServer: Uint8Array;
  readonly serverToClient: Uint8Array;
}

/** One key per direction, from the handshake key and the hash of the whole handshake. */
export function deriveTrafficKeys(handshakeKey: Uint8Array, transcript: Uint8Array): TrafficKeys {
  const one = (label: string) => new Uint8Array(hkdfSync('sha256', handshakeKey, transcript, label, RECORD_KEY_SIZE));
  return { clientToServer: one(LABELS.clientToServer), serverToClient: one(LABELS.serverToClient) };
}

/** The key after `key` in one direction (a one-way step: the old key cannot be recovered from the new). */
export function nextTrafficKey(key: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', key, new Uint8Array(0), LABELS.keyUpdate, RECORD_KEY_SIZE));
}
