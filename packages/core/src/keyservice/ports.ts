/**
 * What the key-service layer needs from the node it runs on: a narrow
 * interface (the node's runtime implements it in clms/driver/runtime.ts),
 * so the layer sees CLMS only through this and the public types of
 * clms/index.ts.
 */
import type { TimerHandle } from '../clock/index.js';
import type { Ics } from '../ics/ics.js';
import type { Logger } from '../logging/index.js';
import type { KeyServiceActivity, KeyServiceInfo, MemberInfo, Transition } from '../clms/index.js';

export interface KeyServiceHost {
  readonly nodeNum: number;
  readonly log: Logger;
  /** The cluster history this node follows (`ClusterNode.historyId`), null while it has none. */
  historyId(): string | null;
  ics(): Ics;
  isMaster(): boolean;
  master(): number | undefined;
  /** This node may act for what it hosts: a member in quorum that heard its master (or, as master, a quorum) within the failure timeout. */
  leaseValid(): boolean;
  /** Ask the master to renew this member's lease (a host about to serve). */
  renewLease(): void;
  /** How long after a host's GoingDown its key services may fail over (its lease has run out by then). */
  fenceWaitMs(): number;
  members(): MemberInfo[];
  member(node: number): MemberInfo | undefined;
  propose(build: () => Omit<Transition, 'number' | 'term' | 'time'> | undefined): Promise<Transition | undefined>;
  /** Report to the master that a key service is ready. */
  reportReady(name: string, epoch: number): void;
  emitKeyService(info: KeyServiceInfo): void;
  emitActivity(info: KeyServiceActivity): void;
  emitFormed(formed: boolean): void;
  emitHalted(name: string, reason: string): void;
  rpcTimeoutMs(): number;
  failureTimeoutMs(): number;
  now(): number;
  /** A timer on the injected clock. */
  timer(ms: number, fn: () => void): TimerHandle;
}

/** How long a hand-over may take: the old host stops by itself after it, the new host waits it out. */
export const handoverBoundMs = (host: KeyServiceHost): number => host.rpcTimeoutMs() * 10;

/** The ICS address of the key-service protocol (`pull`, `handover`, `move`, `withdraw`): service `clms.keyservice`. */
export const KS = { channel: 'keyservice', subservice: 0 } as const;

/**
 * The Request header that binds a key-service call to the caller's cluster
 * history (docs/key-services.md, "Bound to one history"): every call this
 * layer makes carries it, and a host serves only a caller of its own
 * history. Epochs restart with a history, so without it a node still in a
 * former history would reach the host of a new one at the "same" epoch.
 */
export const HISTORY_HEADER = 'clusterinfra-history';

/** The headers a call of this layer carries: the caller's history (none while it has none). */
export function historyHeaders(host: Pick<KeyServiceHost, 'historyId'>): Record<string, string> | undefined {
  const id = host.historyId();
  return id === null ? undefined : { [HISTORY_HEADER]: id };
}
