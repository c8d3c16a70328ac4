/**
 * The demo key service, `ledger`: a balance that lives on one node.
 *
 * Every node may host it (registered everywhere, critical, so the cluster
 * is not `formed` until it has a host). Callers deposit through the host;
 * each node also remembers how much it deposited itself. When the host
 * dies, the new host asks every survivor (`pullData`) and rebuilds the
 * balance as the sum of what they report (`failoverData`): what the dead
 * node deposited itself is gone with it, everything else survives.
 */
import type { ClusterNode } from '@clusterinfra/core';
import { z } from 'zod';

export const LEDGER = 'ledger';

/** What `deposit` and `balance` answer: the host and epoch show where the call ran. */
export interface LedgerAnswer {
  balance: number;
  host: number;
  epoch: number;
}

export interface LedgerEvents {
  failover(e: { epoch: number; previousHost: number | undefined }): void;
  pulled(e: { epoch: number; from: Record<string, unknown>; balance: number }): void;
}

const depositArgs = z.strictObject({ amount: z.number().int().min(1).max(1_000_000) });
const pulled = z.strictObject({ deposited: z.number() }).nullable().catch(null);

/** Register the ledger on `node` (before start()); `deposited()` is what this node itself deposited. */
export function registerLedger(node: ClusterNode, events: LedgerEvents): { deposit(amount: number): Promise<LedgerAnswer>; deposited(): number } {
  let balance = 0;
  let epoch = 0;
  let mine = 0;
  node.registerKeyService({
    name: LEDGER,
    critical: true,
    subservice: 1,
    idempotent: ['balance'],
    handlers: {
      deposit: (args) => {
        balance += depositArgs.parse(args).amount;
        return { balance, host: node.nodeNum, epoch } satisfies LedgerAnswer;
      },
      balance: () => ({ balance, host: node.nodeNum, epoch }) satisfies LedgerAnswer,
    },
    failover: (ctx) => {
      epoch = ctx.epoch;
      balance = 0;
      events.failover({ epoch: ctx.epoch, previousHost: ctx.previousHost });
    },
    // Runs on every survivor (this node too, when it is the new host).
    pullData: () => ({ deposited: mine }),
    failoverData: ({ pulled: results }, ctx) => {
      const from: Record<string, unknown> = {};
      balance = 0;
      for (const [n, data] of [...results.entries()].sort((a, b) => a[0] - b[0])) {
        const d = pulled.parse(data);
        from[String(n)] = d;
        balance += d?.deposited ?? 0;
      }
      events.pulled({ epoch: ctx.epoch, from, balance });
    },
  });
  return {
    deposit: async (amount) => {
      const answer = await node.callKeyService<LedgerAnswer>(LEDGER, 'deposit', { amount }, { timeoutMs: 10_000 });
      // Counted only once the host confirmed it: a call whose fate is unknown is not ours to report.
      mine += amount;
      return answer;
    },
    deposited: () => mine,
  };
}
