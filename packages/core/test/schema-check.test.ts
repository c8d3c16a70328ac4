/**
 * schema/check.ts answers as zod does: its compiled checker passes a value
 * only when zod accepts it and would output a value equal to it, and it
 * passes every plain value zod accepts (else it saves nothing). Held on
 * random values built around each schema's bounds, for every kind the
 * compiler knows and every membership message.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import * as messages from '../src/clms/protocol/messages.js';
import { checkerOf, safeParse } from '../src/schema/check.js';

type Def = {
  type: string;
  checks?: { _zod: { def: { check: string; minimum?: number; maximum?: number; length?: number; value?: number } } }[];
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  element?: z.ZodType;
  valueType?: z.ZodType;
  entries?: Record<string, unknown>;
  values?: unknown[];
};
const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

/** A numeric TypeScript enum as it compiles: names to numbers and numbers back to names. */
const NUMERIC = { Low: 0, High: 1, 0: 'Low', 1: 'High' } as unknown as Record<string, number>;

/** Any plain data, as a decoder could make it. */
const anyPlain: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, undefined, true, false, 0, -0, 1, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, -(2 ** 53), '', 'x'),
  fc.anything({ maxDepth: 2, withNullPrototype: true, withObjectString: true }),
);

/** A length near `min`..`max` (either side of each bound). */
function lengthNear(def: Def): fc.Arbitrary<number> {
  let min = 0;
  let max = 8;
  for (const c of def.checks ?? []) {
    const d = c._zod.def;
    if (d.check === 'min_length') min = d.minimum!;
    if (d.check === 'max_length') max = Math.min(d.maximum!, 40);
    if (d.check === 'length_equals') min = max = d.length!;
  }
  return fc.constantFrom(Math.max(0, min - 1), min, min + 1, max - 1, max, max + 1).filter((n) => n >= 0);
}

/** Values around what `schema` accepts: valid ones, each edge, and now and then anything. */
function near(schema: z.ZodType, depth = 0): fc.Arbitrary<unknown> {
  const def = defOf(schema);
  const self = ((): fc.Arbitrary<unknown> => {
    switch (def.type) {
      case 'number': {
        const bounds = (def.checks ?? []).flatMap((c) => (c._zod.def.value === undefined ? [] : [c._zod.def.value - 1, c._zod.def.value, c._zod.def.value + 0.5, c._zod.def.value + 1]));
        return fc.oneof(fc.constantFrom(0, 1, -1, 0.5, 2 ** 53 - 1, 2 ** 53, Number.NaN, Number.NEGATIVE_INFINITY, ...bounds), fc.integer(), fc.double());
      }
      case 'string':
        return lengthNear(def).chain((n) => fc.string({ minLength: n, maxLength: n, unit: fc.constantFrom('a', 'é', '😀') }));
      case 'enum':
        return fc.oneof(fc.constantFrom(...Object.values(def.entries!), ...Object.keys(def.entries!)), fc.string({ maxLength: 3 }));
      case 'literal':
        return fc.oneof(fc.constantFrom(...def.values!), fc.constantFrom(false, 1, 'true'));
      case 'optional':
        return fc.oneof(fc.constant(undefined), near(def.innerType!, depth));
      case 'nullable':
        return fc.oneof(fc.constant(null), near(def.innerType!, depth));
      case 'array':
        return lengthNear(def).chain((n) => fc.array(near(def.element!, depth + 1), { minLength: Math.min(n, 4), maxLength: Math.min(n, 4) }).map((a) => (n > 4 ? [...a, ...Array.from({ length: n - 4 }, () => a[0])] : a)));
      case 'record':
        return fc.dictionary(fc.constantFrom('a', 'b', 'node', '__proto__', 'constructor'), anyPlain, { maxKeys: 3 });
      case 'object': {
        const keys = Object.keys(def.shape!);
        return fc
          .record(Object.fromEntries(keys.map((k) => [k, near(def.shape![k]!, depth + 1)])) as Record<string, fc.Arbitrary<unknown>>)
          .chain((o) =>
            fc.tuple(fc.subarray(keys, { minLength: keys.length - 1 }), fc.option(fc.constantFrom('extra', '__proto__'), { freq: 5 }), fc.boolean()).map(([kept, extra, nullProto]) => {
              const out: Record<string, unknown> = nullProto ? Object.create(null) : {};
              for (const k of kept) if (o[k] !== undefined || k.length % 2 === 0) out[k] = o[k];
              if (extra !== null) Object.defineProperty(out, extra, { value: 1, enumerable: true, configurable: true, writable: true });
              return out;
            }),
          );
      }
      case 'boolean':
        return fc.oneof(fc.boolean(), fc.constantFrom(0, 'true'));
      default:
        return anyPlain;
    }
  })();
  return depth > 3 ? self : fc.oneof({ weight: 12, arbitrary: self }, { weight: 1, arbitrary: anyPlain });
}

/** Fails when `check` disagrees with zod on `v`, or passes a value zod would copy into something else. */
function agrees(schema: z.ZodType, v: unknown): void {
  const check = checkerOf(schema)!;
  const zod = schema.safeParse(v);
  const fast = check(v);
  if (fast) {
    expect(zod.success, 'the checker passed what zod refuses').toBe(true);
    expect(zod.data).toStrictEqual(v);
  } else if (zod.success) {
    // zod takes it: the checker may leave it to zod only when it is not plain data.
    const plain = JSON.stringify(v) !== undefined && !hasExotic(v);
    expect(plain && JSON.stringify(zod.data) === JSON.stringify(v), `the checker left plain ${JSON.stringify(v)} to zod`).toBe(false);
  }
}

/** Null prototypes, `__proto__` keys, undefined members: what the checker leaves to zod. */
function hasExotic(v: unknown): boolean {
  if (Array.isArray(v)) return v.some(hasExotic);
  if (typeof v !== 'object' || v === null) return v === undefined || (typeof v === 'number' && !Number.isFinite(v));
  if (Object.getPrototypeOf(v) !== Object.prototype) return true;
  return Object.keys(v).some((k) => k === '__proto__' || hasExotic((v as Record<string, unknown>)[k]));
}

const kinds: [string, z.ZodType][] = [
  ['number', z.number()],
  ['int with bounds', z.number().int().min(1).max(0xffff)],
  ['exclusive bounds', z.number().gt(0).lt(10)],
  ['string with bounds', z.string().min(1).max(5)],
  ['string of one length', z.string().length(3)],
  ['enum', z.enum(['NeverUp', 'Up', 'Down'])],
  ['enum of a numeric TypeScript enum', z.enum(NUMERIC)],
  ['literal', z.literal(true)],
  ['optional', z.number().int().optional()],
  ['nullable', z.string().max(4).nullable()],
  ['array with bounds', z.array(z.number().int()).min(1).max(6)],
  ['record', z.record(z.string(), z.unknown())],
  ['strict object', z.strictObject({ a: z.number(), b: z.string().optional(), c: z.array(z.boolean()).max(3) })],
  ['stripping object', z.object({ a: z.number(), b: z.enum(['x', 'y']).optional() })],
  ['object of anything', z.strictObject({ a: z.unknown(), b: z.any().optional(), c: z.number().optional() })],
  ['extended object', z.strictObject({ a: z.number(), k: z.string() }).extend({ k: z.enum(['p', 'q']) })],
  ['boolean', z.boolean()],
  ['unknown', z.unknown()],
];
const messageSchemas = Object.entries(messages).filter(([k, v]) => k.endsWith('Schema') && v instanceof z.ZodType) as [string, z.ZodType][];

describe('schema/check: the compiled checker agrees with zod', () => {
  it('compiles every membership message schema', () => {
    expect(messageSchemas.length).toBeGreaterThan(10);
    for (const [name, s] of messageSchemas) expect(checkerOf(s), name).not.toBeNull();
  });

  for (const [name, schema] of [...kinds, ...messageSchemas]) {
    it(name, () => {
      expect(checkerOf(schema)).not.toBeNull();
      fc.assert(
        fc.property(near(schema), (v) => agrees(schema, v)),
        { numRuns: 400, seed: 7 },
      );
    });
  }

  it('passes a valid append as it is, without a copy', () => {
    const t = { number: 1, term: 1, kind: 'state', node: 2, incarnation: 1, from: 'NeverUp', to: 'ComingUp', cause: 'joined', time: 5, address: 'node-2', meta: {}, keyServices: [] };
    const append = { term: 1, history: 'h', commit: 0, entries: [t] };
    const r = safeParse(messages.appendSchema, append);
    expect(r.success && r.data).toBe(append);
    expect(messages.parseMessage(messages.transitionSchema, t)).toBe(t);
  });

  it('leaves to zod what it cannot answer: its issues, its output', () => {
    const bad = safeParse(messages.heartbeatSchema, { term: 0, history: null, commit: 0 });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(['term']);
    // An unknown key on a stripping object: zod's output, without it.
    const strip = z.object({ a: z.number() });
    const stripped = safeParse(strip, { a: 1, b: 2 });
    expect(stripped.success && stripped.data).toStrictEqual({ a: 1 });
    // A transform or a refinement is not compiled: zod answers every value.
    const doubled = z.number().transform((n) => n * 2);
    expect(checkerOf(doubled)).toBeNull();
    expect(safeParse(doubled, 2)).toMatchObject({ success: true, data: 4 });
    const even = z.strictObject({ n: z.number().refine((n) => n % 2 === 0) });
    expect(checkerOf(even)).toBeNull();
    expect(safeParse(even, { n: 3 }).success).toBe(false);
    // A class instance is no plain data: zod's answer (a copy), not the instance.
    class Point {
      a = 1;
    }
    const p = new Point();
    const r = safeParse(z.strictObject({ a: z.number() }), p);
    expect(r.success && r.data).not.toBe(p);
    expect(messages.parseMessage(messages.fetchSchema, { after: 3 })).toEqual({ after: 3 });
    expect(() => messages.parseMessage(messages.fetchSchema, { after: -1 })).toThrow(expect.objectContaining({ code: 'ICS_ERR_INVALID_ARGUMENT' }));
  });
});
