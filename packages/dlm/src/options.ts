/** Options of a lock manager, validated at the edge (a bad one fails fast with its path). */
import { type ClusterNode, type Clock, type Logger, parseOptions } from '@clusterinfra/core';
import { z } from 'zod';
import { WIRE_LIMITS } from './protocol/messages.js';

export const DLM_DEFAULTS = {
  channel: 'default',
  subservice: 0xd10,
  band: 0,
  maxLocks: 10_000,
  maxResources: 100_000,
  deadlockTimeoutMs: 30_000,
  maxValueBytes: 64,
  deliveryTimeoutMs: 5_000,
  /** First and longest pause between delivery attempts to a peer. */
  retryMinMs: 20,
  retryMaxMs: 1_000,
  /** Most messages (a report counts its locks and records too) in one batch. */
  batchWeight: 1_024,
} as const;

export interface DlmOptions {
  /** The cluster node this lock manager runs on. Every node of the cluster runs one (same channel and subservice). */
  node: ClusterNode;
  /** The clock to schedule on. @default node.clock (the node's own: keep it) */
  clock?: Clock;
  /** A pino-compatible logger. @default node.logger (the node's own, silent unless the node was given one) */
  logger?: Logger;
  /** ICS channel of the lock service. @default 'default' */
  channel?: string;
  /** ICS subservice of the lock service. @default 0xd10 (3344) */
  subservice?: number;
  /** CLMS band of the DLM's nodedown callback (lower runs first). @default 0 */
  band?: number;
  /** Locks this node may own at once (granted or waiting). @default 10000 */
  maxLocks?: number;
  /** Resources this node may master at once. @default 100000 */
  maxResources?: number;
  /**
   * A request still waiting after this long is presumed deadlocked: it is
   * cancelled and fails with DeadlockError. 0 turns the bound off.
   * @default 30000
   */
  deadlockTimeoutMs?: number;
  /** Largest value block, in bytes (at most 1024). @default 64 */
  maxValueBytes?: number;
  /** Timeout of one delivery call to a peer; a failed one is retried. @default 5000 */
  deliveryTimeoutMs?: number;
  /**
   * How long the nodedown callback waits for the recovery round to finish
   * before it lets the CLMS cleanup barrier go on. @default twice the node's failureTimeoutMs
   */
  cleanupWaitMs?: number;
  /**
   * Only members with at least one of these roles (their member metadata's
   * `roles`, as @clusterinfra/services' `withRoles` sets it) master
   * resources; every node still locks through them. Give every node the
   * same list. @default every member masters (no restriction)
   */
  masterRoles?: readonly string[];
}

const schema = z.object({
  node: z.custom<ClusterNode>((v) => typeof v === 'object' && v !== null && 'registerSubsystem' in v && 'membership' in v, 'a ClusterNode'),
  clock: z.custom<Clock>((v) => typeof v === 'object' && v !== null && 'setTimeout' in v && 'now' in v, 'a Clock').optional(),
  logger: z.custom<Logger>((v) => typeof v === 'object' && v !== null && 'child' in v, 'a Logger').optional(),
  channel: z.string().min(1).max(64).default(DLM_DEFAULTS.channel),
  subservice: z.number().int().min(0).max(65_535).default(DLM_DEFAULTS.subservice),
  band: z.number().int().default(DLM_DEFAULTS.band),
  maxLocks: z.number().int().min(1).max(10_000_000).default(DLM_DEFAULTS.maxLocks),
  maxResources: z.number().int().min(1).max(100_000_000).default(DLM_DEFAULTS.maxResources),
  deadlockTimeoutMs: z.number().int().min(0).max(2 ** 31 - 1).default(DLM_DEFAULTS.deadlockTimeoutMs),
  maxValueBytes: z.number().int().min(0).max(WIRE_LIMITS.maxValueBytes).default(DLM_DEFAULTS.maxValueBytes),
  deliveryTimeoutMs: z.number().int().min(1).max(2 ** 31 - 1).default(DLM_DEFAULTS.deliveryTimeoutMs),
  cleanupWaitMs: z.number().int().min(0).max(2 ** 31 - 1).optional(),
  masterRoles: z.array(z.string().min(1).max(64)).min(1).max(32).readonly().optional(),
});

export type ResolvedDlmOptions = Omit<z.output<typeof schema>, 'node' | 'clock' | 'logger'>;

export function parseDlmOptions(options: DlmOptions): ResolvedDlmOptions {
  const { node: _node, clock: _clock, logger: _logger, ...rest } = parseOptions('dlm', schema, options);
  return rest;
}
