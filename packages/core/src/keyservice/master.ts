/**
 * The master's part: it carries out what placement (placement.ts, pure)
 * returns after every transition, as `keyservice` transitions it proposes,
 * and answers what hosts ask of it: a move (a clean leave, a host that
 * stopped), and a ready report to commit. Every proposal is built again
 * when it is made and dropped when the view of its key service changed
 * meanwhile (no double placement).
 */
import { canaries } from '../canaries.js';
import type { TimerHandle } from '../clock/index.js';
import { IcsStatusError } from '../ics/status.js';
import type { Transition } from '../clms/index.js';
import type { MoveRequest, WithdrawRequest } from './messages.js';
import { eligibleHost, placement, type PlacementStep } from './placement.js';
import type { KeyServiceHost } from './ports.js';
import type { KeyServiceView } from './view.js';

type Change = Omit<Transition, 'number' | 'term' | 'time'>;

export class Placer {
  /** Ready transitions proposed and not settled yet (name:epoch:host). */
  private readonly readyProposed = new Set<string>();
  /** One timer to place again once a fence wait is over. */
  private placeTimer: TimerHandle | undefined;
  private closed = false;

  constructor(
    private readonly host: KeyServiceHost,
    private readonly view: KeyServiceView,
    /** Time left of a wait counted from a down (host.ts). */
    private readonly downWaitLeft: (node: number, incarnation: number | undefined, waitMs: number) => number,
  ) {}

  close(): void {
    this.closed = true;
    this.placeTimer?.cancel();
  }

  /**
   * On the master, after every transition: give every key service without a
   * live host a new one, in the order the nodes announced them, as soon as
   * the old host's node is Down (K4) or leaving (hand-over).
   */
  place(): void {
    if (!this.host.isMaster()) return;
    const steps = placement(
      this.view.placementInput({
        now: this.host.now(),
        members: this.host.members(),
        member: (n) => this.host.member(n),
        fenceWaitMs: this.host.fenceWaitMs(),
        failureTimeoutMs: this.host.failureTimeoutMs(),
        moveEarly: canaries.moveKeyServiceEarly,
      }),
    );
    for (const step of steps) {
      switch (step.kind) {
        case 'wait':
          this.placeLater(step.ms);
          break;
        case 'forget-handover':
          this.view.forgetHandover(step.name);
          break;
        case 'forget-vacancy':
          this.view.forgetVacancy(step.name);
          break;
        case 'down-seen':
          this.downWaitLeft(step.node, step.incarnation, 0);
          break;
        case 'vacate':
          this.proposeVacancy(step.name, step.critical, step.since);
          break;
        case 'assign':
          this.proposeHost(step);
          break;
      }
    }
  }

  /** No eligible node for `name`: halted (critical) or vacant, as a change by the master itself. */
  private proposeVacancy(name: string, critical: boolean, since: number | undefined): void {
    this.proposeChange(name, since, () => ({
      kind: 'keyservice',
      node: this.host.nodeNum,
      incarnation: this.host.member(this.host.nodeNum)?.incarnation ?? 0,
      // The master's own state, whatever it is (it may be leaving): a keyservice transition changes no state.
      from: this.host.member(this.host.nodeNum)?.state ?? 'Up',
      to: this.host.member(this.host.nodeNum)?.state ?? 'Up',
      cause: critical ? `no eligible node left for critical key service ${name}` : `no eligible node for ${name}`,
      keyService: { name, epoch: this.view.epochOf(name), phase: critical ? 'halted' : 'vacant' },
    }));
  }

  /** `step.node` takes `step.name` over: a hand-over from a leaving host, a failover, or a first placement. */
  private proposeHost(step: Extract<PlacementStep, { kind: 'assign' }>): void {
    const { name, node, previousHost, handoverFrom: leaving } = step;
    this.proposeChange(name, step.since, () => {
      // As the nodes are when the change is built: the target may have gone
      // down since, and a leaving host that failed meanwhile is failed over
      // after its Down and the fence wait instead (K4).
      const target = this.host.member(node);
      if (target?.state !== 'Up') return undefined;
      if (leaving !== undefined && this.view.hostState(name, leaving, (n) => this.host.member(n)) !== 'ShuttingDown') return undefined;
      return {
        kind: 'keyservice',
        node,
        incarnation: target.incarnation,
        from: target.state,
        to: target.state,
        cause: leaving !== undefined ? `hand-over from node ${leaving}` : previousHost !== undefined ? `failover from node ${previousHost}` : 'placed',
        keyService: { name, epoch: this.view.epochOf(name) + 1, phase: 'assigned', ...(leaving !== undefined ? { handoverFrom: leaving } : {}) },
      };
    });
  }

  private placeLater(ms: number): void {
    if (this.placeTimer || this.closed) return;
    this.placeTimer = this.host.timer(ms, () => {
      this.placeTimer = undefined;
      this.place();
    });
  }

  /** Propose a change of `name` unless its view changed meanwhile (no double placement). */
  private proposeChange(name: string, since: number | undefined, build: () => Change | undefined): void {
    void this.host.propose(() => (this.view.unchangedSince(name, since) ? build() : undefined)).catch(() => {});
  }

  /** On the master: the host of `name` at `epoch` asks for a new placement. */
  async onMove(p: MoveRequest, from: number, incarnation: number): Promise<boolean> {
    if (!this.host.isMaster()) throw new IcsStatusError('FAILED_PRECONDITION', 'not the master');
    const v = this.view.info(p.name);
    // Only the host incarnation the history names: a request left over from a
    // former incarnation (or history) whose numbers happen to match is not it.
    if (!v || v.epoch !== p.epoch || v.host !== from || this.view.hostIncarnationOf(p.name) !== incarnation) return false;
    const target = eligibleHost(p.name, this.host.members(), p.handover ? from : undefined);
    if (target === undefined) return false;
    const t = await this.host.propose(() => {
      if (!this.view.unchangedSince(p.name, v.since)) return undefined;
      // A host that went down meanwhile is failed over after its Down instead (K4).
      if (this.host.member(from)?.state !== 'Up') return undefined;
      const m = this.host.member(target);
      if (!m || m.state !== 'Up') return undefined;
      return {
        kind: 'keyservice',
        node: target,
        incarnation: m.incarnation,
        from: m.state,
        to: m.state,
        cause: p.handover ? `hand-over from node ${from}` : `placed again (node ${from} had stopped it)`,
        keyService: { name: p.name, epoch: v.epoch + 1, phase: 'assigned', ...(p.handover ? { handoverFrom: from } : {}) },
      };
    });
    return t !== undefined;
  }

  /**
   * On the master: `from` (that incarnation) no longer registers `p.name`
   * (unregister.ts). Drop it from what `from` announced (a `meta`
   * transition); then, when `from` is still its recorded host (it stopped
   * its activation before asking), place it on another node that registers
   * it, or nowhere. True once the history no longer lists it for `from`.
   */
  async onWithdraw(p: WithdrawRequest, from: number, incarnation: number): Promise<boolean> {
    if (!this.host.isMaster()) throw new IcsStatusError('FAILED_PRECONDITION', 'not the master');
    const announcing = (): { keyServices: readonly { name: string }[] } | undefined => {
      const m = this.host.member(from);
      return m?.incarnation === incarnation && m.state === 'Up' && m.keyServices.some((h) => h.name === p.name) ? m : undefined;
    };
    if (announcing()) {
      const t = await this.host.propose(() => {
        const m = this.host.member(from);
        if (!m || !announcing()) return undefined;
        const keyServices = m.keyServices.filter((h) => h.name !== p.name);
        return { kind: 'meta', node: from, incarnation, from: m.state, to: m.state, cause: `key service ${p.name} unregistered`, keyServices };
      });
      if (!t) return false;
    } else if (this.host.member(from)?.incarnation !== incarnation) {
      return false;
    }
    const v = this.view.info(p.name);
    if (v && v.host === from && this.view.hostIncarnationOf(p.name) === incarnation) {
      const node = eligibleHost(p.name, this.host.members());
      // Halted only while a member (a Down one too: it may come back) still announces it as critical.
      const critical = this.host.members().some((m) => m.keyServices.some((h) => h.name === p.name && h.critical));
      if (node === undefined) this.proposeVacancy(p.name, critical, v.since);
      else this.proposeHost({ kind: 'assign', name: p.name, node, since: v.since, previousHost: from, handoverFrom: undefined });
    }
    return true;
  }

  /** The master got `ready` from a host: commit it (if still its epoch). */
  commitReady(name: string, epoch: number, from: number): void {
    const v = this.view.info(name);
    if (!v || v.epoch !== epoch || v.host !== from || v.ready) return;
    // One proposal at a time for it (the master's own report is offered every tick).
    const key = `${name}:${epoch}:${from}`;
    if (this.readyProposed.has(key)) return;
    this.readyProposed.add(key);
    void this.host
      .propose(() => {
        const now = this.view.info(name);
        if (!now || now.epoch !== epoch || now.host !== from || now.ready) return undefined;
        // A host that went down meanwhile is not ready: its Down brings a failover instead.
        const m = this.host.member(from);
        if (m?.state !== 'Up') return undefined;
        return { kind: 'keyservice', node: from, incarnation: m.incarnation, from: m.state, to: m.state, cause: 'failover complete', keyService: { name, epoch, phase: 'ready' } };
      })
      .catch(() => {})
      .finally(() => this.readyProposed.delete(key));
  }
}
