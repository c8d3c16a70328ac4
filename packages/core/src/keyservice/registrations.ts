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

/** Throws InvalidArgumentError unless `reg` is a registration this node can take. */
function validate(reg: KeyServiceRegistration, taken: boolean): void {
  if (typeof reg.name !== 'string' || reg.name.length === 0 || reg.name.length > 200) {
    throw new InvalidArgumentError('key service name must be 1–200 characters');
  }
  if (taken) throw new InvalidArgumentError(`key service ${reg.name} is registered already`);
  if (!Number.isInteger(reg.subservice) || reg.subservice < 1 || reg.subservice > 0xffff) {
    throw new InvalidArgumentError(`key service ${reg.name}: subservice must be 1–65535`);
  }
  for (const m of reg.idempotent ?? []) {
    if (!reg.handlers || !Object.hasOwn(reg.handlers, m)) throw new InvalidArgumentError(`key service ${reg.name}: idempotent method ${m} has no handler`);
  }
}

export class Registrations {
  private readonly local = new Map<string, Local>();

  /** Validate and add `reg`. */
  add(reg: KeyServiceRegistration): Local {
    validate(reg, this.local.has(reg.name));
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
