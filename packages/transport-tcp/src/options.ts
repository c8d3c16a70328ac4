/**
 * `TcpOptions`, validated with zod at the edge: a bad option throws
 * InvalidOptionError naming its path.
 */
import type { NodeIdentity } from '@clusterinfra/core';
import { parseOptions } from '@clusterinfra/core';
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import { z } from 'zod';
import { isValidHost } from './address.js';
import { DEFAULTS, MAX_WIRE_LENGTH } from './constants.js';
import { TcpKeyring, type TcpKeyringInit, type TcpSecret } from './keyring.js';

type Pem = string | Buffer | Array<string | Buffer>;

/** Mutual TLS: both sides present a certificate signed by `ca`, and both verify. */
export interface TcpTlsOptions {
  /** This node's private key (PEM). */
  key: string | Buffer;
  /** This node's certificate chain (PEM). */
  cert: string | Buffer;
  /** CA certificates peers' certificates must chain to (PEM). Only these are trusted. */
  ca: Pem;
  /** Passphrase of `key`. */
  passphrase?: string;
  /** Lowest TLS version accepted. @default 'TLSv1.2' */
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  /**
   * Name the server certificate must carry when connecting; by default the
   * host of the address (an IP address is matched against IP subjectAltNames).
   */
  servername?: string;
}

export interface TcpOptions {
  /** Host the listener binds to. @default '127.0.0.1' */
  host?: string;
  /** Port the listener binds to; 0 picks a free one. @default 0 */
  port?: number;
  /**
   * Pre-shared secret (at least 16 bytes), or a keyring: `{ primary, accept }`
   * or a `TcpKeyring` that can be changed while the node runs. Every node of
   * the cluster must hold the key the others prove with. @default none
   */
  secret?: TcpSecret | TcpKeyringInit | TcpKeyring;
  /**
   * Encrypt and authenticate every frame of a `secret` link (AES-256-GCM with
   * keys derived from the handshake). A link is encrypted when either side
   * asks; TLS links keep TLS's own encryption. @default true
   */
  encrypt?: boolean;
  /** An encrypted link moves to its next key after this many bytes in one direction. @default 4096 MiB */
  rekeyAfterBytes?: number;
  /** Mutual TLS; combinable with `secret`. @default none (plain TCP) */
  tls?: TcpTlsOptions;
  /** Largest data frame, in bytes, sent or received (at most 2^31-1). @default 1 MiB */
  maxFrameSize?: number;
  /** Per link: `send` returns false once this many bytes wait to be written. @default 2 MiB */
  highWaterMark?: number;
  /** TCP (and TLS) connect must finish within this. @default 3000 */
  connectTimeoutMs?: number;
  /** The handshake must finish within this, on both sides. @default 5000 */
  handshakeTimeoutMs?: number;
  /** A frame whose first byte arrived must be complete within this. @default 30000 */
  frameDeadlineMs?: number;
  /** A graceful close waits this long for the peer to confirm, then resets. @default 5000 */
  closeTimeoutMs?: number;
  /** A new connection that sends nothing within this is dropped (shorter than the handshake timeout). @default 1000 */
  silentTimeoutMs?: number;
  /**
   * Unauthenticated connections in progress on the listener, in total. When
   * full, a new connection evicts the pending one that has sent the least
   * (the oldest among equals). @default 64
   */
  maxPendingHandshakes?: number;
  /** Unauthenticated connections in progress from one source network (/24 for IPv4, /64 for IPv6). @default 8 */
  maxPendingPerAddress?: number;
  /**
   * Pending slots only connections from known addresses may use: addresses in
   * `knownAddresses`, and those a peer authenticated from before. Others
   * share the rest (at least one slot). @default 16
   */
  pendingReservedForKnown?: number;
  /** IP addresses of members, known before they ever connect (e.g. the seeds' hosts). @default [] */
  knownAddresses?: string[];
  /** Disable Nagle's algorithm (writes are coalesced by the transport). @default true */
  noDelay?: boolean;
  /**
   * Admission policy, asked on both sides after the peer's identity is known
   * (and, with a secret, proven). Returning false (or throwing) refuses the
   * peer with reason `policy`. @default admit everyone
   */
  admit?: (remote: NodeIdentity, remoteAddress: string) => boolean;
}

const WILDCARD_HOSTS: ReadonlySet<string> = new Set(['0.0.0.0', '[::]']);

/** 0.0.0.0 and the IPv6 unspecified address however it is written (`::`, `0::0`, `::ffff:0.0.0.0`). */
function isWildcard(host: string): boolean {
  return WILDCARD_HOSTS.has(host) || (isIP(host) === 6 && /^[0:]*(?:ffff:0\.0\.0\.0)?$/i.test(host));
}

const pem = z.union([z.string().min(1), z.instanceof(Buffer)]);
const ms = z.number().int().positive().max(2_147_483_647);

const tlsSchema = z
  .object({
    key: pem,
    cert: pem,
    ca: z.union([pem, z.array(pem).min(1)]),
    passphrase: z.string().optional(),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).optional(),
    servername: z.string().min(1).optional(),
  })
  .strict()
  // Node reads key, cert and ca only when the listener starts or a connect
  // begins: a bad one threw there, outside any promise (an uncaught
  // exception), and a ca without a certificate trusted nobody.
  .superRefine((t, ctx) => {
    const problem = tlsProblem(t);
    if (problem) ctx.addIssue({ code: 'custom', path: problem.path, message: problem.message });
  });

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** What to say about a value Node could not read as PEM: a path, or not PEM at all. */
function notPem(value: string | Buffer, expected: string): string {
  const text = typeof value === 'string' ? value : value.toString('latin1');
  if (text.includes('-----BEGIN')) return `not a valid ${expected}`;
  const hint = typeof value === 'string' && !/\s/.test(value) ? " (this looks like a file path: pass the file's contents, e.g. readFileSync(path))" : '';
  return `expected a ${expected} in PEM (-----BEGIN ...)${hint}`;
}

/** A PEM private key under a passphrase (PKCS#8, or the traditional form's header). */
const ENCRYPTED_KEY = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/;

/** Check that key, cert and ca are what Node will need, so a mistake names its option now. */
function tlsProblem(t: { key: string | Buffer; cert: string | Buffer; ca: string | Buffer | Array<string | Buffer>; passphrase?: string | undefined }): { path: Array<string | number>; message: string } | undefined {
  const cas = Array.isArray(t.ca) ? t.ca : [t.ca];
  for (const [i, ca] of cas.entries()) {
    const path = Array.isArray(t.ca) ? ['ca', i] : ['ca'];
    const blocks = (typeof ca === 'string' ? ca : ca.toString('latin1')).match(PEM_CERT) ?? [];
    if (blocks.length === 0) return { path, message: notPem(ca, 'CA certificate') };
    try {
      for (const block of blocks) new X509Certificate(block);
    } catch {
      return { path, message: 'not a valid CA certificate' };
    }
  }
  try {
    createSecureContext({ key: t.key, passphrase: t.passphrase });
  } catch (err) {
    // An encrypted key that does not open is the passphrase's fault whatever OpenSSL says: a
    // wrong passphrase usually fails the padding check (bad decrypt), but about one time in
    // 256 the garbage passes it and fails later as a malformed key.
    const text = typeof t.key === 'string' ? t.key : t.key.toString('latin1');
    if ((err as { code?: string }).code === 'ERR_OSSL_BAD_DECRYPT' || ENCRYPTED_KEY.test(text))
      return { path: ['passphrase'], message: 'tls.key is encrypted and this passphrase does not open it (missing or wrong)' };
    return { path: ['key'], message: notPem(t.key, 'private key') };
  }
  try {
    createSecureContext({ cert: t.cert });
  } catch {
    return { path: ['cert'], message: notPem(t.cert, 'certificate') };
  }
  try {
    createSecureContext({ key: t.key, cert: t.cert, passphrase: t.passphrase });
  } catch {
    return { path: ['cert'], message: 'this certificate does not belong to tls.key (key values mismatch)' };
  }
  return undefined;
}

/** The schema of `TcpOptions` (exported for the docs test, not from the package entry point). */
export const tcpOptionsSchema = z
  .object({
    // The listen host is also the address the node announces to the others:
    // a wildcard would be announced as is, and nobody can dial it.
    host: z
      .string()
      .min(1)
      .refine((h) => !isWildcard(h), 'a wildcard (0.0.0.0, ::) is announced as is and nobody can dial it: give an address the other nodes reach')
      // Checked here, not first at listen(): `listen` would refuse it with InvalidAddressError, long after the mistake.
      .refine((h) => isWildcard(h) || isValidHost(h), 'expected an IP address or a DNS name, without port or brackets (e.g. 10.0.0.5, ::1, node-a.example)')
      .default(DEFAULTS.host),
    port: z.number().int().min(0).max(65535).default(DEFAULTS.port),
    // Checked by TcpKeyring, whose errors say what is wrong and why (length, count).
    secret: z.custom<NonNullable<TcpOptions['secret']>>(() => true).optional(),
    encrypt: z.boolean().default(DEFAULTS.encrypt),
    rekeyAfterBytes: z.number().int().min(1024).max(DEFAULTS.rekeyAfterBytes).default(DEFAULTS.rekeyAfterBytes),
    tls: tlsSchema.optional(),
    maxFrameSize: z.number().int().min(1).max(MAX_WIRE_LENGTH).default(DEFAULTS.maxFrameSize),
    highWaterMark: z.number().int().positive().default(DEFAULTS.highWaterMark),
    connectTimeoutMs: ms.default(DEFAULTS.connectTimeoutMs),
    handshakeTimeoutMs: ms.default(DEFAULTS.handshakeTimeoutMs),
    frameDeadlineMs: ms.default(DEFAULTS.frameDeadlineMs),
    closeTimeoutMs: ms.default(DEFAULTS.closeTimeoutMs),
    silentTimeoutMs: ms.default(DEFAULTS.silentTimeoutMs),
    maxPendingHandshakes: z.number().int().positive().default(DEFAULTS.maxPendingHandshakes),
    maxPendingPerAddress: z.number().int().positive().default(DEFAULTS.maxPendingPerAddress),
    pendingReservedForKnown: z.number().int().min(0).default(DEFAULTS.pendingReservedForKnown),
    knownAddresses: z.array(z.string().refine((s) => isIP(s) !== 0, 'must be an IP address')).max(4096).default([]),
    noDelay: z.boolean().default(DEFAULTS.noDelay),
    admit: z.custom<NonNullable<TcpOptions['admit']>>((v) => typeof v === 'function', 'must be a function').optional(),
  })
  .strict();

export interface ResolvedTcpOptions extends Omit<Required<TcpOptions>, 'secret' | 'tls' | 'admit'> {
  /** The keys, when a secret is configured (a keyring given as such is shared, not copied). */
  readonly secret: TcpKeyring | undefined;
  readonly tls: TcpTlsOptions | undefined;
  readonly admit: TcpOptions['admit'];
}

export function resolveOptions(input: TcpOptions | undefined): ResolvedTcpOptions {
  const o = parseOptions('tcp', tcpOptionsSchema, input);
  const secret = o.secret === undefined || o.secret instanceof TcpKeyring ? o.secret : new TcpKeyring(o.secret);
  return { ...o, secret, tls: o.tls as TcpTlsOptions | undefined, admit: o.admit };
}
