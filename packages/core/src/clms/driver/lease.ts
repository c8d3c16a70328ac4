/**
 * The driver's glue for key-service leases (K1, K5, docs/key-services.md):
 * whether this node holds one now, whether as master it grants one to a
 * member, and a member's lease request to its master. The counting is the
 * core's (protocol/lease.ts); this asks and feeds the answers in.
 */
import type { Ics } from '../../ics/ics.js';
import type { Lease } from '../protocol/lease.js';
import type { Phase } from '../protocol/core.js';
import type { History } from '../protocol/history.js';
import { CLMS } from './serve.js';

export interface LeasePort {
  readonly nodeNum: number;
  readonly rpcTimeoutMs: number;
  now(): number;
  /** The core's lease table. */
  readonly lease: Lease;
  quorumOk(): boolean;
  phase(): Phase;
  isMaster(): boolean;
  master(): number | undefined;
  voters(): number[];
  history(): History;
  incarnation(): number;
  /** The endpoint of the current incarnation. */
  ics(): Ics;
}

export class KeyServiceLease {
  constructor(private readonly p: LeasePort) {}

  /**
   * Key services act only under a lease (K1, K5): a member that heard its
   * master within the failure timeout, or a master that heard a quorum. The
   * others need at least that long to declare this node down and move what
   * it hosts, so a paused or cut-off host stops before a newer one starts,
   * even before its own timers run.
   */
  holds(): boolean {
    const p = this.p;
    if (!p.quorumOk() || (p.phase() !== 'member' && p.phase() !== 'leaving')) return false;
    const now = p.now();
    if (!p.isMaster()) return p.lease.memberHolds(now);
    return p.lease.masterHolds(p.nodeNum, p.voters(), now);
  }

  /** As master: `node` (that incarnation) may hold a key-service lease now. */
  grants(node: number, incarnation: number): boolean {
    const m = this.p.history().member(node);
    return this.p.isMaster() && this.holds() && m?.incarnation === incarnation && (m.state === 'Up' || m.state === 'ComingUp' || m.state === 'ShuttingDown');
  }

  /** As a member: ask the master for a lease (one request at a time); granted, it counts from the sending. */
  renew(): void {
    const p = this.p;
    const lease = p.lease;
    const master = p.master();
    if (lease.asking || p.isMaster() || master === undefined || (p.phase() !== 'member' && p.phase() !== 'leaving')) return;
    lease.asking = true;
    const sentAt = p.now();
    const incarnation = p.incarnation();
    void p
      .ics()
      .call(master, CLMS, 'lease', null, { timeoutMs: p.rpcTimeoutMs })
      .then((r) => {
        if ((r as { granted?: unknown }).granted === true && p.incarnation() === incarnation && p.master() === master) lease.granted(sentAt);
      })
      .catch(() => {})
      .finally(() => {
        lease.asking = false;
      });
  }
}
