/**
 * The key services this node registers (it may host them), in registration
 * order, and the activation of each, if any.
 */
import { InvalidArgumentError } from '../errors/index.js';
import type { TimerHandle } from '../clock/index.js';
import type { HostedKeyService } from '../clms/index.js';
import type { KeyServiceRegistration } from './types.js';

/** One activation of a key service on this node. */
export interface Activation {
  epoch: number;
  controller: AbortController;
  previousHost: number | undefined;
  /** Methods are served once `failoverData` is done, and no more once a hand-over began. */
  serving: boolean;
  /** A newer epoch was assigned to a node that will ask for our data (a clean leave). */
  handingOver: TimerHandle | undefined;
}

/** A registration and its activation here. */
export interface Local {
  reg: KeyServiceRegistration;
  active: Activation | undefined;
}

/**
 * The longest key-service name: its methods are served as the ICS service
 * `keyservice.<name>`, and ICS names are 1–200 characters. A longer name
 * used to be accepted here and fail `start()` (or leave a registration
 * without its methods, when the node was joining).
 */
export const MAX_KEY_SERVICE_NAME = 200 - 'keyservice.'.length;
/** Key services one node may register: a join announcing more is refused by the master (it would never join). */
const MAX_PER_NODE = 1000;
/** Idempotent methods one registration may list, and their length: what a join announcement may carry. */
const MAX_IDEMPOTENT = 1000;
const MAX_METHOD_NAME = 200;
/** The callbacks a registration may give, besides its handlers: each a function when given. */
export const CALLBACKS = ['failover', 'pullData', 'failoverData', 'handover'] as const;

const kind = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v);

/** A key service's name as the API takes it: a non-empty string (anything else would be looked up as nothing, or as its String()). */
export function checkKeyServiceName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0) throw new InvalidArgumentError(`a key service's name is a non-empty string, got ${kind(name)}`);
}

/**
 * Throws InvalidArgumentError unless `reg` is a registration this node can
 * take: everything a join announcement carries must pass the master's
 * schema (else the join is refused and `start()` never ends), and
 * everything run later must be a function (else a TypeError in a takeover).
 */
function validate(reg: KeyServiceRegistration, local: ReadonlyMap<string, Local>): void {
  if (typeof reg !== 'object' || reg === null || Array.isArray(reg)) throw new InvalidArgumentError(`a key service registration is an object { name, subservice, handlers?, ... }, got ${kind(reg)}`);
  if (typeof reg.name !== 'string' || reg.name.length === 0 || reg.name.length > MAX_KEY_SERVICE_NAME) {
    throw new InvalidArgumentError(`key service name must be a string of 1–${MAX_KEY_SERVICE_NAME} characters, got ${typeof reg.name === 'string' ? `${reg.name.length} characters` : kind(reg.name)}`);
  }
  const name = reg.name;
  if (local.has(name)) throw new InvalidArgumentError(`key service ${name} is registered already`);
  if (local.size >= MAX_PER_NODE) throw new InvalidArgumentError(`key service ${name}: a node registers at most ${MAX_PER_NODE} key services`);
  if (!Number.isInteger(reg.subservice) || reg.subservice < 1 || reg.subservice > 0xffff) {
    throw new InvalidArgumentError(`key service ${name}: subservice must be an integer 1–65535, got ${typeof reg.subservice === 'string' ? JSON.stringify(reg.subservice) : String(reg.subservice)}`);
  }
  for (const other of local.values()) {
    if (other.reg.subservice === reg.subservice) throw new InvalidArgumentError(`key service ${name}: subservice ${reg.subservice} is taken by key service ${other.reg.name} on this node`);
  }
  if (reg.critical !== undefined && typeof reg.critical !== 'boolean') throw new InvalidArgumentError(`key service ${name}: critical must be a boolean, got ${kind(reg.critical)}`);
  const handlers = reg.handlers;
  if (handlers !== undefined) {
    if (typeof handlers !== 'object' || handlers === null || Array.isArray(handlers)) throw new InvalidArgumentError(`key service ${name}: handlers must be an object of functions, got ${kind(handlers)}`);
    for (const [m, h] of Object.entries(handlers)) {
      if (typeof h !== 'function') throw new InvalidArgumentError(`key service ${name}: handler ${m} is not a function`);
    }
  }
  const idempotent = reg.idempotent;
  if (idempotent !== undefined) {
    if (!Array.isArray(idempotent) || idempotent.length > MAX_IDEMPOTENT) throw new InvalidArgumentError(`key service ${name}: idempotent must be an array of at most ${MAX_IDEMPOTENT} method names, got ${kind(idempotent)}`);
    for (const m of idempotent as unknown[]) {
      if (typeof m !== 'string' || m.length > MAX_METHOD_NAME) throw new InvalidArgumentError(`key service ${name}: idempotent lists ${kind(m)}, not a method name of at most ${MAX_METHOD_NAME} characters`);
      if (!handlers || !Object.hasOwn(handlers, m)) throw new InvalidArgumentError(`key service ${name}: idempotent method ${m} has no handler`);
    }
  }
  for (const c of CALLBACKS) {
    if (reg[c] !== undefined && typeof reg[c] !== 'function') throw new InvalidArgumentError(`key service ${name}: ${c} must be a function, got ${kind(reg[c])}`);
  }
}

export class Registrations {
  private readonly local = new Map<string, Local>();

  /** Validate and add `reg`. */
  add(reg: KeyServiceRegistration): Local {
    validate(reg, this.local);
    const l: Local = { reg, active: undefined };
    this.local.set(reg.name, l);
    return l;
  }

  /** Forget `l` (unregistered): true when it was still registered. */
  remove(l: Local): boolean {
    if (this.local.get(l.reg.name) !== l) return false;
    this.local.delete(l.reg.name);
    return true;
  }

  get(name: string): Local | undefined {
    return this.local.get(name);
  }

  has(name: string): boolean {
    return this.local.has(name);
  }

  values(): IterableIterator<Local> {
    return this.local.values();
  }

  /**
   * What this node announces when it joins: the key services it may host, in
   * registration order, with what a caller on any node needs to call them.
   */
  hosted(): HostedKeyService[] {
    return [...this.local.values()].map((l) => ({
      name: l.reg.name,
      critical: l.reg.critical ?? false,
      subservice: l.reg.subservice,
      idempotent: [...(l.reg.idempotent ?? [])],
    }));
  }
}
