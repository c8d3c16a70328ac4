/**
 * What callers of the registry's API pass, checked before anything is
 * asked: a mistake fails at once with REGISTRY_ERR_INVALID_ARGUMENT rather
 * than as a TypeError from deep inside, a refusal from the sequencer, or
 * not at all (a prefix of 5 matched the keys starting with "5").
 */
import { isAbortSignal } from '@clusterinfra/core';
import { RegistryError } from './errors.js';

function invalid(message: string): RegistryError {
  return new RegistryError('REGISTRY_ERR_INVALID_ARGUMENT', message);
}

/** `createRegistry`'s node: something that registers key services (a ClusterNode). */
export function checkNode(node: unknown): void {
  if (typeof node !== 'object' || node === null || typeof (node as { registerKeyService?: unknown }).registerKeyService !== 'function') {
    throw invalid('createRegistry takes a ClusterNode (created, not yet started)');
  }
}

/** A call's options: undefined (none) or a plain object. */
function optionsOf(options: unknown, call: string): Record<string, unknown> {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw invalid(`${call}'s options must be an object`);
  return options as Record<string, unknown>;
}

function checkSignalAndTimeout(o: Record<string, unknown>): void {
  if (o.signal !== undefined && !isAbortSignal(o.signal)) throw invalid('signal must be an AbortSignal');
  const ms = o.timeoutMs;
  if (ms !== undefined && (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0)) throw invalid(`timeoutMs must be a finite number >= 0, got ${String(ms)}`);
}

/** `start`'s options. */
export function checkStartOptions(options: unknown): void {
  checkSignalAndTimeout(optionsOf(options, 'start'));
}

/** `put`'s and `delete`'s options: `expectVersion` a version (0: absent), `owned` (put only) a boolean. */
export function checkWriteOptions(options: unknown, call: 'put' | 'delete'): void {
  const o = optionsOf(options, call);
  checkSignalAndTimeout(o);
  const v = o.expectVersion;
  if (v !== undefined && !(typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)) {
    throw invalid(`expectVersion must be an entry's version (an integer >= 0; 0: the key must be absent), got ${String(v)}`);
  }
  if (call === 'put' && o.owned !== undefined && typeof o.owned !== 'boolean') throw invalid(`owned must be a boolean, got ${String(o.owned)}`);
}

/** A key prefix (`entries`, `watch`). */
export function checkPrefix(prefix: unknown): void {
  if (typeof prefix !== 'string') throw invalid(`a prefix is a string, got ${typeof prefix}`);
}

/** `watch`'s options. */
export function checkWatchOptions(options: unknown): void {
  const o = optionsOf(options, 'watch');
  if (o.signal !== undefined && !isAbortSignal(o.signal)) throw invalid('signal must be an AbortSignal');
  if (o.initial !== undefined && typeof o.initial !== 'boolean') throw invalid(`initial must be a boolean, got ${String(o.initial)}`);
}
