/**
 * Options are validated with zod at the edge: a bad option fails fast with
 * an InvalidOptionError naming the option's path.
 */
import type { z } from 'zod';
import { InvalidOptionError } from '../errors/index.js';

export function parseOptions<S extends z.ZodType>(component: string, schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = issue.path.map(String).join('.') || '(root)';
  throw new InvalidOptionError(path, `${component}: invalid option ${path}: ${issue.message}`);
}
