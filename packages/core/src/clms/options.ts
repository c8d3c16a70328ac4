/** CLMS options, presets and quorum policies. */
import { z } from 'zod';
import type { Clock } from '../clock/index.js';
import type { TransportFactory } from '../contracts/transport.js';
import type { IcsOptions } from '../ics/options.js';
import { encodeBody } from '../ics/wire/codec.js';
import type { Logger } from '../logging/index.js';
import type { RandomSource } from '../random/index.js';
import type { NodedownDetector } from './detector.js';
import type { QuorumPolicy, VoterRule } from './protocol/quorum.js';

/** Timers of the membership protocol. */
export interface Timing {
  /** How often the master heartbeats members (and members expect it). */
  heartbeatIntervalMs: number;
  /** Silence after which a node is suspected. A pause shorter than this is not a failure. */
  failureTimeoutMs: number;
  /** How long a verification probe or a protocol call may take. */
  rpcTimeoutMs: number;
  /** Extra wait per position in the candidate list before standing for election. */
  electionStaggerMs: number;
  /** How often a joining node retries finding the master. */
  joinRetryMs: number;
}

/**
 * Presets, as memberlist ships LAN and local configs. `local` has fast timers
 * for tests and examples on one machine; `lan` suits a data-centre network.
 * A crashed process is found at once either way (its links break).
 */
export const presets = {
  lan: { heartbeatIntervalMs: 200, failureTimeoutMs: 1000, rpcTimeoutMs: 500, electionStaggerMs: 150, joinRetryMs: 250 },
  local: { heartbeatIntervalMs: 50, failureTimeoutMs: 300, rpcTimeoutMs: 150, electionStaggerMs: 40, joinRetryMs: 50 },
} as const satisfies Record<string, Timing>;

export { hasQuorum, type QuorumPolicy, type VoterRule } from './protocol/quorum.js';

/**
 * A source of seed addresses besides the static list: DNS, a service
 * registry, a file. `addresses()` is called each time a node looks for the
 * master; it should answer from a cache and refresh in the background, and
 * it must not throw for a lookup that finds nothing (return []).
 */
export interface Discovery {
  addresses(): Promise<string[]> | string[];
  /** Called by `close()` of the node. */
  close?(): void;
}

export interface AdmissionRequest {
  node: number;
  incarnation: number;
  address: string;
  meta: Record<string, unknown>;
}

export interface ClusterNodeOptions {
  /** This node's number, fixed per node. */
  nodeNum: number;
  clusterName: string;
  /** The lower layer: `tcp({...})` or `memory({...})`. */
  transport: TransportFactory;
  /** Node numbers allowed to be master, in order of preference. */
  candidates: number[];
  /** Addresses to probe for the master when joining (any member will do). @default [] */
  seeds?: string[];
  /** More addresses to probe, asked each time the node looks for the master (e.g. `dnsDiscovery({...})`). */
  discovery?: Discovery;
  /** Timers: a preset name or explicit values. @default 'lan' */
  preset?: keyof typeof presets;
  timing?: Partial<Timing>;
  quorum?: QuorumPolicy;
  /**
   * Who votes in elections and acknowledges commits: `members` (default),
   * every Up member; `candidates`, only the Up candidates (the others still
   * receive every transition). With `candidates` an Up of a non-candidate
   * changes no voter, so a join storm's Ups go several to an append round
   * and a cluster of hundreds forms far faster; but the cluster decides
   * only while a quorum of the candidates is up and reachable. Every node
   * of a cluster must use the same value. @default 'members'
   */
  voters?: VoterRule;
  /**
   * Who must agree to found a cluster (no history anywhere yet):
   * `all-candidates` (default) is safe when nodes restart with no memory;
   * `majority` forms with candidates missing, but a majority of candidates
   * that restart while cut off from the live cluster can found a second one.
   * A node that was a member before always needs every candidate.
   * @default 'all-candidates'
   */
  formation?: 'all-candidates' | 'majority';
  /** Admission: node numbers and addresses allowed to join, and a hook. @default everyone the transport authenticated */
  allow?: { nodes?: number[]; addresses?: string[] };
  admit?: (request: AdmissionRequest) => boolean | string | Promise<boolean | string>;
  /** Nodedown detection. @default heartbeatDetector() (heartbeat timeouts plus link loss) */
  detector?: NodedownDetector | ((timing: Timing) => NodedownDetector);
  /**
   * Local health (Lifeguard's self-awareness): each heartbeat tick that runs
   * late raises a score (by the intervals it lost, up to this), each tick on
   * time lowers it by one, and this node's own waits (failure detection,
   * verification, the silence it allows its master) are multiplied by
   * score + 1. A starved node is slow to accuse others. 0 turns it off.
   * @default 8
   */
  localHealthMax?: number;
  /** Confirm a nodedown before it is committed (return false to keep the node). */
  confirmDown?: (node: number, reason: string) => boolean | Promise<boolean>;
  /** Fence a node (e.g. power it off) before its GoingDown is committed; must resolve. */
  fence?: (node: number, incarnation: number) => Promise<void>;
  /**
   * How long the master waits after a host's GoingDown before it fails that
   * host's key services over: the old host's lease runs out within the
   * failure timeout, so no two hosts act at once even when the old one is
   * alive (declared down by the API, cut off one way).
   * @default the failure timeout; 0 when `fence` is set (the fence stopped it)
   */
  keyServiceFenceWaitMs?: number;
  /** Metadata of this node, replicated with its join. @default {} */
  meta?: Record<string, unknown>;
  /** Transitions kept in memory; late joiners get a snapshot plus this tail. @default 1000 */
  historyLimit?: number;
  /** Most nodes in the cluster. @default 1024 */
  maxNodes?: number;
  /** Most subsystems (the seeds had 15). @default 15 */
  maxSubsystems?: number;
  /** Join automatically as a new incarnation after being declared down. @default true */
  autoRejoin?: boolean;
  clock?: Clock;
  random?: RandomSource;
  logger?: Logger;
  /** Options passed to ICS (channels, windows, limits). */
  ics?: Omit<IcsOptions, 'transport' | 'clusterName' | 'nodeNum' | 'incarnation' | 'clock' | 'random' | 'logger' | 'peers'>;
}

const quorumSchema = z.union([
  z.literal('majority'),
  z.literal('none'),
  z.strictObject({ size: z.number().int().min(1) }),
  z.strictObject({ tieBreaker: z.number().int().min(1) }),
]);

const timingSchema = z.strictObject({
  heartbeatIntervalMs: z.number().int().min(1).max(600_000),
  failureTimeoutMs: z.number().int().min(2).max(3_600_000),
  rpcTimeoutMs: z.number().int().min(1).max(600_000),
  electionStaggerMs: z.number().int().min(0).max(600_000),
  joinRetryMs: z.number().int().min(1).max(600_000),
});

export const clusterNodeOptionsSchema = z
  .strictObject({
    nodeNum: z.number().int().min(1).max(2 ** 31 - 1),
    clusterName: z.string().min(1).max(255),
    transport: z.custom<TransportFactory>(
      (v) => typeof v === 'object' && v !== null && typeof (v as TransportFactory).create === 'function',
      'expected a transport factory such as tcp({...}) or memory({...})',
    ),
    candidates: z.array(z.number().int().min(1)).min(1).max(1024),
    seeds: z.array(z.string().min(1)).max(1024).default([]),
    discovery: z
      .custom<Discovery>((v) => typeof v === 'object' && v !== null && typeof (v as Discovery).addresses === 'function', 'expected an object with addresses()')
      .optional(),
    preset: z.enum(['lan', 'local']).default('lan'),
    timing: timingSchema.partial().default({}),
    quorum: quorumSchema.default('majority'),
    voters: z.enum(['members', 'candidates']).default('members'),
    formation: z.enum(['all-candidates', 'majority']).default('all-candidates'),
    allow: z.strictObject({ nodes: z.array(z.number().int().min(1)).optional(), addresses: z.array(z.string()).optional() }).optional(),
    admit: z.custom<NonNullable<ClusterNodeOptions['admit']>>((v) => typeof v === 'function').optional(),
    detector: z
      .custom<NonNullable<ClusterNodeOptions['detector']>>((v) => typeof v === 'function' || (typeof v === 'object' && v !== null && 'check' in v))
      .optional(),
    localHealthMax: z.number().int().min(0).max(64).default(8),
    confirmDown: z.custom<NonNullable<ClusterNodeOptions['confirmDown']>>((v) => typeof v === 'function').optional(),
    fence: z.custom<NonNullable<ClusterNodeOptions['fence']>>((v) => typeof v === 'function').optional(),
    keyServiceFenceWaitMs: z.number().int().min(0).max(3_600_000).optional(),
    meta: z
      .record(z.string(), z.unknown())
      .default({})
      .superRefine((meta, ctx) => {
        const problem = metaProblem(meta);
        if (problem) ctx.addIssue({ code: 'custom', message: `meta ${problem}` });
      }),
    historyLimit: z.number().int().min(16).max(10_000_000).default(1000),
    maxNodes: z.number().int().min(1).max(65_535).default(1024),
    maxSubsystems: z.number().int().min(1).max(1000).default(15),
    autoRejoin: z.boolean().default(true),
    clock: z.custom<Clock>((v) => typeof v === 'object' && v !== null && 'setTimeout' in v).optional(),
    random: z.custom<RandomSource>((v) => typeof v === 'object' && v !== null && 'next' in v).optional(),
    logger: z.custom<Logger>((v) => typeof v === 'object' && v !== null && 'child' in v).optional(),
    ics: z.record(z.string(), z.unknown()).optional(),
  })
  .superRefine((o, ctx) => {
    if (new Set(o.candidates).size !== o.candidates.length) ctx.addIssue({ code: 'custom', path: ['candidates'], message: 'candidates repeat a node' });
    // Seeds the transport cannot dial would only fail, silently, while joining.
    o.seeds.forEach((seed, i) => {
      const wrong = o.transport.checkAddress?.(seed);
      if (wrong !== undefined) ctx.addIssue({ code: 'custom', path: ['seeds', i], message: wrong });
    });
    const t = { ...presets[o.preset], ...o.timing };
    if (t.failureTimeoutMs <= t.heartbeatIntervalMs) {
      ctx.addIssue({ code: 'custom', path: ['timing', 'failureTimeoutMs'], message: 'must be longer than heartbeatIntervalMs' });
    }
  });

export type ResolvedClusterNodeOptions = z.output<typeof clusterNodeOptionsSchema>;

/**
 * The most a node's metadata may take, encoded: it travels with the join,
 * in every `meta` transition and in the snapshot every joiner receives.
 */
export const MAX_META_BYTES = 64 * 1024;

/** Why `meta` cannot be a node's metadata (`meta` option, `setInfo`), or undefined when it can: a plain object that encodes within MAX_META_BYTES. */
export function metaProblem(meta: unknown): string | undefined {
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) return 'must be a plain object';
  let bytes: number;
  try {
    bytes = encodeBody(meta).byteLength;
  } catch (err) {
    return `cannot be encoded: ${(err as Error).message.replace(/^body/, 'meta')}`;
  }
  return bytes > MAX_META_BYTES ? `takes ${bytes} bytes encoded, more than ${MAX_META_BYTES}` : undefined;
}
