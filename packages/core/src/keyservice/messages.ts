/**
 * The key-service protocol's requests (service `clms.keyservice`,
 * docs/protocol.md): zod schemas, the types derived from them. Pure
 * (test/architecture.test.ts).
 */
import { z } from 'zod';

const name = z.string().min(1).max(200);

/** `pull` and `handover`: the new host of `name` at `epoch` asks for data. */
export const pullSchema = z.strictObject({ name, epoch: z.number().int().min(1) });
/** `move`: the host of `name` at `epoch` asks the master to place it again (`handover`: elsewhere, collecting its data). */
export const moveSchema = z.strictObject({ name, epoch: z.number().int().min(0), handover: z.boolean() });
export type MoveRequest = z.infer<typeof moveSchema>;
/** `withdraw`: the caller no longer registers `name`: the master drops it from what the caller announced. */
export const withdrawSchema = z.strictObject({ name });
export type WithdrawRequest = z.infer<typeof withdrawSchema>;
