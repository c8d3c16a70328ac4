/**
 * Roles: a node's roles live in its member metadata under `roles`
 * (`new ClusterNode({ meta: { roles: ['frontend'] } })`), replicated with its
 * join like every member's metadata, so every node sees every node's roles
 * without a change to core. `setInfo` replaces the metadata: keep `roles`
 * in what you pass (@clusterinfra/runlevels does).
 */
import type { MemberInfo } from '@clusterinfra/core';
import { checkMeta } from './args.js';
import { MAX_ROLE_BYTES, MAX_ROLES } from './constants.js';
import { ServicesError } from './errors.js';

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

/** `roles` as given, checked: a list of non-empty strings within the limits, without repeats. */
export function checkRoles(roles: unknown, what = 'roles'): readonly string[] {
  if (!Array.isArray(roles) || roles.length > MAX_ROLES) throw new ServicesError('SERVICES_ERR_INVALID_ROLES', `${what} must be an array of at most ${MAX_ROLES} role names`);
  for (const r of roles) {
    if (typeof r !== 'string' || r.length === 0 || bytes(r) > MAX_ROLE_BYTES) {
      throw new ServicesError('SERVICES_ERR_INVALID_ROLES', `${what}: each role is a non-empty string of at most ${MAX_ROLE_BYTES} bytes (got ${JSON.stringify(r)})`);
    }
  }
  return [...new Set(roles as string[])];
}

/** Member metadata carrying `roles`: `new ClusterNode({ meta: withRoles(['frontend']) })`. */
export function withRoles(roles: readonly string[], meta: Record<string, unknown> = {}): Record<string, unknown> {
  checkMeta(meta);
  return { ...meta, roles: [...checkRoles(roles)] };
}

/** The roles a member declared (none when its metadata has no valid `roles`). */
export function rolesOf(info: Pick<MemberInfo, 'meta'> | undefined): readonly string[] {
  const r = info?.meta.roles;
  if (!Array.isArray(r)) return [];
  return r.filter((x): x is string => typeof x === 'string');
}

/** The member has at least one of `roles` (any member when `roles` is empty). */
export function hasAnyRole(info: Pick<MemberInfo, 'meta'> | undefined, roles: readonly string[]): boolean {
  // Exported: a caller's roles that are no list would throw a TypeError below (null) or match by character (a string).
  if (!Array.isArray(roles)) throw new ServicesError('SERVICES_ERR_INVALID_ROLES', 'roles must be an array of role names');
  if (roles.length === 0) return true;
  const mine = rolesOf(info);
  return roles.some((r) => mine.includes(r));
}
