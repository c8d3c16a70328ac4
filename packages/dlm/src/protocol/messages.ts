/**
 * The DLM's messages: one source of truth, zod schemas with the types
 * derived from them. They travel in ordered, deduplicated batches (see
 * driver.ts); each carries the recovery round it belongs to, and a
 * receiver drops a message of an older round (the round that replaced it
 * rebuilt everything that message could have changed).
 *
 * Message kinds (`t`) are append-only.
 */
import { z } from 'zod';
import { LOCK_MODES } from '../modes.js';

/** Limits a peer's message must keep (a hostile or buggy one costs bounded memory). */
export const WIRE_LIMITS = {
  /** Longest resource name, in UTF-16 code units. */
  maxResourceLength: 256,
  /** Largest value block, in bytes. */
  maxValueBytes: 1024,
  /** Most locks or resource records in one report message. */
  maxReportItems: 256,
  /** Most members of one round. */
  maxMembers: 4096,
  /** Most messages in one delivered batch. */
  maxBatch: 512,
} as const;

const mode = z.enum(LOCK_MODES);
const int = z.number().int().nonnegative();
const resource = z.string().min(1).max(WIRE_LIMITS.maxResourceLength);
const value = z.custom<Uint8Array>((v) => v instanceof Uint8Array && v.byteLength <= WIRE_LIMITS.maxValueBytes, `a value block: bytes, at most ${WIRE_LIMITS.maxValueBytes}`);

export const valueBlockSchema = z.object({ value: value.nullable(), version: int, valid: z.boolean() });

const member = z.tuple([int, int]);

/** A lock as its owner reports it to the resource's (new) master during recovery. */
export const lockReportSchema = z.object({
  id: int,
  resource,
  granted: mode.nullable(),
  requested: mode.nullable(),
  token: int,
  noQueue: z.boolean(),
  vb: valueBlockSchema,
  /** `held`: as it stands; `cancel`: its request or conversion is being cancelled; `release`: being released. */
  phase: z.enum(['held', 'cancel', 'release']),
  /** For `release`, or a conversion down from PW or EX under way: the value written. */
  value: value.optional(),
});

/** What a former master hands on about a resource: its value block, queue order and holders. */
export const resourceRecordSchema = z.object({
  resource,
  /** The round in which the sender became its master (the newest record wins). */
  fromRound: int,
  vb: valueBlockSchema,
  /** Conversion queue, then waiting queue: [node, incarnation, id]. */
  order: z.array(z.tuple([int, int, int])).max(1_000_000),
  /** The granted locks: [node, incarnation, id, mode]; the new master drops (once) those of nodes gone since. */
  holders: z.array(z.tuple([int, int, int, mode])).max(1_000_000),
});

export const messageSchema = z.discriminatedUnion('t', [
  // owner → master
  z.object({ t: z.literal('req'), round: int, id: int, resource, mode, noQueue: z.boolean(), convert: z.boolean(), value: value.optional() }),
  z.object({ t: z.literal('rel'), round: int, id: int, resource, value: value.optional() }),
  z.object({ t: z.literal('cancel'), round: int, id: int, resource }),
  // master → owner
  z.object({ t: z.literal('grant'), round: int, id: int, mode, token: int, vb: valueBlockSchema }),
  z.object({ t: z.literal('refuse'), round: int, id: int, reason: z.enum(['would-block', 'cancelled', 'deadlock', 'limit']) }),
  z.object({ t: z.literal('blocking'), round: int, id: int, mode }),
  z.object({ t: z.literal('relack'), round: int, id: int }),
  // every member → every member, at the start of a round (in parts; `last` ends it)
  z.object({
    t: z.literal('report'),
    round: int,
    members: z.array(member).min(1).max(WIRE_LIMITS.maxMembers),
    locks: z.array(lockReportSchema).max(WIRE_LIMITS.maxReportItems),
    records: z.array(resourceRecordSchema).max(WIRE_LIMITS.maxReportItems),
    last: z.boolean(),
    // Added later (optional): the cluster history (node.historyId) the round belongs to.
    history: z.string().max(256).optional(),
    // Added later (optional): the members that may master resources this round, when the
    // DLM is restricted to roles (absent: every member); a node adopting the round takes it.
    masters: z.array(int).max(WIRE_LIMITS.maxMembers).optional(),
  }),
]);

export const batchSchema = z.object({
  /** The receiver's incarnation the sender means: a batch for a former incarnation is refused. */
  to: int,
  /** Sequence number of the first message, per (sender incarnation, receiver incarnation). */
  seq: int,
  msgs: z.array(messageSchema).min(1).max(WIRE_LIMITS.maxBatch),
});

export type Message = z.infer<typeof messageSchema>;
export type LockReport = z.infer<typeof lockReportSchema>;
export type ResourceRecord = z.infer<typeof resourceRecordSchema>;
export type Batch = z.infer<typeof batchSchema>;
