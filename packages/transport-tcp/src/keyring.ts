/**
 * A keyring of pre-shared secrets: one primary key that this node proves
 * with when it connects, and other keys it still accepts from peers. It is
 * what lets a cluster change its secret without stopping: add the new key
 * everywhere, make it primary everywhere, remove the old one (the order is
 * in docs/operations.md). A keyring may be changed while the transport runs;
 * every handshake reads it afresh, and links already open keep their keys.
 *
 * Every key is at least MIN_SECRET_BYTES long: a short secret can be
 * guessed offline by anyone who records one handshake.
 */
import { InvalidOptionError } from '@clusterinfra/core';
import { MAX_KEYRING_KEYS, MIN_SECRET_BYTES } from './constants.js';

/** A secret as given: a string (its UTF-8 bytes are the key) or bytes. */
export type TcpSecret = string | Uint8Array;

export interface TcpKeyringInit {
  /** The key this node proves with when it connects; also accepted. */
  primary: TcpSecret;
  /** Other keys accepted from peers (during a rotation). @default [] */
  accept?: readonly TcpSecret[];
}

/** Internal: the keys in trial order, primary first. Not exported from the package entry point. */
export const kKeys: unique symbol = Symbol('clusterinfra.tcp.keys');

const HOW =
  'generate one with `openssl rand -base64 32` or ' +
  "`node -e \"console.log(require('crypto').randomBytes(32).toString('base64'))\"`";

/** The bytes of a key as given (a copy), or an InvalidOptionError at `path` when it is neither a string nor bytes. */
function keyBytes(value: unknown, path: string): Uint8Array {
  if (typeof value === 'string') return new Uint8Array(Buffer.from(value, 'utf8'));
  if (value instanceof Uint8Array) return new Uint8Array(value);
  throw new InvalidOptionError(path, `tcp: invalid option ${path}: expected a string or bytes`);
}

/** The key's bytes, or an InvalidOptionError at `path` that says what is wrong and why. */
export function secretBytes(value: unknown, path: string): Uint8Array {
  const bytes = keyBytes(value, path);
  if (bytes.byteLength < MIN_SECRET_BYTES)
    throw new InvalidOptionError(
      path,
      `tcp: invalid option ${path}: a secret must be at least ${MIN_SECRET_BYTES} bytes, got ${bytes.byteLength} ` +
        `(anyone who sees one handshake can test guesses at a short secret offline; ${HOW})`,
    );
  return bytes;
}

function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

export class TcpKeyring {
  /** Primary first; no duplicates; at most MAX_KEYRING_KEYS. */
  #keys: Uint8Array[];

  constructor(init: TcpSecret | TcpKeyringInit) {
    if (typeof init === 'string' || init instanceof Uint8Array) {
      this.#keys = [secretBytes(init, 'secret')];
      return;
    }
    // An array or another typed array is not a `{ primary, accept }` with odd keys: say what a secret is.
    if (typeof init !== 'object' || init === null || Array.isArray(init) || ArrayBuffer.isView(init))
      throw new InvalidOptionError('secret', 'tcp: invalid option secret: expected a string, bytes, { primary, accept } or a TcpKeyring');
    const unknown = Object.keys(init).filter((k) => k !== 'primary' && k !== 'accept');
    if (unknown.length > 0) throw new InvalidOptionError('secret', `tcp: invalid option secret: unknown key ${unknown[0]}`);
    this.#keys = [secretBytes(init.primary, 'secret.primary')];
    // `null` is not "no other keys": only an absent `accept` is.
    const accept = init.accept === undefined ? [] : init.accept;
    if (!Array.isArray(accept)) throw new InvalidOptionError('secret.accept', 'tcp: invalid option secret.accept: expected an array');
    accept.forEach((k, i) => this.#insert(secretBytes(k, `secret.accept.${i}`), `secret.accept.${i}`));
  }

  /** Number of keys (primary included). */
  get size(): number {
    return this.#keys.length;
  }

  /** Whether `key` is in the ring (as primary or accepted). */
  has(key: TcpSecret): boolean {
    const bytes = keyBytes(key, 'key');
    return this.#keys.some((k) => sameKey(k, bytes));
  }

  /** Whether `key` is the primary. */
  isPrimary(key: TcpSecret): boolean {
    const bytes = keyBytes(key, 'key');
    return sameKey(this.#keys[0]!, bytes);
  }

  /** Accept `key` from peers from now on (step 1 of a rotation). No-op when present. */
  add(key: TcpSecret): this {
    this.#insert(secretBytes(key, 'key'), 'key');
    return this;
  }

  /** Prove with `key` on new connections from now on (step 2); added when absent. The old primary stays accepted. */
  use(key: TcpSecret): this {
    const bytes = secretBytes(key, 'key');
    let at = this.#keys.findIndex((k) => sameKey(k, bytes));
    if (at < 0) {
      this.#insert(bytes, 'key');
      at = this.#keys.length - 1;
    }
    const [chosen] = this.#keys.splice(at, 1);
    this.#keys.unshift(chosen!);
    return this;
  }

  /** Stop accepting `key` (step 3). The primary cannot be removed. No-op when absent. */
  remove(key: TcpSecret): this {
    const bytes = keyBytes(key, 'key');
    const at = this.#keys.findIndex((k) => sameKey(k, bytes));
    if (at === 0) throw new InvalidOptionError('key', 'tcp: the primary key cannot be removed; make another key primary first (use)');
    if (at > 0) this.#keys.splice(at, 1);
    return this;
  }

  /** The keys in trial order, primary first (internal). */
  [kKeys](): readonly Uint8Array[] {
    return this.#keys;
  }

  #insert(bytes: Uint8Array, path: string): void {
    if (this.#keys.some((k) => sameKey(k, bytes))) return;
    if (this.#keys.length >= MAX_KEYRING_KEYS)
      throw new InvalidOptionError(path, `tcp: a keyring holds at most ${MAX_KEYRING_KEYS} keys; remove retired ones first`);
    this.#keys.push(bytes);
  }
}
