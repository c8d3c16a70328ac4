/**
 * Unregistering a key service on a running node (docs/key-services.md,
 * "Unregistering"). In order: a key service this node hosts is handed over
 * first, with its data, to another node that registers it (as on a clean
 * leave); then it is dropped here (an activation still running stops, and
 * its methods answer "not the host" from then on, so a caller goes
 * elsewhere); then the master removes it from what this node announced, in
 * the history (a `meta` transition), and, when this node was still its
 * host, places it on another node that registers it, or nowhere (vacant;
 * halted when critical). Callers learn a name that no member announces any
 * more at once (UnknownKeyServiceError).
 *
 * Until the history shows the withdrawal, this node keeps asking (after
 * every transition it applies, and a failure timeout after a refusal).
 */
import { TimeoutError } from '../errors/index.js';
import type { Hosting } from './host.js';
import { handoverBoundMs, type KeyServiceHost } from './ports.js';
import type { Local, Registrations } from './registrations.js';
import type { Changes } from './waits.js';

export class Withdrawals {
  /** Names this node unregistered that the history may still list among what it announced. */
  private readonly pending = new Set<string>();
  /** Names a withdrawal request is under way for. */
  private readonly asking = new Set<string>();
  /** Each unregistration under way or done: a second call gets the same promise. */
  private readonly running = new WeakMap<Local, Promise<void>>();
  private closed = false;

  constructor(
    private readonly host: KeyServiceHost,
    private readonly local: Registrations,
    private readonly hosting: Hosting,
    private readonly changes: Changes,
  ) {}

  close(): void {
    this.closed = true;
  }

  /** This node's record in the history announces `name`. */
  private announced(name: string): boolean {
    return this.host.member(this.host.nodeNum)?.keyServices.some((h) => h.name === name) ?? false;
  }

  /**
   * Unregister `l`: resolves once the history this node applied no longer
   * lists it for this node (at once when the node has not joined, or is
   * closed); rejects with TimeoutError when that took longer than two
   * hand-over bounds after the hand-over (the node keeps asking).
   */
  unregister(l: Local, attached: boolean): Promise<void> {
    let p = this.running.get(l);
    if (!p) this.running.set(l, (p = this.run(l, attached)));
    return p;
  }

  private async run(l: Local, attached: boolean): Promise<void> {
    const name = l.reg.name;
    if (l.active && attached && !this.closed) await this.hosting.handOver(l, l.active);
    if (!this.local.remove(l)) return;
    this.hosting.deactivate(l, 'unregistered');
    if (!attached || this.closed) return;
    this.pending.add(name);
    this.check();
    const bound = handoverBoundMs(this.host);
    await this.changes.waitFor(() => !this.announced(name), bound * 2);
    if (this.announced(name)) throw new TimeoutError(`key service ${name} is still announced by node ${this.host.nodeNum} after ${bound * 2} ms: the master did not withdraw it yet (this node keeps asking)`);
  }

  /** After every transition: ask the master to withdraw what this node unregistered and the history still lists for it. */
  check(): void {
    if (this.closed) return;
    for (const name of this.pending) {
      // Not a member (yet): its join will announce what it registers then.
      if (this.host.member(this.host.nodeNum) === undefined || this.asking.has(name)) continue;
      if (this.local.has(name) || !this.announced(name)) {
        this.pending.delete(name);
        continue;
      }
      this.asking.add(name);
      void this.hosting
        .askMaster(name, { method: 'withdraw', args: { name } })
        .catch(() => false)
        .then((done) => {
          this.asking.delete(name);
          if (!done) this.host.timer(this.host.failureTimeoutMs(), () => this.check());
        });
    }
  }
}
