/**
 * What crosses the wire, with one source of truth per shape (zod, types
 * inferred). Snapshots travel as JSON text in a Uint8Array: ICS sends a
 * large one out of line, in chunks, so a map is not bound by the maximum
 * message size; the receiver checks the shape (and each value) before use.
 */
import { z } from 'zod';
import { RegistryError, type RegistryErrorCode, REGISTRY_ERROR_CODES } from './errors.js';
import type { Change, Entry, Snapshot, WriteOp } from './types.js';
import { checkValue } from './values.js';

const int = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const ownerSchema = z.strictObject({ node: int, incarnation: int });
// Values are checked by checkValue (plain data, bounded depth): zod only lets them through.
const valueSchema = z.unknown();

const entrySchema = z.strictObject({ key: z.string().min(1), value: valueSchema, version: int, owner: ownerSchema.optional() });

export const snapshotSchema = z.strictObject({ epoch: int, seq: int, entries: z.array(entrySchema) });

export const changeSchema = z.strictObject({
  epoch: int.min(1),
  seq: int.min(1),
  kind: z.enum(['put', 'delete']),
  key: z.string().min(1),
  value: valueSchema.optional(),
  owner: ownerSchema.optional(),
  cause: z.enum(['write', 'owner-down']),
});

export const applySchema = z.strictObject({ changes: z.array(changeSchema).min(1).max(100_000) });

export const writeSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('put'), key: z.string(), value: valueSchema, expectVersion: int.optional(), owned: z.boolean().optional() }),
  z.strictObject({ kind: z.literal('delete'), key: z.string(), expectVersion: int.optional() }),
]);

export const statusSchema = z.strictObject({ epoch: int, seq: int });

/** The sequencer's answer to a write: data, not a thrown error, so the code survives the trip. */
export type WriteReply =
  | { ok: true; version: number; existed: boolean }
  | { ok: false; code: RegistryErrorCode; message: string; current?: Entry | null };

const codeSchema = z.enum(Object.keys(REGISTRY_ERROR_CODES) as [RegistryErrorCode, ...RegistryErrorCode[]]);
export const writeReplySchema = z.union([
  z.strictObject({ ok: z.literal(true), version: int, existed: z.boolean() }),
  z.strictObject({ ok: z.literal(false), code: codeSchema, message: z.string(), current: entrySchema.nullable().optional() }),
]);

export function encodeSnapshot(s: Snapshot): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(s));
}

/** Decode and check a snapshot; throws a ZodError or RegistryError on anything else. */
export function decodeSnapshot(bytes: unknown, maxDepth: number): Snapshot {
  if (!(bytes instanceof Uint8Array)) throw new RegistryError('REGISTRY_ERR_INVALID_VALUE', 'a snapshot travels as bytes');
  const s = snapshotSchema.parse(JSON.parse(new TextDecoder().decode(bytes))) as Snapshot;
  for (const e of s.entries) checkValue(e.value, maxDepth);
  return s;
}

export function parseChanges(args: unknown, maxDepth: number): Change[] {
  const { changes } = applySchema.parse(args);
  for (const c of changes) if (c.value !== undefined) checkValue(c.value, maxDepth);
  return changes as Change[];
}

export function parseWrite(args: unknown): WriteOp {
  return writeSchema.parse(args) as WriteOp;
}
