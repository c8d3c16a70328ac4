/**
 * What icsgen-generated modules import at run time: only the schema of the
 * IDL's `any` type. Everything else they need is zod and @clusterinfra/core.
 */
import { z } from 'zod';

/** Plain data, as the ICS wire carries it. */
export type PlainData = null | boolean | number | string | Uint8Array | PlainData[] | { [key: string]: PlainData };

/**
 * Accepts plain data only: null, booleans, finite numbers, strings,
 * Uint8Array, arrays and plain objects of those. A Date, Map, class instance,
 * BigInt or undefined is refused here, at validation, instead of by the wire
 * encoder. Nesting depth is left to the wire's own limit.
 */
export const plainData: z.ZodType<PlainData, PlainData> = z.lazy(() =>
  z.union([
    z.null(),
    z.boolean(),
    z.number(),
    z.string(),
    z.instanceof(Uint8Array),
    z.array(plainData),
    z.record(z.string(), plainData),
  ]),
);
