/**
 * Unregistering a key service on a running node (docs/key-services.md,
 * "Unregistering"), on transport-mem under the virtual clock: the host hands
 * over to a node that still registers it; a node that unregistered is never
 * chosen again; the last one leaves callers a typed error at once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type ClusterNode, isClusterInfraError, type KeyServiceActivity } from '@clusterinfra/core';
import { type SimCluster, simCluster } from './clms-harness.js';
import { FencedStore, Journal, range, readyElsewhere, registerCounter, settle } from './keyservices-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const allUp = (s: SimCluster, ns: number[]): boolean => ns.every((n) => ns.every((m) => s.node(n).info(m)?.state === 'Up')) && s.converged(ns);
/** What `node` announces, as `at` knows it from the history. */
const announced = (at: ClusterNode, node: number): string[] => at.info(node)?.keyServices.map((h) => h.name) ?? [];

/** The error `p` rejects with, run to its end under the virtual clock. */
async function failure(s: SimCluster, p: Promise<unknown>): Promise<unknown> {
  try {
    await settle(s, p);
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('unregistering a key service', () => {
  it('the host unregisters: the key service moves to a node that still registers it, with the hand-over data, and the old node announces it no more', async () => {
    sim = simCluster(3, { candidates: [1, 2, 3] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    for (const n of [2, 3]) registerCounter(sim.node(n), { store, journal, critical: false });
    await sim.until(() => allUp(sim!, range(3)) && readyElsewhere(sim!, range(3), 'counter'), 30_000, 'placement');
    const host = sim.node(1).keyService('counter')!.host!;
    const other = host === 2 ? 3 : 2;
    const value = (await settle(sim, sim.node(1).callKeyService('counter', 'add', 5))) as number;
    const stops: KeyServiceActivity[] = [];
    sim.node(host).on('keyservice-host', (a) => stops.push(a));

    await settle(sim, sim.node(host).unregisterKeyService('counter'));
    // Resolved: the history this node applied no longer lists it for this node.
    expect(announced(sim.node(host), host)).not.toContain('counter');
    await sim.until(() => readyElsewhere(sim!, range(3), 'counter', host) && range(3).every((n) => !announced(sim!.node(n), host).includes('counter')), 30_000, 'moved');
    expect(sim.node(1).keyService('counter')).toMatchObject({ host: other, epoch: 2, ready: true });
    // A hand-over, as on a clean leave: the old host gave its value away, the new one started from it.
    expect(journal.has(`handover counter epoch 1 value ${value}`)).toBe(true);
    expect(journal.has(new RegExp(`^data counter epoch 2 from .* handover from ${host} value ${value}$`))).toBe(true);
    expect(stops).toContainEqual({ name: 'counter', epoch: 1, active: false, reason: `handed over to node ${other}` });
    // Callers go on, on the new host, from where the old one stopped.
    expect(await settle(sim, sim.node(host).callKeyService('counter', 'add', 1))).toBe(value + 1);
    expect(store.stale).toEqual([]);
    // Only that key service left the announcement; the node is still a member.
    expect(sim.node(1).info(host)?.state).toBe('Up');
  });

  it('a node that unregistered is never chosen again: when the host fails, the next node that still registers it takes over', async () => {
    sim = simCluster(4, { candidates: [1, 2, 3] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    for (const n of [2, 3, 4]) registerCounter(sim.node(n), { store, journal, critical: false });
    await sim.until(() => allUp(sim!, range(4)) && readyElsewhere(sim!, range(4), 'counter'), 30_000, 'placement');
    const host = sim.node(1).keyService('counter')!.host!;
    const [quitter, heir] = [2, 3, 4].filter((n) => n !== host) as [number, number];
    // The lower-numbered of the two others would be preferred, had it not unregistered.
    await settle(sim, sim.node(quitter).unregisterKeyService('counter'));
    expect(sim.node(1).keyService('counter')).toMatchObject({ host, epoch: 1 });
    sim.kill(host);
    const rest = range(4).filter((n) => n !== host);
    await sim.until(() => readyElsewhere(sim!, rest, 'counter', host), 30_000, 'failover');
    expect(sim.node(1).keyService('counter')).toMatchObject({ host: heir, epoch: 2 });
    // The new host pulled from the survivors that still register it: not from the one that unregistered.
    expect(journal.has(new RegExp(`^data counter epoch 2 from ${heir} value `))).toBe(true);
    expect(journal.lines.filter((l) => l.node === quitter && l.text.startsWith('pull'))).toEqual([]);
  });

  it('the last node registering it unregisters: it stops, the key service is vacant, and a call by name fails at once with UnknownKeyServiceError', async () => {
    sim = simCluster(3, { candidates: [1, 2, 3] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    registerCounter(sim.node(2), { store, journal, critical: false });
    await sim.until(() => allUp(sim!, range(3)) && readyElsewhere(sim!, range(3), 'counter'), 30_000, 'placement');
    await settle(sim, sim.node(3).callKeyService('counter', 'add', 2));
    const stops: KeyServiceActivity[] = [];
    sim.node(2).on('keyservice-host', (a) => stops.push(a));

    await settle(sim, sim.node(2).unregisterKeyService('counter'));
    expect(stops).toEqual([{ name: 'counter', epoch: 1, active: false, reason: 'unregistered' }]);
    expect(journal.has('stopped counter epoch 1')).toBe(true);
    await sim.until(() => range(3).every((n) => sim!.node(n).keyService('counter')?.host === undefined), 30_000, 'vacant');
    expect(sim.node(1).keyService('counter')).toMatchObject({ host: undefined, ready: false, halted: false });
    for (const n of range(3)) {
      const before = sim.clock.now();
      const err = await failure(sim, sim.node(n).callKeyService('counter', 'get', null, { timeoutMs: 20_000 }));
      expect(isClusterInfraError(err) && err.code).toBe('CLMS_ERR_KEYSERVICE_UNKNOWN');
      // At once: not after the call's deadline.
      expect(sim.clock.now() - before).toBeLessThan(1_000);
    }
    // Unregistered: the node takes no new registration after joining, and the name is no longer its own.
    await expect(sim.node(2).unregisterKeyService('counter')).rejects.toMatchObject({ code: 'ICS_ERR_INVALID_ARGUMENT' });
  });

  it('a critical key service no member announces any more goes vacant, and the cluster stays formed', async () => {
    sim = simCluster(3, { candidates: [1, 2, 3] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    registerCounter(sim.node(2), { store, journal, critical: true });
    await sim.until(() => allUp(sim!, range(3)) && readyElsewhere(sim!, range(3), 'counter') && sim!.node(1).formed, 30_000, 'formed');
    await settle(sim, sim.node(2).unregisterKeyService('counter'));
    await sim.until(() => range(3).every((n) => sim!.node(n).keyService('counter')?.host === undefined), 30_000, 'vacant');
    expect(sim.node(1).keyService('counter')).toMatchObject({ halted: false, critical: false });
    expect(sim.node(1).halted).toBeUndefined();
    expect(sim.node(1).formed).toBe(true);
    const err = await failure(sim, sim.node(3).callKeyService('counter', 'get', null, { timeoutMs: 20_000 }));
    expect(isClusterInfraError(err) && err.code).toBe('CLMS_ERR_KEYSERVICE_UNKNOWN');
  });

  it('the last live node registering a critical key service unregisters while a Down one still announces it: it halts, as when its last eligible node fails', async () => {
    sim = simCluster(4, { candidates: [1, 2, 3] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    for (const n of [3, 4]) registerCounter(sim.node(n), { store, journal, critical: true });
    await sim.until(() => allUp(sim!, range(4)) && readyElsewhere(sim!, range(4), 'counter') && sim!.node(1).formed, 30_000, 'formed');
    const host = sim.node(1).keyService('counter')!.host!;
    const other = host === 3 ? 4 : 3;
    sim.kill(other);
    const rest = range(4).filter((n) => n !== other);
    await sim.until(() => rest.every((n) => sim!.node(n).info(other)?.state === 'Down'), 30_000, 'down');
    await settle(sim, sim.node(host).unregisterKeyService('counter'));
    await sim.until(() => rest.every((n) => sim!.node(n).halted?.keyService === 'counter'), 30_000, 'halted');
    expect(sim.node(1).formed).toBe(false);
    const err = await failure(sim, sim.node(2).callKeyService('counter', 'get', null, { timeoutMs: 20_000 }));
    expect(isClusterInfraError(err) && err.code).toBe('CLMS_ERR_KEYSERVICE_HALTED');
  });

  it('a call waiting for a key service that becomes unknown fails then, not at its deadline', async () => {
    sim = simCluster(3, { candidates: [1, 2, 3] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    let release: (() => void) | undefined;
    // Node 2's takeover waits on a gate: the key service is known, placed, and not ready.
    registerCounter(sim.node(2), { store, journal, critical: false, onFailover: () => new Promise<void>((r) => (release = r)) });
    await sim.until(() => allUp(sim!, range(3)) && release !== undefined, 30_000, 'assigned');
    const start = sim.clock.now();
    const call = sim.node(1).callKeyService('counter', 'get', null, { timeoutMs: 60_000 });
    const unregistering = sim.node(2).unregisterKeyService('counter');
    const err = await failure(sim, call);
    expect(isClusterInfraError(err) && err.code).toBe('CLMS_ERR_KEYSERVICE_UNKNOWN');
    expect(sim.clock.now() - start).toBeLessThan(10_000);
    await settle(sim, unregistering);
    release?.();
  });

  it('the disposer registerKeyService returns unregisters too; during the join, the node ends up not announcing it', async () => {
    sim = simCluster(3, { candidates: [1, 2, 3] });
    sim.node(2).registerKeyService({ name: 'x', subservice: 5, handlers: { ping: () => 'pong' } });
    const dispose = sim.node(3).registerKeyService({ name: 'x', subservice: 5, handlers: { ping: () => 'pong' } });
    const first = dispose();
    expect(dispose()).toBe(first);
    await settle(sim, first);
    await sim.until(() => allUp(sim!, range(3)) && readyElsewhere(sim!, range(3), 'x'), 30_000, 'placement');
    expect(sim.node(1).keyService('x')?.host).toBe(2);
    expect(announced(sim.node(1), 3)).toEqual([]);
    expect(announced(sim.node(1), 2)).toEqual(['x']);
  });
});
