/**
 * The master's part, the driver of proposals.ts: it carries out what
 * placement (placement.ts) returns after every transition, as `keyservice`
 * transitions it proposes, and answers what hosts ask of it: a move (a
 * clean leave, a host that stopped), a withdrawal, and a ready report to
 * commit. What each proposal holds, and whether it still holds, is
 * decided by the pure functions of proposals.ts when the proposal is built;
 * every proposal is dropped when the view of its key service changed
 * meanwhile (no double placement).
 */
import { canaries } from '../canaries.js';
import type { TimerHandle } from '../clock/index.js';
import { IcsStatusError } from '../ics/status.js';
import type { MoveRequest, WithdrawRequest } from './messages.js';
import { placement, type PlacementStep } from './placement.js';
import type { KeyServiceHost } from './ports.js';
import { afterWithdraw, type Change, hostChange, moveChange, moveTarget, readyChange, readyWanted, vacancyChange, withdrawChange, withdrawStart } from './proposals.js';
import type { KeyServiceView } from './view.js';

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
    this.proposeChange(name, since, () => vacancyChange(this.host.nodeNum, this.host.member(this.host.nodeNum), name, critical, this.view.epochOf(name)));
  }

  /** `step.node` takes `step.name` over: a hand-over from a leaving host, a failover, or a first placement. */
  private proposeHost(step: Extract<PlacementStep, { kind: 'assign' }>): void {
    const { name, node, handoverFrom: leaving } = step;
    // As the nodes are when the change is built (proposals.ts, hostChange).
    this.proposeChange(name, step.since, () =>
      hostChange(step, this.host.member(node), leaving !== undefined ? this.view.hostState(name, leaving, (n) => this.host.member(n)) : undefined, this.view.epochOf(name)),
    );
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

  /** On the master: the host of `name` at `epoch` asks for a new placement (proposals.ts, moveTarget). */
  async onMove(p: MoveRequest, from: number, incarnation: number): Promise<boolean> {
    if (!this.host.isMaster()) throw new IcsStatusError('FAILED_PRECONDITION', 'not the master');
    const v = this.view.info(p.name);
    const target = moveTarget(v, this.view.hostIncarnationOf(p.name), p, from, incarnation, this.host.members());
    if (target === undefined) return false;
    const t = await this.host.propose(() =>
      this.view.unchangedSince(p.name, v!.since) ? moveChange(p, from, this.host.member(from)?.state, target, this.host.member(target), v!.epoch) : undefined,
    );
    return t !== undefined;
  }

  /**
   * On the master: `from` (that incarnation) no longer registers `p.name`
   * (unregister.ts). Drop it from what `from` announced (a `meta`
   * transition); then, when `from` is still its recorded host (it stopped
   * its activation before asking), place it on another node that registers
   * it, or nowhere (proposals.ts, withdrawStart and afterWithdraw). True
   * once the history no longer lists it for `from`.
   */
  async onWithdraw(p: WithdrawRequest, from: number, incarnation: number): Promise<boolean> {
    if (!this.host.isMaster()) throw new IcsStatusError('FAILED_PRECONDITION', 'not the master');
    switch (withdrawStart(this.host.member(from), p.name, incarnation)) {
      case 'refuse':
        return false;
      case 'drop': {
        const t = await this.host.propose(() => withdrawChange(from, this.host.member(from), p.name, incarnation));
        if (!t) return false;
        break;
      }
      case 'dropped':
        break;
    }
    const step = afterWithdraw(this.view.info(p.name), this.view.hostIncarnationOf(p.name), p.name, from, incarnation, this.host.members());
    if (step?.kind === 'vacate') this.proposeVacancy(step.name, step.critical, step.since);
    else if (step) this.proposeHost(step);
    return true;
  }

  /** The master got `ready` from a host: commit it (if still its epoch). */
  commitReady(name: string, epoch: number, from: number): void {
    if (!readyWanted(this.view.info(name), epoch, from)) return;
    // One proposal at a time for it (the master's own report is offered every tick).
    const key = `${name}:${epoch}:${from}`;
    if (this.readyProposed.has(key)) return;
    this.readyProposed.add(key);
    void this.host
      .propose(() => readyChange(this.view.info(name), name, epoch, from, this.host.member(from)))
      .catch(() => {})
      .finally(() => this.readyProposed.delete(key));
  }
}
