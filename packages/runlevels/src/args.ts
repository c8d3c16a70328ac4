/**
 * What `createRunLevels` is given, checked before anything is listened to
 * or written: a node or registry of the wrong kind fails at once with
 * REGISTRY_ERR_INVALID_ARGUMENT, and options of the wrong shape with
 * InvalidOptionError (CONFIG_ERR_INVALID_OPTION) naming the option, as zod
 * options elsewhere do. Before, a null node or registry failed in start()
 * as a TypeError, `phases: 'abc'` walked through the phases 'a', 'b', 'c',
 * and an `enter` that was not a function failed on the first step, leaving
 * the walk half started.
 *
 * Plain checks rather than a zod schema: the package does not depend on zod.
 */
import { InvalidOptionError } from '@clusterinfra/core';
import { RegistryError } from '@clusterinfra/registry';

const OPTIONS = new Set(['phases', 'enter', 'leave']);

function hasMethods(v: unknown, names: readonly string[]): boolean {
  return typeof v === 'object' && v !== null && names.every((m) => typeof (v as Record<string, unknown>)[m] === 'function');
}

function badOption(path: string, why: string): InvalidOptionError {
  return new InvalidOptionError(path, `runlevels: invalid option ${path}: ${why}`);
}

/** `createRunLevels`'s arguments: a ClusterNode, a Registry, and options of the right shape. */
export function checkArguments(node: unknown, registry: unknown, options: unknown): void {
  if (!hasMethods(node, ['membership', 'info', 'setInfo'])) throw new RegistryError('REGISTRY_ERR_INVALID_ARGUMENT', 'createRunLevels takes a ClusterNode');
  if (!hasMethods(registry, ['get', 'put', 'delete', 'entries', 'on', 'off'])) {
    throw new RegistryError('REGISTRY_ERR_INVALID_ARGUMENT', 'createRunLevels takes a Registry (createRegistry) as its second argument');
  }
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw badOption('(root)', 'options must be an object');
  for (const key of Object.keys(options)) if (!OPTIONS.has(key)) throw badOption('(root)', `unknown option ${JSON.stringify(key)}`);
  const { phases, enter, leave } = options as Record<string, unknown>;
  if (!Array.isArray(phases)) throw badOption('phases', 'must be a list of phase names');
  phases.forEach((p, i) => {
    if (typeof p !== 'string' || p.length === 0) throw badOption(`phases.${i}`, `must be a non-empty string, got ${JSON.stringify(p)}`);
  });
  if (enter !== undefined && typeof enter !== 'function') throw badOption('enter', 'must be a function');
  if (leave !== undefined && typeof leave !== 'function') throw badOption('leave', 'must be a function');
}
