/**
 * `MultipathOptions`, validated with zod at the edge: a bad option throws
 * InvalidOptionError naming its path.
 */
import { parseOptions, type TransportFactory } from '@clusterinfra/core';
import { z } from 'zod';
import { MAX_PATHS, MAX_TIMER_MS, MULTIPATH_DEFAULTS } from './constants.js';

/**
 * Which paths carry data frames:
 * - `active-standby`: every frame goes on the first healthy path in the
 *   order the paths were given; the others carry only heartbeats until it fails;
 * - `both-active`: frames are spread over every healthy path (round robin,
 *   skipping a path whose buffer is full); the receiver puts them back in order.
 */
export type MultipathPolicy = 'active-standby' | 'both-active';

export interface MultipathOptions {
  /** @default 'active-standby' */
  policy?: MultipathPolicy;
  /** A path that sent nothing for this long sends a heartbeat, in ms. @default 250 */
  heartbeatIntervalMs?: number;
  /**
   * A path on which nothing (data, acknowledgement or heartbeat) arrived for
   * this long is declared failed: its unacknowledged frames are resent on
   * another path. Must be more than `heartbeatIntervalMs`. @default 1500
   */
  pathTimeoutMs?: number;
  /** The logical link closes with `reset` once no path has been up for this long, in ms. @default 10000 */
  linkTimeoutMs?: number;
  /** First delay before the dialling side redials a failed path, in ms (doubles per failure, with jitter). @default 50 */
  redialMinMs?: number;
  /** Longest delay between two redials of one path, in ms. @default 2000 */
  redialMaxMs?: number;
  /** The multipath HELLO/WELCOME exchange on a new path connection must finish within this, in ms. @default 5000 */
  handshakeTimeoutMs?: number;
  /** A graceful close waits this long for the peer to confirm every frame, then resets, in ms. @default 5000 */
  closeTimeoutMs?: number;
  /**
   * Bytes this node holds per link before the application consumed them;
   * the peer transmits no more than this ahead of what was consumed.
   * @default 8 MiB
   */
  receiveWindow?: number;
  /** Unacknowledged bytes per logical link after which `send` returns false. @default 2 MiB */
  highWaterMark?: number;
  /** Path connections that passed their own handshake and have not yet said HELLO. @default 64 */
  maxPendingPaths?: number;
}

const ms = z.number().int().min(1).max(MAX_TIMER_MS);

/** The schema of `MultipathOptions` (exported for the docs test, not from the package entry point). */
export const multipathOptionsSchema = z
  .strictObject({
    policy: z.enum(['active-standby', 'both-active']).default(MULTIPATH_DEFAULTS.policy),
    heartbeatIntervalMs: ms.default(MULTIPATH_DEFAULTS.heartbeatIntervalMs),
    pathTimeoutMs: ms.default(MULTIPATH_DEFAULTS.pathTimeoutMs),
    linkTimeoutMs: ms.default(MULTIPATH_DEFAULTS.linkTimeoutMs),
    redialMinMs: ms.default(MULTIPATH_DEFAULTS.redialMinMs),
    redialMaxMs: ms.default(MULTIPATH_DEFAULTS.redialMaxMs),
    handshakeTimeoutMs: ms.default(MULTIPATH_DEFAULTS.handshakeTimeoutMs),
    closeTimeoutMs: ms.default(MULTIPATH_DEFAULTS.closeTimeoutMs),
    receiveWindow: z.number().int().min(64 * 1024).max(2 ** 31 - 1).default(MULTIPATH_DEFAULTS.receiveWindow),
    highWaterMark: z.number().int().min(1).max(2 ** 31 - 1).default(MULTIPATH_DEFAULTS.highWaterMark),
    maxPendingPaths: z.number().int().min(1).max(100_000).default(MULTIPATH_DEFAULTS.maxPendingPaths),
  })
  .refine((o) => o.pathTimeoutMs > o.heartbeatIntervalMs, {
    message: 'must be more than heartbeatIntervalMs (a healthy idle path would be declared failed)',
    path: ['pathTimeoutMs'],
  })
  .refine((o) => o.redialMaxMs >= o.redialMinMs, { message: 'must be at least redialMinMs', path: ['redialMaxMs'] });

export type ResolvedMultipathOptions = z.output<typeof multipathOptionsSchema>;

const pathsSchema = z
  .array(
    z.custom<TransportFactory>(
      (v) => typeof v === 'object' && v !== null && typeof (v as TransportFactory).create === 'function',
      'expected a transport factory such as tcp({...}) or memory({...})',
    ),
  )
  .min(1)
  .max(MAX_PATHS);

export function resolvePaths(paths: unknown): TransportFactory[] {
  return parseOptions('multipath', pathsSchema, paths ?? null) as TransportFactory[];
}

export function resolveOptions(options: unknown): ResolvedMultipathOptions {
  return parseOptions('multipath', multipathOptionsSchema, options);
}
