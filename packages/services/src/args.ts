/**
 * What callers of the services API pass, checked before anything is done or
 * announced: a mistake fails at once with SERVICES_ERR_INVALID_ARGUMENT
 * rather than as a TypeError from inside (a null descriptor, options or
 * registration), late (a handler that is not a function failed on each
 * event), or not at all (a policy of 'fastest' was round-robin, a delivery
 * of 'all' balanced, attempts of 'x' unbounded, `idempotent: 'count'`
 * matched by substring). Names and roles keep their own codes
 * (SERVICES_ERR_INVALID_NAME, SERVICES_ERR_INVALID_ROLES).
 *
 * Plain checks, not zod: `call` and `publish` run them on every call.
 */
import { isAbortSignal } from '@clusterinfra/core';
import { POLICIES } from './balance.js';
import { MAX_ATTEMPTS } from './constants.js';
import { ServicesError } from './errors.js';

const DELIVERIES: readonly unknown[] = ['broadcast', 'balanced'];

function invalid(message: string): ServicesError {
  return new ServicesError('SERVICES_ERR_INVALID_ARGUMENT', message);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A call's options: undefined (none) or a plain object. */
function optionsOf(options: unknown, call: string): Record<string, unknown> {
  if (options === undefined) return {};
  if (!isObject(options)) throw invalid(`${call}: options must be an object, got ${options === null ? 'null' : typeof options}`);
  return options;
}

function checkSignal(o: Record<string, unknown>): void {
  // Anything else would be listened to later, and throw a TypeError then.
  if (o.signal !== undefined && !isAbortSignal(o.signal)) throw invalid('signal must be an AbortSignal');
}

function checkTimeout(o: Record<string, unknown>): void {
  const ms = o.timeoutMs;
  if (ms !== undefined && (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0)) throw invalid(`timeoutMs must be a finite number >= 0, got ${String(ms)}`);
}

function checkBoolean(o: Record<string, unknown>, key: string): void {
  if (o[key] !== undefined && typeof o[key] !== 'boolean') throw invalid(`${key} must be a boolean, got ${String(o[key])}`);
}

/** `createServices`'s node: a ClusterNode (what the layer reads the membership and the ICS endpoint from). */
export function checkNode(node: unknown): void {
  const n = node as { membership?: unknown; info?: unknown } | null;
  if (typeof n !== 'object' || n === null || typeof n.membership !== 'function' || typeof n.info !== 'function') {
    throw invalid('createServices takes a ClusterNode');
  }
}

/** `start`'s options. */
export function checkStartOptions(options: unknown): void {
  const o = optionsOf(options, 'start');
  checkSignal(o);
  checkTimeout(o);
}

/** A node number (`rolesOf`). */
export function checkNodeNumber(n: unknown): void {
  if (!Number.isSafeInteger(n) || (n as number) < 1) throw invalid(`a node number is a positive integer, got ${typeof n === 'string' ? JSON.stringify(n) : String(n)}`);
}

/** Metadata to add roles to (`withRoles`): a plain object. */
export function checkMeta(meta: unknown): void {
  if (!isObject(meta)) throw invalid(`withRoles: meta must be an object, got ${meta === null ? 'null' : typeof meta}`);
}

/** A service descriptor (`serve`, `client`): an object with `methods` (defineService or icsgen output). */
export function checkDescriptor(descriptor: unknown, call: string): void {
  if (!isObject(descriptor) || !isObject(descriptor.methods)) throw invalid(`${call} takes a service descriptor (defineService or icsgen output) with its methods`);
}

/** `register`'s registration: handlers an object of functions, `idempotent` a list of its methods. */
export function checkRegistration(reg: unknown): void {
  if (!isObject(reg)) throw invalid('register takes a service registration ({ name, subservice, handlers })');
  const { handlers, idempotent } = reg;
  if (!isObject(handlers) || !Object.values(handlers).every((h) => typeof h === 'function')) throw invalid('register: handlers must be an object of functions');
  if (idempotent === undefined) return;
  if (!Array.isArray(idempotent)) throw invalid(`register: idempotent must be a list of method names, got ${typeof idempotent}`);
  for (const m of idempotent) {
    if (typeof m !== 'string' || !Object.hasOwn(handlers, m)) throw invalid(`register: idempotent lists ${JSON.stringify(m)}, which is not one of the handlers`);
  }
}

/** `serve`'s and `register`'s options (roles are checked with their own code, the pool by ICS). */
export function checkServeOptions(options: unknown): void {
  optionsOf(options, 'serve');
}

/** A method name (`call`). */
export function checkMethod(method: unknown): void {
  if (typeof method !== 'string' || method.length === 0) throw invalid(`a method name is a non-empty string, got ${typeof method === 'string' ? '""' : String(method)}`);
}

/** A by-name call's options (`call`, a client's defaults and calls). */
export function checkCallOptions(options: unknown, call = 'call'): void {
  const o = optionsOf(options, call);
  if (o.policy !== undefined && !POLICIES.includes(o.policy as never)) throw invalid(`policy must be one of ${POLICIES.join(', ')}, got ${JSON.stringify(o.policy)}`);
  checkBoolean(o, 'idempotent');
  const a = o.attempts;
  if (a !== undefined && !(Number.isSafeInteger(a) && (a as number) >= 1 && (a as number) <= MAX_ATTEMPTS)) throw invalid(`attempts must be an integer 1-${MAX_ATTEMPTS}, got ${String(a)}`);
  checkSignal(o);
  checkTimeout(o);
}

/** `subscribe`'s handler and options (the group is a name, checked as one). */
export function checkSubscribe(handler: unknown, options: unknown): void {
  if (typeof handler !== 'function') throw invalid(`subscribe: the handler must be a function, got ${handler === null ? 'null' : typeof handler}`);
  checkSignal(optionsOf(options, 'subscribe'));
}

/** `publish`'s options. */
export function checkPublishOptions(options: unknown): void {
  const o = optionsOf(options, 'publish');
  if (o.delivery !== undefined && !DELIVERIES.includes(o.delivery)) throw invalid(`delivery must be broadcast or balanced, got ${JSON.stringify(o.delivery)}`);
  checkBoolean(o, 'confirm');
  checkSignal(o);
}

/** `providers`'s options. */
export function checkProvidersOptions(options: unknown): void {
  optionsOf(options, 'providers');
}
