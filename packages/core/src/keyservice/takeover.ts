/**
 * The decisions of hosting (docs/key-services.md, "Guarantees"), as pure
 * functions of what this node knows: what a committed `keyservice`
 * transition does to the activation here, the order of a takeover and
 * whom it pulls, each step of collecting a hand-over, each step of asking
 * the master, what a `pull` or `handover` request gets, and which stopped
 * key services to have placed again. host.ts is their driver: it runs the
 * callbacks, makes the calls, arms the timers and feeds each outcome back.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import type { KeyServiceInfo, MemberInfo, NodeState, Transition } from '../clms/index.js';

type KeyServiceTransition = NonNullable<Transition['keyService']>;

/** What this node runs of a key service (registrations.ts `Activation`, as plain facts). */
export interface ActivationFacts {
  readonly epoch: number;
  /** Its `signal` aborted (it ended). */
  readonly ended: boolean;
  /** Methods are served (failoverData done). */
  readonly serving: boolean;
  /** A hand-over of it began. */
  readonly handingOver: boolean;
}

/** What the activation here does, in order, after a committed `keyservice` transition. */
export type AppliedStep =
  /** A newer epoch goes to a node that will collect our data: stop serving, keep the data until collected. */
  | { kind: 'begin-handover' }
  /** A newer epoch began elsewhere (or here): stop. */
  | { kind: 'deactivate'; why: string }
  /** This incarnation was assigned: take over. */
  | { kind: 'take-over'; epoch: number; handoverFrom: number | undefined };

/**
 * A newer epoch ends any older activation here (K1); a hand-over from this
 * node keeps the data until the new host collects it, but stops serving at
 * once. An assignment to this incarnation (not one replayed from a former
 * one) starts a takeover.
 */
export function applied(me: { node: number; incarnation: number | undefined }, active: ActivationFacts | undefined, t: Pick<Transition, 'node' | 'incarnation'>, ks: KeyServiceTransition): AppliedStep[] {
  const steps: AppliedStep[] = [];
  if (active && active.epoch < ks.epoch) {
    if (ks.phase === 'assigned' && ks.handoverFrom === me.node && t.node !== me.node) steps.push({ kind: 'begin-handover' });
    else steps.push({ kind: 'deactivate', why: 'a newer epoch began' });
  }
  if (ks.phase === 'assigned' && t.node === me.node && t.incarnation === me.incarnation) steps.push({ kind: 'take-over', epoch: ks.epoch, handoverFrom: ks.handoverFrom });
  return steps;
}

/** The activation may act now: not ended, and this node holds its lease (asked last). */
export const mayAct = (a: ActivationFacts | undefined, leaseValid: () => boolean): boolean => a !== undefined && !a.ended && leaseValid();

/** Its methods run: it may act, serves, and no hand-over began. */
export const mayServe = (a: ActivationFacts | undefined, leaseValid: () => boolean): boolean => mayAct(a, leaseValid) && a!.serving && !a!.handingOver;

/**
 * One step of a takeover, in order. After each of the first four the
 * driver stops if the activation ended meanwhile (a newer epoch, lost
 * quorum, close); a step with nothing to run is a no-op that still checks.
 */
export type TakeoverStep =
  /** Collect the old host's data when it hands over (`from`); the old host stops before we start. */
  | { kind: 'collect-handover'; from: number | undefined }
  /** Run `failover`. */
  | { kind: 'failover' }
  /** Run `pullData` (when registered: `run`) on the survivors as they are then (`survivors`, but `skip`). */
  | { kind: 'pull'; run: boolean; skip: number | undefined }
  /** Run `failoverData` with what was collected and pulled. */
  | { kind: 'failover-data' }
  /** Serve, tell the application why, and report ready. */
  | { kind: 'ready'; reason: string };

/**
 * The steps of a takeover (K4: methods are served only at the end): the
 * old host's data first (when it hands over), then `failover`, then
 * `pullData` on every Up node that registered the key service (this one
 * too) but the old host, then `failoverData`, then ready.
 */
export function takeoverSteps(handoverFrom: number | undefined, pulls: boolean): TakeoverStep[] {
  return [
    { kind: 'collect-handover', from: handoverFrom },
    { kind: 'failover' },
    { kind: 'pull', run: pulls, skip: handoverFrom },
    { kind: 'failover-data' },
    { kind: 'ready', reason: handoverFrom !== undefined ? `hand-over from node ${handoverFrom}` : 'failover complete' },
  ];
}

/** Every Up node that registered `name` (and this one), but `skip`: whom a new host pulls. */
export function survivors(name: string, me: number, skip: number | undefined, members: readonly MemberInfo[]): number[] {
  return members.filter((m) => m.state === 'Up' && m.node !== skip && (m.node === me || m.keyServices.some((h) => h.name === name))).map((m) => m.node);
}

/**
 * Collecting a hand-over from the old host, until it answers or the bound
 * passes. Without an answer the new host waits the bound out plus the
 * failure timeout (a cut-off host has lost its lease by then): the old host
 * has stopped by itself, so two hosts are never active at once (K1).
 */
export type CollectStep =
  /** Ask the old host for its data. */
  | { kind: 'call'; timeoutMs: number }
  /** It failed or left: wait (up to `ms`) for its Down, after which nothing runs there any more (K4). */
  | { kind: 'await-down'; ms: number }
  /** Ask again after `ms`. */
  | { kind: 'retry-after'; ms: number }
  /** Down without handing over: wait what is left of its lease since its down, then start without its data. */
  | { kind: 'down' }
  /** The bound passed: wait `ms` more, then start without its data. */
  | { kind: 'give-up'; ms: number };

/** The old host is leaving, failing or gone. */
const gone = (s: NodeState | undefined): boolean => s === 'GoingDown' || s === 'ShuttingDown' || s === 'Down';

/** What to do next: what the last step came to (`again`: at the start, or after a wait), `now` against the bound's `deadline`. */
export function collectNext(
  last: { kind: 'again' } | { kind: 'call-failed'; fromState: NodeState | undefined } | { kind: 'awaited-down'; fromState: NodeState | undefined },
  now: number,
  deadline: number,
  timing: { rpcTimeoutMs: number; failureTimeoutMs: number },
): CollectStep {
  if (last.kind === 'call-failed' && gone(last.fromState)) return { kind: 'await-down', ms: Math.max(0, deadline - now) };
  if (last.kind === 'call-failed') return { kind: 'retry-after', ms: timing.rpcTimeoutMs };
  // Down without handing over: the others refused its links from its
  // GoingDown or ShuttingDown on, so it renewed no lease since, but one it
  // held then may still run (a leaver closes a little after its leave is
  // committed; a cut-off host acts until its lease ends). Wait that out (K1).
  if (last.kind === 'awaited-down' && last.fromState === 'Down') return { kind: 'down' };
  if (now < deadline) return { kind: 'call', timeoutMs: Math.max(1, deadline - now) };
  return { kind: 'give-up', ms: timing.failureTimeoutMs };
}

/** Asking the master for a move or a withdrawal, until one answers or the bound passes. */
export type AskStep = { kind: 'self' } | { kind: 'call'; master: number } | { kind: 'no-master' } | { kind: 'give-up' };

/**
 * Whom to ask now: this node when it is the master, the master over the
 * network, or nobody yet. A request is bound to the cluster history it was
 * decided in (`asked`): once this node follows another one (`current`), it
 * is given up, never carried over. Epochs start again with a history, so
 * "node 2 stopped ks.b at epoch 1" asked in a former history would match
 * the epoch 1 node 2 runs in the new one, and the master would place ks.b
 * elsewhere while node 2 acts (simulator seed 11644, K1). The asker
 * decides again from its new view (placeStopped, a withdrawal's check).
 */
export function askNext(me: number, master: number | undefined, now: number, deadline: number, history: { asked: string | null; current: string | null }): AskStep {
  if (now >= deadline || history.current !== history.asked) return { kind: 'give-up' };
  if (master === me) return { kind: 'self' };
  return master === undefined ? { kind: 'no-master' } : { kind: 'call', master };
}

/** What a survivor's `pull` gets: nothing (it has no `pullData`), a refusal (a stale epoch: only the current host may pull), or its data. */
export function pullAnswer(hasPullData: boolean, v: KeyServiceInfo | undefined, epoch: number): 'nothing' | 'stale' | 'serve' {
  if (!hasPullData) return 'nothing';
  return v && v.epoch > epoch ? 'stale' : 'serve';
}

/**
 * What the new host's `handover` gets from the old host: nothing (no older
 * activation here), a refusal (this node has not seen that hand-over, or the
 * caller is not the host the history names for the epoch), or the data;
 * the old host stops first (never two active hosts).
 */
export function handoverAnswer(active: ActivationFacts | undefined, v: KeyServiceInfo | undefined, epoch: number, caller: number): 'nothing' | 'not-seen' | 'serve' {
  if (!active || active.epoch >= epoch) return 'nothing';
  return !active.handingOver || v?.epoch !== epoch || v.host !== caller ? 'not-seen' : 'serve';
}

/**
 * This node took over `name` at `epoch` and the history does not say it is
 * ready yet: its ready report is still owed (the master that acknowledged
 * it may have lost the commit, and a new master would never learn it
 * otherwise).
 */
export function awaitsReady(v: KeyServiceInfo | undefined, me: number, epoch: number, activeEpoch: number | undefined): boolean {
  return v !== undefined && v.epoch === epoch && v.host === me && !v.ready && activeEpoch === epoch;
}

/**
 * A key service this node is the recorded host of (as this incarnation),
 * not halted, but runs no activation of and is not asking about already:
 * ask the master to place it again (nobody else would).
 */
export function stoppedHere(v: KeyServiceInfo | undefined, hostIncarnation: number | undefined, me: { node: number; incarnation: number | undefined }, running: boolean, asking: boolean): boolean {
  if (running || !v || v.halted || asking) return false;
  return v.host === me.node && hostIncarnation === me.incarnation;
}
