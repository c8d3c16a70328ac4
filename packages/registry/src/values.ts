/**
 * Keys and values at the edge: a key is a non-empty string, a value is plain
 * data (what JSON carries), and an entry's size is the UTF-8 length of its
 * key plus its value's JSON text. The sequencer checks again what a replica
 * checked, so a peer that skipped the checks gains nothing.
 */
import { RegistryError } from './errors.js';
import type { PlainValue } from './types.js';

export interface EntryLimits {
  maxKeyBytes: number;
  maxEntryBytes: number;
  maxDepth: number;
}

export function checkKey(key: unknown, limits: Pick<EntryLimits, 'maxKeyBytes'>): string {
  if (typeof key !== 'string' || key.length === 0) throw new RegistryError('REGISTRY_ERR_INVALID_KEY', 'a key is a non-empty string');
  const bytes = Buffer.byteLength(key);
  if (bytes > limits.maxKeyBytes) throw new RegistryError('REGISTRY_ERR_INVALID_KEY', `key of ${bytes} bytes is longer than maxKeyBytes (${limits.maxKeyBytes})`);
  return key;
}

/** Throws unless `value` is plain data within `maxDepth` levels of nesting. */
export function checkValue(value: unknown, maxDepth: number, depth = 0): asserts value is PlainValue {
  if (depth > maxDepth) throw new RegistryError('REGISTRY_ERR_INVALID_VALUE', `value nested deeper than ${maxDepth} levels`);
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new RegistryError('REGISTRY_ERR_INVALID_VALUE', `${value} is not a finite number`);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) checkValue(v, maxDepth, depth + 1);
    return;
  }
  if (typeof value === 'object') {
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) throw new RegistryError('REGISTRY_ERR_INVALID_VALUE', 'objects must be plain (no class instances, Maps, Dates)');
    for (const k of Object.keys(value)) {
      if (k === '__proto__') throw new RegistryError('REGISTRY_ERR_INVALID_VALUE', 'a __proto__ key is not allowed');
      checkValue((value as Record<string, unknown>)[k], maxDepth, depth + 1);
    }
    return;
  }
  throw new RegistryError('REGISTRY_ERR_INVALID_VALUE', `a ${typeof value} is not plain data`);
}

/** Bytes an entry counts for: its key plus its value's JSON text (UTF-8). */
export function entryBytes(key: string, value: PlainValue): number {
  return Buffer.byteLength(key) + Buffer.byteLength(JSON.stringify(value));
}

/** Checks key and value and returns the entry's size; throws a typed error for bad input. */
export function checkEntry(key: unknown, value: unknown, limits: EntryLimits): number {
  const k = checkKey(key, limits);
  checkValue(value, limits.maxDepth);
  const bytes = entryBytes(k, value);
  if (bytes > limits.maxEntryBytes) {
    throw new RegistryError('REGISTRY_ERR_ENTRY_TOO_LARGE', `entry ${JSON.stringify(k)} is ${bytes} bytes, more than maxEntryBytes (${limits.maxEntryBytes})`);
  }
  return bytes;
}
