import { type Clock, parseOptions } from '@clusterinfra/core';
import { z } from 'zod';
import { REGISTRY_DEFAULTS as D } from './constants.js';

/** Options of one registry (one named map) on one node. Every node that uses the map passes the same `name`, `subservice` and limits. */
export interface RegistryOptions {
  /** The map's name; its key service is `registry.<name>`. */
  name: string;
  /** Subservice of its key-service methods (`keyservice` channel) and of its replica service (on `channel`), 1–65535. */
  subservice: number;
  /** Channel of the replica service (the sequencer's pushes). @default 'default' */
  channel?: string;
  /** Make the map's key service critical: the cluster is not formed without a sequencer. @default false */
  critical?: boolean;
  /** The clock for the consistency check and waits. @default node.clock (the node's own: keep it) */
  clock?: Clock;
  /** Entries in the map. @default 10000 */
  maxEntries?: number;
  /** Bytes of all keys and values (UTF-8 key + JSON text of the value). @default 8 MiB */
  maxBytes?: number;
  /** Bytes of one entry (key + value). @default 64 KiB */
  maxEntryBytes?: number;
  /** Bytes of one key. @default 512 */
  maxKeyBytes?: number;
  /** Nesting depth of a value. @default 32 */
  maxDepth?: number;
  /** Watchers open at once on this node. @default 256 */
  maxWatchers?: number;
  /** Events a watcher may fall behind by before it is ended with REGISTRY_ERR_WATCH_OVERFLOW. @default 10000 */
  maxWatchQueue?: number;
  /** Changes a replica holds while it waits for a gap to fill or a snapshot. @default 4096 */
  maxBuffered?: number;
  /** How long the sequencer waits for a replica to apply a change before it drops it (the replica then resyncs). @default 5000 */
  pushTimeoutMs?: number;
  /** How often a replica asks the sequencer whether it still follows it (and resyncs if not). @default 1000 */
  checkIntervalMs?: number;
}

const pos = z.number().int().positive();
const schema = z.strictObject({
  name: z.string().min(1).max(100),
  subservice: z.number().int().min(1).max(65535),
  channel: z.string().min(1).default(D.channel),
  critical: z.boolean().default(D.critical),
  clock: z.custom<Clock>((v) => typeof v === 'object' && v !== null && typeof (v as Clock).now === 'function').optional(),
  maxEntries: pos.default(D.maxEntries),
  maxBytes: pos.default(D.maxBytes),
  maxEntryBytes: pos.default(D.maxEntryBytes),
  maxKeyBytes: pos.default(D.maxKeyBytes),
  maxDepth: pos.max(1000).default(D.maxDepth),
  maxWatchers: pos.default(D.maxWatchers),
  maxWatchQueue: pos.default(D.maxWatchQueue),
  maxBuffered: pos.default(D.maxBuffered),
  pushTimeoutMs: pos.default(D.pushTimeoutMs),
  checkIntervalMs: pos.default(D.checkIntervalMs),
});

export type ResolvedRegistryOptions = z.output<typeof schema>;

export function resolveOptions(o: RegistryOptions): ResolvedRegistryOptions {
  return parseOptions('registry', schema, o);
}
