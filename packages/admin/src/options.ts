/** Options of `serveAdmin`, validated with zod at the edge. */
import { type Logger, parseOptions } from '@clusterinfra/core';
import { z } from 'zod';
import type { PathHealthSource } from './views.js';

/** Defaults in one place. */
export const ADMIN_DEFAULTS = {
  host: '127.0.0.1',
  port: 0,
  /** Request bodies are small JSON objects; anything larger is refused. */
  maxBodyBytes: 64 * 1024,
  /** Concurrent `/v1/watch` streams. */
  maxWatchers: 16,
  /** A comment line on idle event streams, so proxies and clients see the stream is alive. */
  keepAliveMs: 15_000,
  /** Transitions per `/v1/history` page. */
  historyPage: 100,
  historyPageMax: 1000,
  /** How long `POST /v1/down` and `/v1/leave` wait for the node. */
  actionTimeoutMs: 10_000,
  /** Distinct label sets of the per-service RPC metrics; more are counted under `service="other"`. */
  maxRpcSeries: 256,
} as const;

export interface AdminOptions {
  /** Interface to listen on. Loopback by default: expose it wider only behind TLS and a firewall. @default '127.0.0.1' */
  host?: string;
  /** TCP port; 0 picks a free one (read it from `AdminServer.port`). @default 0 */
  port?: number;
  /** The bearer token every request must carry (at least 16 characters). */
  token: string;
  /** Serve `GET /metrics` without the token (for a Prometheus scraper on a trusted network). @default false */
  metricsWithoutToken?: boolean;
  /** @default 64 KiB */
  maxBodyBytes?: number;
  /** Concurrent `/v1/watch` streams. @default 16 */
  maxWatchers?: number;
  /** Interval of keep-alive comments on event streams. @default 15000 */
  keepAliveMs?: number;
  /** How long `POST /v1/down` and `/v1/leave` wait for the node before answering 503. @default 10000 */
  actionTimeoutMs?: number;
  /** A pino-compatible logger. @default silent */
  logger?: Logger;
  /**
   * More series for `/metrics`: called at every scrape, its text (Prometheus
   * exposition format) is appended, e.g. `() => transport.metrics()` of a
   * multipath transport. @default none
   */
  extraMetrics?: () => string;
  /**
   * A transport that reports per-path health, e.g. the factory `multipath()`
   * returns: its links' paths are served at `GET /v1/paths` and shown on the
   * page, and its `metrics()` are appended to `/metrics`. @default none
   */
  paths?: PathHealthSource;
}

const loggerSchema = z.custom<Logger>(
  (v) => typeof v === 'object' && v !== null && typeof (v as Logger).child === 'function' && typeof (v as Logger).info === 'function',
  'expected a pino-compatible logger',
);

export const adminOptionsSchema = z.strictObject({
  host: z.string().min(1).default(ADMIN_DEFAULTS.host),
  port: z.number().int().min(0).max(65535).default(ADMIN_DEFAULTS.port),
  token: z.string().min(16, 'the token must have at least 16 characters'),
  metricsWithoutToken: z.boolean().default(false),
  maxBodyBytes: z.number().int().min(1).max(16 * 1024 * 1024).default(ADMIN_DEFAULTS.maxBodyBytes),
  maxWatchers: z.number().int().min(1).max(10_000).default(ADMIN_DEFAULTS.maxWatchers),
  keepAliveMs: z.number().int().min(10).max(3_600_000).default(ADMIN_DEFAULTS.keepAliveMs),
  actionTimeoutMs: z.number().int().min(1).max(3_600_000).default(ADMIN_DEFAULTS.actionTimeoutMs),
  logger: loggerSchema.optional(),
  extraMetrics: z.custom<() => string>((v) => typeof v === 'function', 'expected a function returning exposition text').optional(),
  paths: z
    .custom<PathHealthSource>(
      (v) => typeof v === 'object' && v !== null && typeof (v as PathHealthSource).health === 'function',
      'expected a transport with health(), such as the one multipath() returns',
    )
    .optional(),
});

export type ResolvedAdminOptions = z.output<typeof adminOptionsSchema>;

export function resolveAdminOptions(options: AdminOptions): ResolvedAdminOptions {
  return parseOptions('admin', adminOptionsSchema, options);
}
