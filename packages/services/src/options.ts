import { parseOptions, type PoolConfig, poolConfigSchema } from '@clusterinfra/core';
import type { Registry } from '@clusterinfra/registry';
import { z } from 'zod';
import { type Policy, POLICIES } from './balance.js';
import { MAX_ATTEMPTS, SERVICES_DEFAULTS as D } from './constants.js';

/** Options of the services layer on one node. Every node passes the same `subservice` and `channel`. */
export interface ServicesOptions {
  /** The replicated map where services and subscriptions are announced (`createRegistry`, before `node.start()`). */
  registry: Registry;
  /** Subservice of the event service (on `channel`), 0–65535; must not clash with another service on that channel. */
  subservice: number;
  /** Channel of the event service. @default 'default' */
  channel?: string;
  /** How `call` chooses a node when the call does not say. @default 'round-robin' */
  policy?: Policy;
  /** Nodes a by-name call tries before it gives up (a retry goes to a node not tried yet). @default 3 */
  maxAttempts?: number;
  /** Services this node serves by name. @default 256 */
  maxServed?: number;
  /** Subscriptions open on this node. @default 1024 */
  maxSubscriptions?: number;
  /** Events waiting for one subscription's handler before the event service stops taking more (the publishers are then slowed by flow control). @default 1024 */
  maxQueue?: number;
  /** By-name calls in flight from this node. @default 10000 */
  maxPending?: number;
  /** How often this node checks that its announcements are in the map under its current incarnation (and writes them again if not). @default 1000 */
  announceIntervalMs?: number;
  /** Handler pool of the event service. @default { max: 16, queue: 4096 } */
  pool?: PoolConfig;
}

const pos = z.number().int().positive();
// `pool` is checked by ICS's own schema (poolConfigSchema): ICS checks it again
// when it registers the event service, but only in start(), after the registry
// started (a pool of { max: -1 } was taken here and failed there).
const schema = z.strictObject({
  registry: z.custom<Registry>((v) => typeof v === 'object' && v !== null && typeof (v as Registry).put === 'function' && typeof (v as Registry).entries === 'function', 'a Registry'),
  subservice: z.number().int().min(0).max(65535),
  channel: z.string().min(1).default(D.channel),
  policy: z.enum(POLICIES as [Policy, ...Policy[]]).default(D.policy),
  maxAttempts: pos.max(MAX_ATTEMPTS).default(D.maxAttempts),
  maxServed: pos.default(D.maxServed),
  maxSubscriptions: pos.default(D.maxSubscriptions),
  maxQueue: pos.default(D.maxQueue),
  maxPending: pos.default(D.maxPending),
  announceIntervalMs: pos.default(D.announceIntervalMs),
  pool: poolConfigSchema.prefault({ max: D.poolMax, queue: D.poolQueue }),
});

export type ResolvedServicesOptions = z.output<typeof schema>;

export function resolveOptions(o: ServicesOptions): ResolvedServicesOptions {
  return parseOptions('services', schema, o);
}
