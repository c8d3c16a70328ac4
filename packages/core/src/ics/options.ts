/**
 * ICS options, their defaults (in one place) and their validation.
 */
import { z } from 'zod';
import type { Clock } from '../clock/index.js';
import type { TransportFactory } from '../contracts/transport.js';
import type { Logger } from '../logging/index.js';
import type { RandomSource } from '../random/index.js';
import { InvalidArgumentError } from '../errors/index.js';

/**
 * Built-in channel numbers. Numbers below 32 are reserved for ICS and CLMS;
 * user channels take 32–65535. Append only.
 *
 * The reply and priority lanes are not numbered on the wire: a Response is
 * always on the reply lane (reply-priority when the request was priority),
 * and a raised message carries its service's channel plus the priority flag.
 * They are listed so that metrics and docs can name them.
 */
export const BuiltinChannel = {
  reply: 1,
  replyPriority: 2,
  priority: 3,
  /** CLMS membership traffic. */
  clms: 8,
  /** Coming-up nodes asking who the master is. */
  clmsProbe: 9,
  /** Key-service calls. */
  keyService: 10,
  /** Where services go when they name no channel. */
  default: 16,
} as const;

export const FIRST_USER_CHANNEL = 32;

export const DEFAULTS = {
  /** Largest encoded message, inline. */
  maxMessageSize: 1024 * 1024,
  /** Calls waiting for a reply, per node. */
  maxPendingCalls: 10_000,
  /** Deadline for a call that gives none. */
  defaultTimeoutMs: 30_000,
  /** Messages queued per node and channel before sends are refused. */
  sendQueueMessages: 4096,
  /** Bytes queued per node (all channels) before sends are refused. */
  sendQueueBytes: 64 * 1024 * 1024,
  /** Flow-control window per channel and peer. */
  window: { messages: 1024, bytes: 8 * 1024 * 1024 },
  /** Handler pool per service. */
  pool: { min: 1, max: 64, queue: 1024, priorityReserve: 16 },
  reconnect: { initialDelayMs: 50, maxDelayMs: 5000, maxAttempts: 20 },
  /** Recently finished request ids remembered per peer, to drop duplicates. */
  dedupWindow: 4096,
  /** How long `close()` waits for aborted handlers to finish. */
  closeGraceMs: 5000,
  /**
   * High-water mark ICS sets on each link: what may sit in the link ahead of
   * a priority frame (R6), besides the frame being written.
   */
  linkHighWaterMark: 64 * 1024,
  /** Uint8Array values of at least this size travel out of line. */
  bulkThreshold: 128 * 1024,
  /** Size of one out-of-line chunk. */
  bulkChunkSize: 256 * 1024,
  /** Bulk bytes in flight per link. */
  bulkWindow: 8 * 1024 * 1024,
  /** Bytes of out-of-line values a node holds for one peer while they arrive. */
  bulkReceiveBudget: 64 * 1024 * 1024,
  /**
   * Bytes a link may hold unsent (the peer is not reading) before this node
   * stops serving what that peer sends, and pauses reading it once what it
   * holds unserved is past this too.
   */
  linkBacklogHighWater: 4 * 1024 * 1024,
  /** Bytes a link may hold unsent before it is closed as a protocol violation. */
  linkBacklogMax: 64 * 1024 * 1024,
  /** Bytes of out-of-line values a node holds for all peers together. */
  bulkReceiveBudgetTotal: 256 * 1024 * 1024,
  /** Bytes of messages from all peers held for serving at once (queued, held or running). */
  receiveBudgetTotal: 64 * 1024 * 1024,
  /** What an out-of-line value is charged at least, however short (a stream costs memory beyond its bytes). */
  bulkStreamCost: 4096,
  /** Out-of-line values in one message; a frame with more is a protocol violation. */
  maxBulkRefsPerMessage: 1024,
  /** Out-of-line values pending per peer. */
  maxBulkStreamsPerPeer: 4096,
  /** How long a call in flight on a lost link waits for the node's fate (0: it fails at once). */
  linkLossGraceMs: 0,
} as const;

/**
 * The window every sender may assume before it hears from the receiver.
 * A receiver configured with a larger window grants the rest when a link
 * comes up; a smaller configured window is raised to this minimum.
 */
export const INITIAL_WINDOW = { messages: 16, bytes: 256 * 1024 } as const;

/** Bulk bytes every sender may have in flight before the receiver's grant. */
export const INITIAL_BULK_WINDOW = 1024 * 1024;

const windowSchema = z.strictObject({
  messages: z.number().int().min(INITIAL_WINDOW.messages).max(1_000_000),
  bytes: z.number().int().min(INITIAL_WINDOW.bytes).max(2 ** 31),
});

export const channelSchema = z.strictObject({
  name: z.string().min(1).max(64),
  number: z.number().int().min(FIRST_USER_CHANNEL).max(65_535),
  window: windowSchema.optional(),
});

export type ChannelDefinition = z.input<typeof channelSchema>;

export const poolSchema = z.strictObject({
  min: z.number().int().min(0).max(100_000).default(DEFAULTS.pool.min),
  max: z.number().int().min(1).max(100_000).default(DEFAULTS.pool.max),
  queue: z.number().int().min(0).max(1_000_000).default(DEFAULTS.pool.queue),
  queuePerPeer: z.number().int().min(0).max(1_000_000).optional(),
  priorityReserve: z.number().int().min(0).max(100_000).default(DEFAULTS.pool.priorityReserve),
});

export type PoolConfig = z.input<typeof poolSchema>;

export const icsOptionsSchema = z.strictObject({
  transport: z.custom<TransportFactory>(
    (v) => typeof v === 'object' && v !== null && typeof (v as TransportFactory).create === 'function',
    'expected a transport factory such as tcp({...}) or memory({...})',
  ),
  clusterName: z.string().min(1).max(255),
  nodeNum: z.number().int().min(1).max(2 ** 31 - 1),
  incarnation: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  clock: z.custom<Clock>((v) => typeof v === 'object' && v !== null && 'setTimeout' in v).optional(),
  random: z.custom<RandomSource>((v) => typeof v === 'object' && v !== null && 'next' in v).optional(),
  logger: z.custom<Logger>((v) => typeof v === 'object' && v !== null && 'child' in v).optional(),
  peers: z
    .union([
      z.record(z.string().regex(/^[1-9]\d*$/, 'node numbers'), z.string().min(1)),
      z.custom<(nodeNum: number) => string | undefined>((v) => typeof v === 'function'),
    ])
    .optional(),
  admitIncarnation: z.custom<(info: { node: number; incarnation: number; current: number | undefined }) => boolean | Promise<boolean>>((v) => typeof v === 'function').optional(),
  channels: z.array(channelSchema).max(1024).default([]),
  maxMessageSize: z.number().int().min(64 * 1024).max(2 ** 30).default(DEFAULTS.maxMessageSize),
  maxPendingCalls: z.number().int().min(1).max(10_000_000).default(DEFAULTS.maxPendingCalls),
  defaultTimeoutMs: z.number().int().min(1).max(2 ** 31 - 1).default(DEFAULTS.defaultTimeoutMs),
  sendQueueMessages: z.number().int().min(1).max(10_000_000).default(DEFAULTS.sendQueueMessages),
  sendQueueBytes: z.number().int().min(1024).max(2 ** 40).default(DEFAULTS.sendQueueBytes),
  window: windowSchema.default(DEFAULTS.window),
  reconnect: z
    .strictObject({
      initialDelayMs: z.number().int().min(1).default(DEFAULTS.reconnect.initialDelayMs),
      maxDelayMs: z.number().int().min(1).default(DEFAULTS.reconnect.maxDelayMs),
      maxAttempts: z.number().int().min(0).default(DEFAULTS.reconnect.maxAttempts),
    })
    .default(DEFAULTS.reconnect),
  dedupWindow: z.number().int().min(16).max(1_000_000).default(DEFAULTS.dedupWindow),
  closeGraceMs: z.number().int().min(0).max(2 ** 31 - 1).default(DEFAULTS.closeGraceMs),
  linkHighWaterMark: z.number().int().min(1).max(2 ** 30).default(DEFAULTS.linkHighWaterMark),
  bulkThreshold: z.number().int().min(1024).max(2 ** 31).default(DEFAULTS.bulkThreshold),
  bulkChunkSize: z.number().int().min(1024).max(16 * 1024 * 1024).default(DEFAULTS.bulkChunkSize),
  bulkWindow: z.number().int().min(INITIAL_BULK_WINDOW).max(2 ** 31).default(DEFAULTS.bulkWindow),
  bulkReceiveBudget: z.number().int().min(0).max(2 ** 40).default(DEFAULTS.bulkReceiveBudget),
  linkBacklogHighWater: z.number().int().min(1).max(2 ** 40).default(DEFAULTS.linkBacklogHighWater),
  linkBacklogMax: z.number().int().min(1).max(2 ** 40).default(DEFAULTS.linkBacklogMax),
  bulkReceiveBudgetTotal: z.number().int().min(0).max(2 ** 40).default(DEFAULTS.bulkReceiveBudgetTotal),
  bulkStreamCost: z.number().int().min(1).max(2 ** 30).default(DEFAULTS.bulkStreamCost),
  receiveBudgetTotal: z.number().int().min(64 * 1024).max(2 ** 40).default(DEFAULTS.receiveBudgetTotal),
  maxBulkRefsPerMessage: z.number().int().min(1).max(1_000_000).default(DEFAULTS.maxBulkRefsPerMessage),
  maxBulkStreamsPerPeer: z.number().int().min(1).max(10_000_000).default(DEFAULTS.maxBulkStreamsPerPeer),
  linkLossGraceMs: z.number().int().min(0).max(2 ** 31 - 1).default(DEFAULTS.linkLossGraceMs),
});

/** Options of `createIcs`. Every field with a default says so. */
export interface IcsOptions {
  /** The lower layer: `tcp({...})` or `memory({...})`. */
  transport: TransportFactory;
  clusterName: string;
  /** This node's number, a positive integer fixed per node. */
  nodeNum: number;
  /** New at every start. @default derived from the clock's wall time and the random source */
  incarnation?: number;
  /** @default the real clock */
  clock?: Clock;
  /** @default the crypto random source */
  random?: RandomSource;
  /** @default silent (or NODE_DEBUG=clusterinfra) */
  logger?: Logger;
  /** Where to reach other nodes: `{ 2: '10.0.0.2:7000' }` or a function. CLMS fills this in. */
  peers?: Record<string, string> | ((nodeNum: number) => string | undefined);
  /**
   * Asked when a node dials in as an incarnation this endpoint does not
   * talk to yet (`current`: the one it talks to, if any): false refuses the
   * link (`Refused` with `NodeNumberInUse`), true admits it; a promise holds
   * the link unread until it settles (a rejection admits). CLMS answers false
   * when the incarnation its history holds for that number still answers
   * (two processes with one node number). @default every incarnation admitted
   */
  admitIncarnation?: (info: { node: number; incarnation: number; current: number | undefined }) => boolean | Promise<boolean>;
  /** User channels (numbers 32–65535), each with its own flow-control window. @default [] */
  channels?: ChannelDefinition[];
  /** Largest encoded message. @default 1 MiB */
  maxMessageSize?: number;
  /** Calls waiting for replies, per node. @default 10000 */
  maxPendingCalls?: number;
  /** Deadline of calls that give none. @default 30000 */
  defaultTimeoutMs?: number;
  /** Messages queued per node and channel before sends fail. @default 4096 */
  sendQueueMessages?: number;
  /** Bytes queued per node before sends fail. @default 64 MiB */
  sendQueueBytes?: number;
  /** Default flow-control window of a channel, per peer. @default { messages: 1024, bytes: 8 MiB } */
  window?: { messages: number; bytes: number };
  /** Reconnect backoff (exponential with full jitter). @default { initialDelayMs: 50, maxDelayMs: 5000, maxAttempts: 20 } */
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number; maxAttempts?: number };
  /** Finished request ids remembered per peer to drop duplicates. @default 4096 */
  dedupWindow?: number;
  /** How long `close()` waits for aborted handlers that ignore their signal. @default 5000 */
  closeGraceMs?: number;
  /** Bytes a link may hold before ICS stops handing it frames: bounds how long a priority frame waits. @default 64 KiB */
  linkHighWaterMark?: number;
  /** Unsent bytes on a link past which the peer's messages wait unserved (and, past it again, unread). @default 4 MiB */
  linkBacklogHighWater?: number;
  /** Unsent bytes on a link past which it is closed (the peer does not read). @default 64 MiB */
  linkBacklogMax?: number;
  /** Uint8Array values of at least this many bytes travel out of line, in chunks. @default 128 KiB */
  bulkThreshold?: number;
  /** Bytes per out-of-line chunk; keep it below the transport's max frame size. @default 256 KiB */
  bulkChunkSize?: number;
  /** Out-of-line bytes in flight per link (the receiver grants it). @default 8 MiB */
  bulkWindow?: number;
  /** Out-of-line bytes held per peer while they arrive; larger values are refused with RESOURCE_EXHAUSTED. @default 64 MiB */
  bulkReceiveBudget?: number;
  /** Out-of-line bytes held for all peers together; past it values are refused with RESOURCE_EXHAUSTED. @default 256 MiB */
  bulkReceiveBudgetTotal?: number;
  /**
   * Bytes of requests and one-way messages from all peers held at once, from
   * admission until their handler finished (waiting in a pool, held behind a
   * write backlog, or running); past it a message is refused with
   * RESOURCE_EXHAUSTED (a counted drop for one-way messages). Membership
   * channels (`clms`, `clms-probe`) are not charged. A lone message larger
   * than the budget is still admitted when nothing else is held.
   * @default 64 MiB
   */
  receiveBudgetTotal?: number;
  /** Bytes every out-of-line value is charged at least, however short. @default 4096 */
  bulkStreamCost?: number;
  /** Out-of-line values one message may carry; the receiver closes a link whose frame carries more. @default 1024 */
  maxBulkRefsPerMessage?: number;
  /** Out-of-line values pending per peer; past it messages are refused with RESOURCE_EXHAUSTED. @default 4096 */
  maxBulkStreamsPerPeer?: number;
  /**
   * One death, one answer: a call whose link is lost (and no other link to
   * the node is left) waits up to this long for the node's fate. Declared
   * down meanwhile (`nodeDown`, or a newer incarnation), it fails with
   * `NodeDownError`; linked again, or still undecided when the grace ends,
   * it fails with `UnavailableError` (`mayHaveRun: true`). Its deadline and
   * cancellation work as always. CLMS sets it to its failure timeout for
   * application channels (its own calls always fail at once). 0: a lost
   * link fails its calls at once.
   * @default 0
   */
  linkLossGraceMs?: number;
}

export type ResolvedIcsOptions = z.output<typeof icsOptionsSchema>;

/**
 * Per-call options, checked before anything is sent: a negative or
 * non-finite `timeoutMs` is refused (it used to give a deadline in the past,
 * or never). Plain checks, not zod: this runs on every call.
 */
export function checkCallOptions(options: { timeoutMs?: number; signal?: unknown; headers?: unknown } | undefined): void {
  if (options === undefined) return;
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('call options must be an object', { details: [{ path: '(root)', message: 'must be an object' }] });
  const t = options.timeoutMs;
  if (t !== undefined && (typeof t !== 'number' || !Number.isFinite(t) || t < 0)) {
    throw new InvalidArgumentError(`timeoutMs must be a finite number >= 0, got ${String(t)}`, { details: [{ path: 'timeoutMs', message: 'must be >= 0' }] });
  }
  // Anything else would be listened to, and fail when the call settles (possibly at close, off any caller's path).
  if (options.signal !== undefined && !isAbortSignal(options.signal)) throw new InvalidArgumentError('signal must be an AbortSignal', { details: [{ path: 'signal', message: 'must be an AbortSignal' }] });
  const h = options.headers;
  if (h !== undefined && (typeof h !== 'object' || h === null || Array.isArray(h))) throw new InvalidArgumentError('headers must be an object of strings', { details: [{ path: 'headers', message: 'must be an object' }] });
}

/** An AbortSignal, from this realm or another (a signal from a worker or a vm context is not `instanceof` this one's). */
export function isAbortSignal(s: unknown): s is AbortSignal {
  if (s instanceof AbortSignal) return true;
  const o = s as { aborted?: unknown; addEventListener?: unknown; removeEventListener?: unknown } | null;
  return typeof o === 'object' && o !== null && typeof o.aborted === 'boolean' && typeof o.addEventListener === 'function' && typeof o.removeEventListener === 'function';
}

/** The node a call or message goes to: a positive integer. */
export function checkNode(node: unknown): void {
  if (!Number.isSafeInteger(node) || (node as number) < 1) {
    throw new InvalidArgumentError(`node must be a positive integer, got ${typeof node === 'string' ? JSON.stringify(node) : String(node)}`, { details: [{ path: 'node', message: 'must be a positive integer' }] });
  }
}

/** A service address: a service id, or `{ channel?, subservice }` (its subservice is checked when resolved). */
export function checkServiceAddress(service: unknown): void {
  if (typeof service === 'number' ? Number.isSafeInteger(service) && service >= 0 && service <= 0xffff_ffff : typeof service === 'object' && service !== null) return;
  throw new InvalidArgumentError(`service must be a service id or { channel, subservice }, got ${String(service)}`, { details: [{ path: 'service', message: 'must be a service address' }] });
}

/** A service address's subservice: an integer 0–65535 (−1 used to address another channel's service). */
export function checkSubservice(subservice: unknown): void {
  if (!Number.isInteger(subservice) || (subservice as number) < 0 || (subservice as number) > 0xffff) {
    throw new InvalidArgumentError(`subservice must be an integer 0–65535, got ${String(subservice)}`, { details: [{ path: 'subservice', message: 'must be 0–65535' }] });
  }
}
