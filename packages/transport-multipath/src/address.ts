/**
 * A multipath address names every path of a node in one string, so that
 * whatever carries addresses today (ICS `peers`, CLMS seeds and the
 * membership) carries all of a node's paths unchanged:
 *
 *   multipath:<address of path 0>,<address of path 1>
 *
 * Each path address is in its own transport's format; `%` and `,` inside
 * one are written `%25` and `%2C`.
 */
import { InvalidAddressError } from '@clusterinfra/core';
import { MAX_PATHS } from './constants.js';

const PREFIX = 'multipath:';

/** `multipath:` and the path addresses; InvalidAddressError unless they are 1 to MAX_PATHS non-empty strings (else what came out would not parse). */
export function formatMultipathAddress(paths: readonly string[]): string {
  if (!Array.isArray(paths) || paths.length === 0 || paths.length > MAX_PATHS || !paths.every((p) => typeof p === 'string' && p.length > 0)) {
    throw new InvalidAddressError(String(paths), `a multipath address is made of 1 to ${MAX_PATHS} path addresses, each a non-empty string`);
  }
  return PREFIX + paths.map((p) => p.replaceAll('%', '%25').replaceAll(',', '%2C')).join(',');
}

/** The path addresses of a multipath address; InvalidAddressError when it is not one. */
export function parseMultipathAddress(address: unknown): string[] {
  if (typeof address !== 'string') throw new InvalidAddressError(String(address), 'not a string');
  if (!address.startsWith(PREFIX)) throw new InvalidAddressError(address, `expected ${PREFIX}<path address>,<path address>`);
  const parts = address.slice(PREFIX.length).split(',');
  if (parts.length > MAX_PATHS) throw new InvalidAddressError(address, `more than ${MAX_PATHS} paths`);
  return parts.map((p) => {
    if (p.length === 0) throw new InvalidAddressError(address, 'an empty path address');
    if (/%(?!25|2C)/i.test(p)) throw new InvalidAddressError(address, 'a bad %-escape in a path address');
    return p.replace(/%(25|2C)/gi, (_m, hex: string) => (hex === '25' ? '%' : ','));
  });
}
