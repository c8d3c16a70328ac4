/**
 * What the client needs of each admin answer, checked before anything reads
 * it: an endpoint that answers JSON of another shape (another service on the
 * port, an incompatible version, a hostile server) gets ADMIN_ERR_BAD_RESPONSE
 * naming the field, never a TypeError from the formatter or a made-up
 * success ("node undefined declared down"). Objects are loose: fields a newer
 * endpoint adds pass through untouched.
 */
import { z } from 'zod';

const int = z.number().int();
const time = z.number().finite();

const keyServiceChange = z.looseObject({ name: z.string(), phase: z.string(), epoch: z.number() });

export const transitionAnswer = z.looseObject({
  number: int,
  term: int,
  kind: z.string(),
  node: int,
  from: z.string(),
  to: z.string(),
  cause: z.string().optional(),
  time,
  keyService: keyServiceChange.optional(),
});

const member = z.looseObject({
  node: int,
  state: z.string(),
  incarnation: z.number(),
  address: z.string(),
  meta: z.record(z.string(), z.unknown()).optional(),
  master: z.boolean(),
  hosts: z.array(z.string()),
});

const refused = z.looseObject({ text: z.string(), count: z.number(), lastAgoMs: z.number() });

export const statusAnswer = z.looseObject({
  cluster: z.string(),
  node: int,
  address: z.string().nullable(),
  master: int.nullable(),
  term: z.number(),
  formed: z.boolean(),
  hasQuorum: z.boolean(),
  lastTransition: z.number(),
  members: z.array(member),
  suspected: z.array(int).nullable().optional(),
  refusedHandshakes: z.array(refused).optional(),
});

export const historyAnswer = z.looseObject({
  first: z.number(),
  last: z.number(),
  transitions: z.array(transitionAnswer),
  next: int.nullable(),
});

export const keysAnswer = z.looseObject({
  formed: z.boolean(),
  keyServices: z.array(
    z.looseObject({ name: z.string(), host: int.optional(), epoch: z.number(), ready: z.boolean(), critical: z.boolean(), halted: z.boolean(), since: z.number() }),
  ),
});

export const decisionsAnswer = z.looseObject({ decisions: z.array(z.unknown()) });

/** `POST /v1/down` and `/v1/leave`. */
export const actionAnswer = z.looseObject({ ok: z.literal(true), node: int });

/** Streamed events whose data the formatter reads; other types pass as they are. */
export const eventData: Record<string, z.ZodType> = {
  transition: transitionAnswer,
  master: z.looseObject({ master: int.nullable(), term: z.number() }),
  quorum: z.looseObject({ hasQuorum: z.boolean() }),
  formed: z.looseObject({ formed: z.boolean() }),
  keyservice: z.looseObject({}),
  decision: z.looseObject({}),
};

/** `members.0.hosts: expected array, received string`: the first problem, with its path. */
export function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0]!;
  const path = issue.path.map(String).join('.');
  return `${path || '(the answer)'}: ${issue.message}`;
}
