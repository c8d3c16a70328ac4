/** docs/registry.md has exactly one row per registry error code, and one per option with its default. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { type ErrorCode, isClusterInfraError } from '@clusterinfra/core';
import { isRegistryError, REGISTRY_DEFAULTS, REGISTRY_ERROR_CODES, RegistryError } from '../src/index.js';

const doc = readFileSync(fileURLToPath(new URL('../../../docs/registry.md', import.meta.url)), 'utf8');
const section = (title: string): string => doc.split(/^## /m).find((s) => s.startsWith(title))!;

it('docs/registry.md has exactly one row per error code', () => {
  const rows = [...section('Errors').matchAll(/^\|\s*`(REGISTRY_ERR_[A-Z_]+)`\s*\|/gm)].map((m) => m[1]);
  expect(new Set(rows).size).toBe(rows.length);
  expect([...rows].sort()).toEqual(Object.keys(REGISTRY_ERROR_CODES).sort());
});

it('docs/registry.md gives every limit its default', () => {
  const rows = new Map([...section('Options').matchAll(/^\|\s*`(\w+)`\s*\|\s*([^|]+?)\s*\|/gm)].map((m) => [m[1]!, m[2]!]));
  const shown = (v: unknown): string[] => (typeof v === 'number' && v >= 1024 * 1024 ? [`${v / 1024 / 1024} MiB`] : typeof v === 'number' && v >= 1024 && v % 1024 === 0 ? [`${v / 1024} KiB`, String(v)] : [`\`${String(v)}\``, String(v)]);
  for (const [k, v] of Object.entries(REGISTRY_DEFAULTS)) expect(shown(v), `${k}: ${rows.get(k)}`).toContain(rows.get(k));
});

it("registry codes are core ErrorCodes (core's extension point): no cast, core's helpers take them", () => {
  const conflict: unknown = new RegistryError('REGISTRY_ERR_CONFLICT', 'moved on');
  expect(isClusterInfraError(conflict, 'REGISTRY_ERR_CONFLICT')).toBe(true);
  expect(isClusterInfraError(conflict, 'REGISTRY_ERR_FULL')).toBe(false);
  expect(isRegistryError(conflict, 'REGISTRY_ERR_CONFLICT')).toBe(true);
  const code: ErrorCode = 'REGISTRY_ERR_FULL';
  expect(code in REGISTRY_ERROR_CODES).toBe(true);
});
