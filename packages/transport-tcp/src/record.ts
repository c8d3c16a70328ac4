/**
 * The record layer of an encrypted link. After the handshake, the frame
 * stream of each direction (data and control frames, headers included) is
 * cut into records of at most `maxPlaintext` bytes (64 KiB under protocol 2,
 * 257 KiB under 3: recordMaxPlaintext), each sealed with AES-256-GCM. A
 * write batch (every frame queued in one tick) is one record when it fits:
 * each record costs a cipher context, the main cost of a small message.
 *
 *   [u32 header: K bit | sealed length] [ciphertext] [16-byte tag]
 *
 * - The key is per link and per direction (deriveTrafficKeys); the nonce is
 *   the record's number under that key (4 zero bytes, u64 counter), never
 *   sent: a replayed, dropped or reordered record is opened with the wrong
 *   nonce and fails, as does any altered byte. The header is the AAD.
 * - K set: the sender moves to nextTrafficKey() after this record and counts
 *   from 0 again. The sender decides when (a byte budget, and at most
 *   RECORD_MAX_PER_KEY records), so the two sides need not agree on it; a
 *   receiver refuses a record past RECORD_MAX_PER_KEY under one key (a peer
 *   that never moves on would wear its key past the safe limit).
 * - The receiver buffers at most one record, checks it, and only then hands
 *   its plaintext on: nothing unauthenticated reaches the frame decoder.
 */
import { type KeyObject, createCipheriv, createDecipheriv, createSecretKey } from 'node:crypto';
import { type ClusterInfraError, IntegrityError, MalformedFrameError } from '@clusterinfra/core';
import {
  HEADER_SIZE,
  LENGTH_MASK,
  RECORD_CIPHER,
  RECORD_JOIN_MAX,
  RECORD_KEY_UPDATE_BIT,
  RECORD_MAX_PER_KEY,
  RECORD_MAX_PLAINTEXT,
  RECORD_NONCE_SIZE,
  RECORD_TAG_SIZE,
} from './constants.js';
import { nextTrafficKey } from './handshake.js';

function writeNonce(nonce: Buffer, counter: number): void {
  nonce.writeUInt32BE(0, 0);
  nonce.writeUInt32BE(Math.floor(counter / 0x1_0000_0000), 4);
  nonce.writeUInt32BE(counter >>> 0, 8);
}

/** One direction's key state: the key, its record counter, and how often it moved on. */
class KeyState {
  protected readonly nonce = Buffer.alloc(RECORD_NONCE_SIZE);
  protected counter = 0;
  /** The key as a KeyObject, made once per key rather than once per record. */
  protected cipherKey: KeyObject;
  /** Key updates so far (observability and tests). */
  updates = 0;

  constructor(private key: Uint8Array) {
    this.cipherKey = createSecretKey(key);
  }

  /** The nonce of the next record; advances the counter. */
  protected nextNonce(): Buffer {
    writeNonce(this.nonce, this.counter++);
    return this.nonce;
  }

  protected updateKey(): void {
    this.key = nextTrafficKey(this.key);
    this.cipherKey = createSecretKey(this.key);
    this.counter = 0;
    this.updates++;
  }
}

export class RecordSealer extends KeyState {
  private bytesUnderKey = 0;

  /**
   * `maxPlaintext` is the negotiated record limit (recordMaxPlaintext);
   * `maxRecordsPerKey` is for tests: the protocol's limit is RECORD_MAX_PER_KEY.
   */
  constructor(
    key: Uint8Array,
    private readonly rekeyAfterBytes: number,
    private readonly maxRecordsPerKey = RECORD_MAX_PER_KEY,
    private readonly maxPlaintext = RECORD_MAX_PLAINTEXT,
  ) {
    super(key);
  }

  /** Seal the bytes of `chunks` (in order) into as few records as the limit allows, appended to `out`. */
  seal(chunks: readonly Uint8Array[], out: Uint8Array[]): void {
    let total = 0;
    for (const c of chunks) total += c.byteLength;
    let index = 0;
    let offset = 0;
    while (total > 0) {
      const size = Math.min(this.maxPlaintext, total);
      const last = this.bytesUnderKey + size >= this.rekeyAfterBytes || this.counter + 1 >= this.maxRecordsPerKey;
      // A small record is written as one buffer; a large one as header, ciphertext pieces, tag (no copy).
      const joined = size <= RECORD_JOIN_MAX ? Buffer.allocUnsafe(HEADER_SIZE + size + RECORD_TAG_SIZE) : undefined;
      const header = joined ?? Buffer.allocUnsafe(HEADER_SIZE);
      header.writeUInt32BE(((last ? RECORD_KEY_UPDATE_BIT : 0) | (size + RECORD_TAG_SIZE)) >>> 0, 0);
      const cipher = createCipheriv(RECORD_CIPHER, this.cipherKey, this.nextNonce(), { authTagLength: RECORD_TAG_SIZE });
      cipher.setAAD(joined ? joined.subarray(0, HEADER_SIZE) : header);
      let at = HEADER_SIZE;
      const emit = (sealed: Buffer): void => {
        if (sealed.byteLength === 0) return;
        if (joined === undefined) out.push(sealed);
        else {
          joined.set(sealed, at);
          at += sealed.byteLength;
        }
      };
      if (joined === undefined) out.push(header);
      for (let need = size; need > 0; ) {
        const chunk = chunks[index]!;
        const n = Math.min(need, chunk.byteLength - offset);
        emit(cipher.update(offset === 0 && n === chunk.byteLength ? chunk : chunk.subarray(offset, offset + n)));
        need -= n;
        offset += n;
        if (offset === chunk.byteLength) {
          index++;
          offset = 0;
        }
      }
      emit(cipher.final());
      emit(cipher.getAuthTag());
      if (joined !== undefined) out.push(joined);
      total -= size;
      this.bytesUnderKey += size;
      if (last) {
        this.updateKey();
        this.bytesUnderKey = 0;
      }
    }
  }
}

export class RecordOpener extends KeyState {
  private readonly header = Buffer.alloc(HEADER_SIZE);
  private headerFill = 0;
  private inBody = false;
  private keyUpdate = false;
  private need = 0;
  private parts: Uint8Array[] = [];
  private fill = 0;
  private failure: ClusterInfraError | undefined;
  /** Records opened so far. */
  completed = 0;

  /**
   * `maxPlaintext` is the negotiated record limit (recordMaxPlaintext): a
   * longer record is malformed. `maxRecordsPerKey` is for tests: the
   * protocol's limit is RECORD_MAX_PER_KEY.
   */
  constructor(
    key: Uint8Array,
    private readonly maxRecordsPerKey = RECORD_MAX_PER_KEY,
    private readonly maxPlaintext = RECORD_MAX_PLAINTEXT,
  ) {
    super(key);
  }

  /** True when part of a record has arrived and the rest has not. */
  get partial(): boolean {
    return this.headerFill > 0 || this.inBody;
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  /**
   * Take bytes from the socket; hand the plaintext of every record they
   * complete to `deliver`, in order, each as soon as it checked out. Throws
   * (and stays failed) on a bad length or a record that does not
   * authenticate; records before it have been delivered.
   */
  open(chunk: Uint8Array, deliver: (plaintext: Uint8Array) => void): void {
    if (this.failure) throw this.failure;
    let pos = 0;
    while (pos < chunk.byteLength) {
      if (!this.inBody) {
        const n = Math.min(HEADER_SIZE - this.headerFill, chunk.byteLength - pos);
        this.header.set(chunk.subarray(pos, pos + n), this.headerFill);
        this.headerFill += n;
        pos += n;
        if (this.headerFill < HEADER_SIZE) break;
        this.headerFill = 0;
        const value = this.header.readUInt32BE(0);
        const sealed = value & LENGTH_MASK;
        if (sealed <= RECORD_TAG_SIZE || sealed > this.maxPlaintext + RECORD_TAG_SIZE)
          this.fail(new MalformedFrameError(`record of ${sealed} sealed bytes is out of range`));
        this.keyUpdate = (value & RECORD_KEY_UPDATE_BIT) !== 0;
        this.need = sealed;
        this.inBody = true;
      }
      const n = Math.min(this.need - this.fill, chunk.byteLength - pos);
      this.parts.push(chunk.subarray(pos, pos + n));
      this.fill += n;
      pos += n;
      if (this.fill < this.need) break;
      for (const piece of this.openRecord()) if (piece.byteLength > 0) deliver(piece);
    }
  }

  /**
   * Decrypt the buffered record piece by piece as it lies in the socket's
   * chunks (no copy to join them), and return the plaintext pieces once the
   * tag verified.
   */
  private openRecord(): Buffer[] {
    const parts = this.parts;
    const cut = this.fill - RECORD_TAG_SIZE;
    this.parts = [];
    this.fill = 0;
    this.inBody = false;
    if (this.counter >= this.maxRecordsPerKey)
      this.fail(new IntegrityError(`record ${this.completed}: the peer sealed more than ${this.maxRecordsPerKey} records under one key without moving to the next`));
    const decipher = createDecipheriv(RECORD_CIPHER, this.cipherKey, this.nextNonce(), { authTagLength: RECORD_TAG_SIZE });
    // The header is still the one this record came with: the next is read only after it is opened.
    decipher.setAAD(this.header);
    const plain: Buffer[] = [];
    if (parts.length === 1) {
      // The whole record came in one socket read (the usual case for small ones): no tag copy.
      const part = parts[0]!;
      plain.push(decipher.update(part.subarray(0, cut)));
      decipher.setAuthTag(part.subarray(cut));
    } else {
      const tag = Buffer.allocUnsafe(RECORD_TAG_SIZE);
      let pos = 0;
      for (const part of parts) {
        const end = pos + part.byteLength;
        if (pos < cut) plain.push(decipher.update(end <= cut ? part : part.subarray(0, cut - pos)));
        if (end > cut) tag.set(part.subarray(Math.max(0, cut - pos)), Math.max(0, pos - cut));
        pos = end;
      }
      decipher.setAuthTag(tag);
    }
    try {
      decipher.final();
    } catch {
      this.fail(new IntegrityError(`record ${this.completed} failed authentication (altered, replayed, reordered or dropped)`));
    }
    this.completed++;
    if (this.keyUpdate) this.updateKey();
    return plain;
  }

  private fail(err: ClusterInfraError): never {
    this.failure = err;
    this.parts = [];
    throw err;
  }
}
