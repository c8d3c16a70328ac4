/**
 * What CLMS and key services send each other, as zod schemas: the one
 * source of truth. Every membership message is validated at the edge (a
 * mistyped or rogue message is refused with INVALID_ARGUMENT and changes
 * nothing), and the TypeScript types of transitions, members and messages
 * are inferred from the same schemas (read-only, as the public types have
 * always been). docs/protocol.md describes each message.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import { z } from 'zod';
import { InvalidArgumentError } from '../../errors/index.js';
import { safeParse } from '../../schema/check.js';

/** What a schema infers, read-only all the way down (arrays included). */
export type Frozen<T> = T extends readonly (infer U)[] ? readonly Frozen<U>[] : T extends object ? { readonly [K in keyof T]: Frozen<T[K]> } : T;

// ---------------------------------------------------------------- transitions and members

/**
 * Node states. Legal moves (only the master commits them):
 * NeverUp → ComingUp → Up → ShuttingDown (clean leave) | GoingDown (failure) → Down,
 * and Down → ComingUp for a new incarnation once every node finished cleanup.
 */
export const nodeStateSchema = z.enum(['NeverUp', 'ComingUp', 'Up', 'ShuttingDown', 'GoingDown', 'Down']);
export type NodeState = z.infer<typeof nodeStateSchema>;

/** What a transition records. `Up → Up` transitions record a master change or new metadata. */
export const transitionKindSchema = z.enum(['state', 'master', 'meta', 'keyservice']);
export type TransitionKind = z.infer<typeof transitionKindSchema>;

/** A key service a node may host, as announced when it joins. */
export const hostedKeyServiceSchema = z.strictObject({
  name: z.string().min(1).max(200),
  critical: z.boolean(),
  /** Where its methods live on the `keyservice` channel, so any member can call it by name. */
  subservice: z.number().int().min(1).max(0xffff).optional(),
  /** Its methods that are safe to retry on a new host. */
  idempotent: z.array(z.string().max(200)).max(1000).optional(),
});
export type HostedKeyService = Frozen<z.infer<typeof hostedKeyServiceSchema>>;

/** What a `keyservice` transition says about one key service. */
export const keyServiceChangeSchema = z.strictObject({
  name: z.string().min(1).max(200),
  /** Grows with every activation; a fencing token for external systems. */
  epoch: z.number().int().min(0),
  /**
   * `assigned`: `node` takes over (failover, data pull) as host of `epoch`;
   * `ready`: it serves; `vacant`: no eligible node (non-critical);
   * `halted`: a critical key service has no eligible node left.
   */
  phase: z.enum(['assigned', 'ready', 'vacant', 'halted']),
  /** For `assigned`: the host it takes over from by hand-over (a clean leave). */
  handoverFrom: z.number().int().min(1).optional(),
});
export type KeyServiceChange = Frozen<z.infer<typeof keyServiceChangeSchema>>;

/** One numbered, clusterwide membership event. */
export const transitionSchema = z.strictObject({
  /** 1, 2, 3, …: every node applies the same numbers in the same order (M1, M2). */
  number: z.number().int().min(1),
  /** Term of the master that committed it. */
  term: z.number().int().min(1),
  kind: transitionKindSchema,
  node: z.number().int().min(1),
  incarnation: z.number().int().min(0),
  from: nodeStateSchema,
  to: nodeStateSchema,
  /** Why, in words: `joined`, `left`, `declared down by API`, `heartbeat timeout`, … */
  cause: z.string().max(1000),
  /** Wall-clock ms at the master when it was proposed. */
  time: z.number(),
  /** The node's address (on joins) and metadata (on joins and `meta`). */
  address: z.string().max(1000).optional(),
  meta: z.record(z.string(), z.unknown()).optional(),
  /** On joins: the key services the node may host, in its order of preference. */
  keyServices: z.array(hostedKeyServiceSchema).max(1000).optional(),
  /** On `keyservice` transitions. */
  keyService: keyServiceChangeSchema.optional(),
});
/**
 * A transition as the history holds it and the wire carries it, plus, only
 * on delivered events, `replayed`: true when the event delivers a transition
 * after the fact rather than as it was applied here (the history a late
 * joiner receives with its join, what `watch({ since })` replays). The
 * schema is strict, so `replayed` never crosses the wire.
 */
export type Transition = Frozen<z.infer<typeof transitionSchema>> & { readonly replayed?: boolean };

export const memberSchema = z.strictObject({
  node: z.number().int().min(1),
  state: nodeStateSchema,
  incarnation: z.number().int().min(0),
  address: z.string().max(1000),
  meta: z.record(z.string(), z.unknown()),
  /** Key services this node may host, in its order of preference. */
  keyServices: z.array(hostedKeyServiceSchema).max(1000),
  /** Number of the transition that last changed this member. */
  since: z.number().int().min(0),
});
export type MemberInfo = Frozen<z.infer<typeof memberSchema>>;

/** Which cluster history (see `historyIdOf`); null while empty. */
const historyIdSchema = z.string().max(128).nullable();

/** A history as a late joiner gets it: the membership after `number`, then the transitions after it. */
export const snapshotSchema = z.strictObject({
  /** Which cluster history this is (see `historyIdOf`); null while empty. */
  id: historyIdSchema,
  /** The membership after transition `number` (0: empty). */
  number: z.number().int().min(0),
  term: z.number().int().min(0),
  members: z.array(memberSchema).max(65_535),
  /** Transitions after `number`, in order. */
  tail: z.array(transitionSchema).max(10_000_000),
  /**
   * The last `keyservice` transition of each key service among those the
   * snapshot covers (numbers up to `number`), by number: where each key
   * service lives and at which epoch survives the history's bound, so a
   * joiner's view (and, as master, its next epoch) starts from it. Absent
   * when the snapshot covers none.
   */
  keyServices: z.array(transitionSchema).max(100_000).optional(),
});
export type HistorySnapshot = Frozen<z.infer<typeof snapshotSchema>>;

// ---------------------------------------------------------------- CLMS requests (service `clms`)

/** `append`: the master of `term` sends entries; those up to `commit` are committed. */
export const appendSchema = z.strictObject({
  term: z.number().int().min(1),
  history: historyIdSchema,
  commit: z.number().int().min(0),
  entries: z.array(transitionSchema).max(100_000),
  /** The master's local-health multiplier, as in `heartbeat` (an append stands for the member's next heartbeat). */
  health: z.number().int().min(2).max(1_000).optional(),
  /**
   * The entries are committed and sent to a member that votes on none
   * (`voters: 'candidates'`): it answers once it owes the barrier reports
   * they make it owe, carrying them (bounded wait; docs/protocol.md,
   * "Reports in the append's answer").
   */
  reports: z.literal(true).optional(),
  /**
   * With `reports`: the `seq` of the last answer carrying reports this
   * master got from the member in its term. Those reports arrived and go
   * no more (docs/protocol.md, "Reports in the append's answer").
   */
  heard: z.number().int().min(1).optional(),
});
export type AppendRequest = z.infer<typeof appendSchema>;

/** `heartbeat` and `commit`: the master of `term` has committed up to `commit`. */
export const heartbeatSchema = z.strictObject({
  term: z.number().int().min(1),
  history: historyIdSchema,
  commit: z.number().int().min(0),
  /** The master's local-health multiplier, sent only when above 1: its members then allow it as much longer a silence. */
  health: z.number().int().min(2).max(1_000).optional(),
});
export type HeartbeatRequest = z.infer<typeof heartbeatSchema>;

/** `vote`: a candidate asks for a vote (or, `pre`, whether it would get one). */
export const voteSchema = z.strictObject({
  term: z.number().int().min(1),
  history: historyIdSchema,
  lastNumber: z.number().int().min(0),
  lastTerm: z.number().int().min(0),
  bootstrap: z.boolean(),
  /** A pre-vote: would you vote? Changes nothing on either side. */
  pre: z.boolean(),
});
export type VoteRequest = z.infer<typeof voteSchema>;

/** `join`: a node asks the master to admit this incarnation. */
export const joinSchema = z.strictObject({
  incarnation: z.number().int().min(1),
  address: z.string().min(1).max(1000),
  meta: z.record(z.string(), z.unknown()),
  keyServices: z.array(hostedKeyServiceSchema).max(1000),
});
export type JoinRequest = z.infer<typeof joinSchema>;

/** `report`: a member tells the master something (done with a barrier, a suspicion) or asks for a change (leave, down, meta). */
export const reportSchema = z.strictObject({
  kind: z.enum(['nodeup-done', 'cleanup-done', 'suspect', 'leave', 'down', 'meta', 'keyservice-ready']),
  node: z.number().int().min(1),
  incarnation: z.number().int().min(0),
  reason: z.string().max(1000).optional(),
  meta: z.record(z.string(), z.unknown()).optional(),
  keyService: z.string().min(1).max(200).optional(),
  epoch: z.number().int().min(1).optional(),
});
export type Report = z.infer<typeof reportSchema>;

/** Barrier reports one `reports` call carries at most. */
export const MAX_REPORTS_PER_CALL = 256;

/**
 * `reports`: a member tells the master it is done with several barriers
 * (`nodeup-done`, `cleanup-done`) at once. A member has one such call under
 * way to its master at a time; the reports it comes to owe meanwhile go
 * together in the next, so a join storm costs each member a call per
 * answer rather than one per joiner. Answered `{ ok }`, one flag per report.
 */
export const reportsSchema = z.strictObject({
  reports: z
    .array(reportSchema.extend({ kind: z.enum(['nodeup-done', 'cleanup-done']) }))
    .min(1)
    .max(MAX_REPORTS_PER_CALL),
});

/** The barrier reports a learner's append answer carries (`reports`), checked as a `reports` call's are. */
export const appendAnswerReportsSchema = reportsSchema.shape.reports;

/** `fetch`: committed transitions after `after` (or a snapshot when they are no longer held). */
export const fetchSchema = z.strictObject({ after: z.number().int().min(0) });

/** `probe`: can you reach `node`? (a master verifying a suspicion asks other members). */
export const probeTargetSchema = z.strictObject({ node: z.number().int().min(1), timeoutMs: z.number().int().min(1).max(3_600_000).optional() });

/**
 * Validate a membership message: its value (the decoded value itself when
 * it is plain data the schema accepts, not a copy: schema/check.ts), or
 * INVALID_ARGUMENT naming what is wrong.
 */
export function parseMessage<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = safeParse(schema, value);
  if (!r.success) throw new InvalidArgumentError('malformed membership message', { details: r.error.issues.map((i) => i.message) });
  return r.data;
}
