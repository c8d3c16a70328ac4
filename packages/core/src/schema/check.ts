/**
 * Validation of decoded messages without the copy.
 *
 * `schema.safeParse(value)` builds its output afresh: a new object for every
 * object, a new array for every array. For a decoded message that copy is
 * all waste (the decoder already made fresh plain data nobody else holds),
 * and on the membership hot path it was most of zod's cost: a formation of
 * 256 nodes applies 131 k transitions, and each arrived inside an append
 * that zod copied whole (docs/membership.md, "Scale": session 13).
 *
 * `safeParse` here answers as zod does, from the same schema (the schemas
 * stay the one source of truth): for plain data (plain objects, arrays,
 * primitives) it runs a checker compiled once from the schema's definition
 * and, when that passes, hands back `value` itself. Everything else (a
 * value that fails, or that is not plain data, or a schema using a kind
 * the compiler does not know: a refinement, a transform, a default) goes
 * to zod, whose result (its issues, its output) is then the answer.
 *
 * So the compiled checker must never pass a value zod refuses or would
 * output differently; test/schema-check.test.ts holds it to that on random
 * values for every kind it knows and for every membership message.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import type { z } from 'zod';

/** True when `value` is plain data that `schema` accepts as it is (its output would equal `value`). */
type Check = (value: unknown) => boolean;

/** The parts of a zod definition the compiler reads (zod 4's `_zod.def`). */
interface Def {
  readonly type: string;
  readonly checks?: readonly { readonly _zod: { readonly def: CheckDef } }[];
  readonly shape?: Readonly<Record<string, z.ZodType>>;
  readonly catchall?: z.ZodType;
  readonly innerType?: z.ZodType;
  readonly element?: z.ZodType;
  readonly keyType?: z.ZodType;
  readonly valueType?: z.ZodType;
}

interface CheckDef {
  readonly check: string;
  readonly format?: string;
  readonly value?: number;
  readonly inclusive?: boolean;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly length?: number;
  readonly abort?: boolean;
  readonly when?: unknown;
}

const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

/** The values an enum or a literal accepts, as zod holds them. */
function valuesOf(schema: z.ZodType): ReadonlySet<unknown> {
  const values = (schema as unknown as { _zod: { values?: unknown } })._zod.values;
  if (!(values instanceof Set)) throw new Unsupported('enum or literal without its values');
  return values as ReadonlySet<unknown>;
}

/** Thrown inside the compiler for a kind it does not know: the schema is then always zod's. */
class Unsupported extends Error {}

const compiled = new WeakMap<z.ZodType, Check | null>();

/** The checker compiled from `schema`, or null when zod must answer every value. */
export function checkerOf(schema: z.ZodType): Check | null {
  let c = compiled.get(schema);
  if (c === undefined) {
    try {
      c = compile(schema);
    } catch (err) {
      if (!(err instanceof Unsupported)) throw err;
      c = null;
    }
    compiled.set(schema, c);
  }
  return c;
}

/**
 * `schema.safeParse(value)`, except that a value the compiled checker
 * passes is returned as it is, not copied.
 */
export function safeParse<S extends z.ZodType>(schema: S, value: unknown): z.ZodSafeParseResult<z.output<S>> {
  const check = checkerOf(schema);
  if (check !== null && check(value)) return { success: true, data: value as z.output<S> };
  return schema.safeParse(value) as z.ZodSafeParseResult<z.output<S>>;
}

/**
 * A plain object, of `Object.prototype`: what the decoder makes, and the
 * only object the checker passes (zod's output of any other, a null
 * prototype's included, is an object of `Object.prototype`: not equal).
 */
function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;
}

function compile(schema: z.ZodType): Check {
  const def = defOf(schema);
  switch (def.type) {
    case 'unknown':
    case 'any':
      noChecks(def);
      return () => true;
    case 'boolean':
      noChecks(def);
      return (v) => typeof v === 'boolean';
    case 'null':
      noChecks(def);
      return (v) => v === null;
    case 'number':
      return numberCheck(def);
    case 'string':
      return lengthChecked(def, (v) => typeof v === 'string', codePoints);
    case 'enum':
    case 'literal': {
      noChecks(def);
      // zod's own set of the values it accepts (for an enum made from a
      // TypeScript numeric enum, the numbers only, not the reverse-mapped names).
      const values = valuesOf(schema);
      return (v) => values.has(v);
    }
    case 'optional': {
      noChecks(def);
      const inner = compile(def.innerType!);
      return (v) => v === undefined || inner(v);
    }
    case 'nullable': {
      noChecks(def);
      const inner = compile(def.innerType!);
      return (v) => v === null || inner(v);
    }
    case 'array': {
      const element = compile(def.element!);
      return lengthChecked(
        def,
        (v) => {
          if (!Array.isArray(v)) return false;
          for (let i = 0; i < v.length; i++) if (!element(v[i])) return false;
          return true;
        },
        (v) => (v as unknown[]).length,
      );
    }
    case 'record':
      return recordCheck(def);
    case 'object':
      return objectCheck(def);
    default:
      throw new Unsupported(def.type);
  }
}

function noChecks(def: Def): void {
  if (def.checks !== undefined && def.checks.length > 0) throw new Unsupported(`${def.type} with checks`);
}

/**
 * A check compiled as unconditional. zod guards its length checks with a
 * `when` (the value has a length), which the type test before them already
 * makes true; any other condition is not known here.
 */
function plain(c: CheckDef): CheckDef {
  const lengthCheck = c.check === 'min_length' || c.check === 'max_length' || c.check === 'length_equals';
  if (c.when !== undefined && !lengthCheck) throw new Unsupported(`conditional ${c.check}`);
  return c;
}

function numberCheck(def: Def): Check {
  let integer = false;
  let min = Number.NEGATIVE_INFINITY;
  let minInclusive = true;
  let max = Number.POSITIVE_INFINITY;
  let maxInclusive = true;
  for (const { _zod } of def.checks ?? []) {
    const c = plain(_zod.def);
    if (c.check === 'number_format' && c.format === 'safeint') integer = true;
    else if (c.check === 'greater_than' && typeof c.value === 'number' && (c.value > min || (c.value === min && !c.inclusive))) {
      min = c.value;
      minInclusive = c.inclusive === true;
    } else if (c.check === 'less_than' && typeof c.value === 'number' && (c.value < max || (c.value === max && !c.inclusive))) {
      max = c.value;
      maxInclusive = c.inclusive === true;
    } else if (c.check !== 'greater_than' && c.check !== 'less_than') throw new Unsupported(`number ${c.check} ${c.format ?? ''}`);
  }
  return (v) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) return false;
    if (integer && !Number.isSafeInteger(v)) return false;
    if (minInclusive ? v < min : v <= min) return false;
    return maxInclusive ? v <= max : v < max;
  };
}

/**
 * Strings and arrays: `is`, then the length checks on `lengthOf` (zod counts
 * a string's code points, not its UTF-16 units). The exact count is taken
 * only when the units leave it in doubt: a code point is one or two units.
 */
function lengthChecked(def: Def, is: (v: unknown) => boolean, lengthOf: (v: unknown) => number): Check {
  let min = 0;
  let max = Number.POSITIVE_INFINITY;
  for (const { _zod } of def.checks ?? []) {
    const c = plain(_zod.def);
    if (c.check === 'min_length' && typeof c.minimum === 'number') min = Math.max(min, c.minimum);
    else if (c.check === 'max_length' && typeof c.maximum === 'number') max = Math.min(max, c.maximum);
    else if (c.check === 'length_equals' && typeof c.length === 'number') {
      min = Math.max(min, c.length);
      max = Math.min(max, c.length);
    } else throw new Unsupported(`${def.type} ${c.check}`);
  }
  return (v) => {
    if (!is(v)) return false;
    const units = (v as { length: number }).length;
    if (units >= 2 * min && units <= max) return true;
    const n = lengthOf(v);
    return n >= min && n <= max;
  };
}

/** The code points of a string (a surrogate pair is one; a lone surrogate is one too). */
function codePoints(v: unknown): number {
  const s = v as string;
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    if ((s.charCodeAt(i) & 0xfc00) === 0xd800 && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n--;
      i++;
    }
  }
  return n;
}

/**
 * `z.record(z.string(), value)`. zod reads a record's keys with
 * `Reflect.ownKeys` and leaves out `__proto__`: a record with symbol or
 * hidden keys, or an own `__proto__`, goes to zod.
 */
function recordCheck(def: Def): Check {
  noChecks(def);
  const keyDef = defOf(def.keyType!);
  if (keyDef.type !== 'string') throw new Unsupported('record keyed by other than string');
  noChecks(keyDef);
  const value = compile(def.valueType!);
  return (v) => {
    if (!isPlainObject(v)) return false;
    let n = 0;
    for (const k in v) {
      if (k === '__proto__' || !value(v[k])) return false;
      n++;
    }
    return Reflect.ownKeys(v).length === n;
  };
}

/**
 * An object, strict (`z.strictObject`) or stripping (`z.object`): every
 * key the value has must be in the shape (an unknown key fails a strict
 * schema, and a stripping one would output less than the value), and
 * every shape key must pass.
 */
function objectCheck(def: Def): Check {
  noChecks(def);
  if (def.catchall !== undefined && defOf(def.catchall).type !== 'never') throw new Unsupported('object with a catchall');
  const shape = def.shape ?? {};
  const keys = Object.keys(shape);
  const known = new Set(keys);
  const checks = keys.map((k) => compile(shape[k]!));
  // zod wants a key that is not optional present and defined, even when its
  // schema takes anything (`z.unknown()`, `z.any()`).
  const required = keys.map((k) => defOf(shape[k]!).type !== 'optional');
  return (v) => {
    if (!isPlainObject(v)) return false;
    for (let i = 0; i < keys.length; i++) {
      const x = v[keys[i]!];
      if ((x === undefined && required[i]) || !checks[i]!(x)) return false;
    }
    for (const k in v) if (!known.has(k)) return false;
    return true;
  };
}
