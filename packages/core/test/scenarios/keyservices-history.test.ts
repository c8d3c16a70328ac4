/**
 * Key-service calls are bound to the caller's cluster history
 * (docs/key-services.md, "Bound to one history"). Node 1, the only
 * candidate and the only node that registers the key service, is killed
 * and started again: it founds a new history alone and hosts the key
 * service there at epoch 1, the epoch its former incarnation had in the old
 * history, which nodes 2 and 3 still follow for a while. Their calls go to
 * node 1 by number; the host must refuse them (the method never runs for a
 * caller of another history) and say so with a typed error.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { HISTORY_HEADER } from '../../src/keyservice/ports.js';
import type { ClusterNode } from '@clusterinfra/core';
import { allUp, range, type SimCluster, simCluster } from './clms-harness.js';
import { settle } from './keyservices-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

interface Served {
  host: number;
  caller: number;
  hostHistory: string | null;
  callerHistory: string | null;
  header: string | undefined;
}

/** Node 1's counter: every run of `add` records whose history the caller and the host were in at that instant. */
function registerOn(node: ClusterNode, served: Served[]): void {
  let value = 0;
  node.registerKeyService({
    name: 'counter',
    subservice: 1,
    handlers: {
      add: (n, ctx) => {
        served.push({
          host: node.nodeNum,
          caller: ctx.caller.nodeNum,
          hostHistory: node.historyId,
          callerHistory: sim!.node(ctx.caller.nodeNum).historyId,
          header: ctx.headers?.[HISTORY_HEADER],
        });
        value += n as number;
        return value;
      },
    },
  });
}

const outcome = (p: Promise<unknown>): Promise<unknown> => p.then((v) => ({ ok: v }), (e: unknown) => e);

describe('key-service calls are bound to the caller’s cluster history', () => {
  it('a host of a new history refuses a caller still in the old one (CLMS_ERR_KEYSERVICE_OTHER_HISTORY, nothing runs), and serves it once it joined the new one', async () => {
    sim = simCluster(3, { candidates: [1] });
    const served: Served[] = [];
    registerOn(sim.node(1), served);
    await sim.until(() => allUp(sim!, range(3)) && sim!.converged(range(3)) && range(3).every((n) => sim!.node(n).keyService('counter')?.ready === true), 30_000, 'formation');
    // Calls of one history are served, and carry it.
    expect(await settle(sim, sim.node(2).callKeyService('counter', 'add', 1))).toBe(1);
    const old = sim.node(2).historyId!;
    expect(served).toEqual([{ host: 1, caller: 2, hostHistory: old, callerHistory: old, header: old }]);

    sim.kill(1);
    registerOn(sim.start(1), served);
    await sim.until(() => sim!.node(1).historyId !== null && sim!.node(1).historyId !== old && sim!.node(1).keyService('counter')?.ready === true, 30_000, 'node 1 founds a new history');
    // The same key service at the same epoch in both histories: epochs alone cannot tell them apart.
    expect(sim.node(1).keyService('counter')).toMatchObject({ host: 1, epoch: 1 });
    expect(sim.node(2).historyId).toBe(old);
    expect(sim.node(2).keyService('counter')).toMatchObject({ host: 1, epoch: 1, ready: true });

    // Node 2, still in the old history, calls node 1 by number: refused, and after its deadline it says why.
    const refused = (await settle(sim, outcome(sim.node(2).callKeyService('counter', 'add', 100, { timeoutMs: 300 })))) as Record<string, unknown>;
    expect(sim.node(2).historyId).toBe(old);
    expect(refused).toMatchObject({
      name: 'KeyServiceHistoryError',
      code: 'CLMS_ERR_KEYSERVICE_OTHER_HISTORY',
      retryable: true,
      keyService: 'counter',
      host: 1,
      callerHistory: old,
      hostHistory: sim.node(1).historyId,
    });
    // Nothing ran for a caller of another history.
    expect(served.filter((s) => s.callerHistory !== s.hostHistory)).toEqual([]);
    expect(served.filter((s) => s.hostHistory !== old)).toEqual([]);

    // A call still waiting when node 2 moves to the new history goes through there, once.
    const later = outcome(sim.node(2).callKeyService('counter', 'add', 5, { timeoutMs: 60_000 }));
    await sim.until(() => range(3).every((n) => sim!.node(n).historyId === sim!.node(1).historyId) && allUp(sim!, range(3)), 60_000, 'everyone in the new history');
    expect(await settle(sim, later, 60_000)).toEqual({ ok: 5 });
    const now = sim.node(1).historyId;
    expect(served.slice(1)).toEqual([{ host: 1, caller: 2, hostHistory: now, callerHistory: now, header: now }]);
  });

  it('a call without the caller’s history (a raw ICS call to the host) is refused before the method runs', async () => {
    sim = simCluster(2, { candidates: [1] });
    const served: Served[] = [];
    registerOn(sim.node(1), served);
    await sim.until(() => allUp(sim!, range(2)) && range(2).every((n) => sim!.node(n).keyService('counter')?.ready === true), 30_000, 'formation');
    const address = { channel: 'keyservice', subservice: 1 };
    const bare = await settle(sim, outcome(sim.node(2).communication.call(1, address, 'add', 1)));
    expect(bare).toMatchObject({ code: 'ICS_ERR_REMOTE', status: 'FAILED_PRECONDITION', details: { otherHistory: { caller: null, host: sim.node(1).historyId } } });
    const wrong = await settle(sim, outcome(sim.node(2).communication.call(1, address, 'add', 1, { headers: { [HISTORY_HEADER]: '9.9.9' } })));
    expect(wrong).toMatchObject({ status: 'FAILED_PRECONDITION', details: { otherHistory: { caller: '9.9.9' } } });
    expect(served).toEqual([]);
    // With this history's name it runs (the header is all that differs).
    const h = sim.node(2).historyId!;
    expect(await settle(sim, sim.node(2).communication.call(1, address, 'add', 1, { headers: { [HISTORY_HEADER]: h } }))).toBe(1);
    expect(served).toHaveLength(1);
  });
});
