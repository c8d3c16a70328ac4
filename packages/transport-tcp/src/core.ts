/** What the handshake and link code needs from their transport. */
import type { Clock, Logger, NodeIdentity, RandomSource } from '@clusterinfra/core';
import { TlsError } from '@clusterinfra/core';
import type { ResolvedTcpOptions } from './options.js';

export interface TransportCore {
  readonly options: ResolvedTcpOptions;
  readonly identity: NodeIdentity;
  readonly clusterNameBytes: Buffer;
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly logger: Logger;
  tlsError(cause: unknown, message?: string): TlsError;
}

export function makeTlsError(cause: unknown, message?: string): TlsError {
  const err = cause as NodeJS.ErrnoException | undefined;
  const detail = err?.code ? `${err.code}: ${err.message}` : String(err?.message ?? cause);
  return new TlsError(message ? `${message} (${detail})` : `TLS failed: ${detail}`, { cause });
}
