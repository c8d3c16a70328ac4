/** docs/services.md has exactly one row per error code, and one per option with its default. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { type ErrorCode, isClusterInfraError } from '@clusterinfra/core';
import { isServicesError, SERVICES_DEFAULTS, SERVICES_ERROR_CODES, ServicesError } from '../src/index.js';

const doc = readFileSync(fileURLToPath(new URL('../../../docs/services.md', import.meta.url)), 'utf8');
const section = (title: string): string => doc.split(/^## /m).find((s) => s.startsWith(title))!;

it('docs/services.md has exactly one row per error code', () => {
  const rows = [...section('Errors').matchAll(/^\|\s*`(SERVICES_ERR_[A-Z_]+)`\s*\|/gm)].map((m) => m[1]);
  expect(new Set(rows).size).toBe(rows.length);
  expect([...rows].sort()).toEqual(Object.keys(SERVICES_ERROR_CODES).sort());
});

it('docs/services.md gives every option its default', () => {
  const rows = new Map([...section('Options').matchAll(/^\|\s*`(\w+)`\s*\|\s*([^|]+?)\s*\|/gm)].map((m) => [m[1]!, m[2]!]));
  const { poolMax, poolQueue, ...plain } = SERVICES_DEFAULTS;
  for (const [k, v] of Object.entries(plain)) expect([`\`${String(v)}\``, String(v)], `${k}: ${rows.get(k)}`).toContain(rows.get(k));
  expect(rows.get('pool')).toBe(`\`{ max: ${poolMax}, queue: ${poolQueue} }\``);
  for (const k of ['registry', 'subservice']) expect(rows.get(k)).toBe('(required)');
});

it("services codes are core ErrorCodes (core's extension point): no cast, core's helpers take them", () => {
  const limit: unknown = new ServicesError('SERVICES_ERR_LIMIT', 'too many');
  expect(isClusterInfraError(limit, 'SERVICES_ERR_LIMIT')).toBe(true);
  expect(isClusterInfraError(limit, 'SERVICES_ERR_CLOSED')).toBe(false);
  expect(isServicesError(limit, 'SERVICES_ERR_LIMIT')).toBe(true);
  // Type-checked (npm run typecheck): a services code is an ErrorCode.
  const code: ErrorCode = 'SERVICES_ERR_NO_PROVIDER';
  expect(code in SERVICES_ERROR_CODES).toBe(true);
});
