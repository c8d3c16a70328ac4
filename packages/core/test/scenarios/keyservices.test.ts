/**
 * Key services on transport-mem under the virtual clock (issue 5): placement,
 * failover with pulled data, failover during failover, clean hand-over,
 * critical gating of formation, halt, and calls by name. The fault cases
 * (minority side, zombie host) are in keyservices-faults.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type ClusterNode, IcsStatusError, isClusterInfraError, type KeyServiceActivity, type WatchEvent } from '@clusterinfra/core';
import { type SimCluster, simCluster } from './clms-harness.js';
import { FencedStore, Journal, range, readyElsewhere, registerCounter, settle } from './keyservices-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const allUp = (s: SimCluster, ns: number[]): boolean => ns.every((n) => ns.every((m) => s.node(n).info(m)?.state === 'Up')) && s.converged(ns);

describe('placement and failover', () => {
  it('places a key service on the preferred eligible node, agreed by every node, and any member calls it by name', async () => {
    sim = simCluster(4, { candidates: [1, 2, 3] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    // Nodes 2 and 3 list `other` first; node 4 lists `counter` first: it is preferred for `counter`.
    for (const n of [2, 3]) sim.node(n).registerKeyService({ name: 'other', subservice: 2 });
    for (const n of [2, 3, 4]) registerCounter(sim.node(n), { store, journal });
    const seen: WatchEvent[] = [];
    const ac = new AbortController();
    void (async () => {
      for await (const e of sim!.node(1).watch({ signal: ac.signal })) seen.push(e);
    })();
    await sim.until(() => allUp(sim!, range(4)) && readyElsewhere(sim!, range(4), 'counter'), 30_000, 'placement');
    const host = sim.node(1).keyService('counter')!.host!;
    expect([2, 3, 4]).toContain(host);
    for (const n of range(4)) expect(sim.node(n).keyService('counter')).toMatchObject({ host, epoch: 1, ready: true, critical: true, halted: false });
    // Node 1 registered nothing: it learnt the subservice from the hosts' announcements.
    const pulled = (host === 4 ? 40 : host * 10);
    expect(await settle(sim, sim.node(1).callKeyService('counter', 'add', 7))).toBeGreaterThanOrEqual(7 + pulled);
    expect(store.accepted).toEqual([{ epoch: 1, node: host, what: 'add 7' }]);
    // The next host follows the preference order: node 4 lists it first, then the lowest number.
    sim.kill(host);
    const rest = range(4).filter((n) => n !== host);
    await sim.until(() => readyElsewhere(sim!, rest, 'counter', host), 30_000, 'failover');
    expect(sim.node(1).keyService('counter')).toMatchObject({ host: host === 4 ? 2 : 4, epoch: 2 });
    // Placement is in the history, and in watch() as transitions and keyservice entries.
    const next = host === 4 ? 2 : 4;
    const ks = sim.node(1).transitions().filter((t) => t.kind === 'keyservice' && t.keyService?.name === 'counter');
    expect(ks.map((t) => [t.node, t.keyService!.phase, t.keyService!.epoch])).toEqual([
      [host, 'assigned', 1],
      [host, 'ready', 1],
      [next, 'assigned', 2],
      [next, 'ready', 2],
    ]);
    expect(seen.some((e) => e.type === 'keyservice' && e.keyService.name === 'counter' && e.keyService.ready && e.keyService.host === next)).toBe(true);
    expect(seen.some((e) => e.type === 'formed' && e.formed)).toBe(true);
    ac.abort();
  });

  it('host crash: the next eligible node fails over after Down, pulls data from every survivor, then is ready everywhere', async () => {
    sim = simCluster(4, { candidates: [1, 2, 3] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    for (const n of range(4)) registerCounter(sim.node(n), { store, journal });
    await sim.until(() => allUp(sim!, range(4)) && readyElsewhere(sim!, range(4), 'counter'), 30_000, 'placement');
    const first = sim.node(1).keyService('counter')!;
    const survivors = range(4).filter((n) => n !== first.host);
    const caller = survivors.at(-1)!;
    await settle(sim, sim.node(caller).callKeyService('counter', 'add', 1));
    // Note when the new host learnt each step.
    const order: string[] = [];
    for (const n of survivors) {
      sim.node(n).on('transition', (t) => {
        if (n !== caller) return;
        if (t.kind === 'state' && t.node === first.host) order.push(`state ${t.to}`);
        if (t.kind === 'keyservice') order.push(`ks ${t.keyService!.phase} ${t.keyService!.epoch}`);
      });
    }
    sim.kill(first.host!);
    // A call made during the failover waits for the new host (within its deadline).
    const during = sim.node(caller).callKeyService<number>('counter', 'get', null, { timeoutMs: 20_000 });
    await sim.until(() => readyElsewhere(sim!, survivors, 'counter', first.host), 30_000, 'failover');
    const second = sim.node(caller).keyService('counter')!;
    expect(second.epoch).toBe(first.epoch + 1);
    // K4: assigned only after the old host was Down (cleanup finished everywhere), ready last.
    expect(order).toEqual(['state GoingDown', 'state Down', `ks assigned ${second.epoch}`, `ks ready ${second.epoch}`]);
    // Every survivor ran pullData for the new epoch, and the new host got all their results before it was ready.
    for (const n of survivors) expect(journal.has(`pull counter epoch ${second.epoch}`) && journal.lines.some((l) => l.node === n && l.text === `pull counter epoch ${second.epoch}`)).toBe(true);
    expect(journal.has(`data counter epoch ${second.epoch} from ${survivors.join(',')} value ${survivors.reduce((s, n) => s + n * 10, 0)}`)).toBe(true);
    expect(await settle(sim, during)).toBe(survivors.reduce((s, n) => s + n * 10, 0));
    expect(await settle(sim, sim.node(caller).callKeyService('counter', 'add', 5))).toBe(survivors.reduce((s, n) => s + n * 10, 0) + 5);
    expect(store.stale).toEqual([]);
    expect(store.accepted.map((w) => w.epoch)).toEqual([first.epoch, second.epoch]);
  });

  it('failover during failover: the new host dies while pulling data; a third node takes over with a newer epoch', async () => {
    sim = simCluster(5, { candidates: [1, 2, 3] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    let holdEpoch2 = true;
    const held: number[] = [];
    for (const n of range(5)) {
      registerCounter(sim.node(n), {
        store,
        journal,
        // The second activation never finishes its failover while held.
        onFailover: (ctx) => (ctx.epoch === 2 && holdEpoch2 ? new Promise<void>(() => void held.push(n)) : undefined),
      });
    }
    await sim.until(() => allUp(sim!, range(5)) && readyElsewhere(sim!, range(5), 'counter'), 30_000, 'placement');
    const a = sim.node(1).keyService('counter')!.host!;
    sim.kill(a);
    await sim.until(() => held.length === 1, 30_000, 'the second host taking over');
    const b = held[0]!;
    const rest = range(5).filter((n) => n !== a && n !== b);
    await sim.until(() => rest.every((n) => sim!.node(n).keyService('counter')?.epoch === 2), 10_000, 'the assignment seen everywhere');
    expect(sim.node(rest[0]!).keyService('counter')).toMatchObject({ host: b, epoch: 2, ready: false });
    expect(sim.node(rest[0]!).formed).toBe(false);
    sim.kill(b);
    await sim.until(() => readyElsewhere(sim!, rest, 'counter', b), 30_000, 'the third host');
    const c = sim.node(rest[0]!).keyService('counter')!;
    expect(c.epoch).toBe(3);
    expect(rest).toContain(c.host);
    expect(journal.has(`data counter epoch 3 from ${rest.join(',')} value ${rest.reduce((s, n) => s + n * 10, 0)}`)).toBe(true);
    const phases = sim.node(c.host!).transitions().filter((t) => t.kind === 'keyservice').map((t) => `${t.node}:${t.keyService!.phase}:${t.keyService!.epoch}`);
    expect(phases).toEqual([`${a}:assigned:1`, `${a}:ready:1`, `${b}:assigned:2`, `${c.host}:assigned:3`, `${c.host}:ready:3`]);
    await sim.until(() => rest.every((n) => sim!.node(n).formed), 10_000, 'formed again');
    holdEpoch2 = false;
  });

  it('clean leave hands over with data: the old host stops before the new one starts, and the value survives', async () => {
    // Node 1 is the only candidate, so the leave changes nothing but the host.
    sim = simCluster(4, { candidates: [1] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    const activity: (KeyServiceActivity & { node: number })[] = [];
    for (const n of [2, 3, 4]) {
      registerCounter(sim.node(n), { store, journal });
      sim.node(n).on('keyservice-host', (a) => activity.push({ ...a, node: n }));
    }
    await sim.until(() => allUp(sim!, range(4)) && readyElsewhere(sim!, range(4), 'counter'), 30_000, 'placement');
    const old = sim.node(1).keyService('counter')!;
    const others = range(4).filter((n) => n !== old.host);
    await settle(sim, sim.node(others[0]!).callKeyService('counter', 'add', 1000));
    const before = await settle(sim, sim.node(others[0]!).callKeyService<number>('counter', 'get'));
    await settle(sim, sim.node(old.host!).leave(), 30_000, 'leave');
    await sim.until(() => readyElsewhere(sim!, others, 'counter', old.host), 30_000, 'hand-over');
    const now = sim.node(others[0]!).keyService('counter')!;
    expect(now.epoch).toBe(old.epoch + 1);
    const assigned = sim.node(others[0]!).transitions().find((t) => t.kind === 'keyservice' && t.keyService?.epoch === now.epoch)!;
    expect(assigned.keyService).toMatchObject({ phase: 'assigned', handoverFrom: old.host });
    // Old host: hand-over ran, then it stopped; only then did the new host start.
    const handed = journal.index((l) => l.node === old.host && l.text === `handover counter epoch ${old.epoch} value ${before}`);
    const stopped = journal.index((l) => l.node === old.host && l.text === `stopped counter epoch ${old.epoch}`);
    const started = journal.index((l) => l.node === now.host && l.text === `failover counter epoch ${now.epoch}`);
    expect(handed).toBeGreaterThanOrEqual(0);
    expect(stopped).toBeGreaterThan(handed);
    expect(started).toBeGreaterThan(stopped);
    // The value came from the old host's hand-over, apart from what the failover pulled from the rest (not summed with it).
    expect(journal.has(`data counter epoch ${now.epoch} from ${[2, 3, 4].filter((n) => n !== old.host).join(',')} handover from ${old.host} value ${before}`)).toBe(true);
    expect(activity.find((a) => a.node === old.host && !a.active)?.reason).toBe(`handed over to node ${now.host}`);
    // The leave happened after the hand-over: the key service moved while the old host was Up.
    const states = sim.node(others[0]!).transitions();
    const leftAt = states.find((t) => t.kind === 'state' && t.node === old.host && t.to === 'ShuttingDown')!.number;
    expect(assigned.number).toBeLessThan(leftAt);
    expect(await settle(sim, sim.node(others[1]!).callKeyService('counter', 'add', 1))).toBe(before + 1);
    expect(store.stale).toEqual([]);
  });
});

describe('critical key services', () => {
  it('the cluster is not formed until every critical key service is ready; a non-critical one does not gate it', async () => {
    sim = simCluster(3, { candidates: [1, 2, 3] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const formedEvents: boolean[] = [];
    for (const n of range(3)) {
      registerCounter(sim.node(n), { store, journal, onFailover: () => gate });
      // A non-critical key service whose failover never ends.
      sim.node(n).registerKeyService({ name: 'slow-extra', critical: false, subservice: 5, failover: () => new Promise<void>(() => {}) });
    }
    sim.node(1).on('formed', (f) => formedEvents.push(f.formed));
    await sim.until(() => allUp(sim!, range(3)) && range(3).every((n) => sim!.node(n).keyService('counter')?.host !== undefined), 30_000, 'membership');
    await sim.clock.advance(2000);
    for (const n of range(3)) {
      expect(sim.node(n).formed).toBe(false);
      expect(sim.node(n).keyService('counter')?.ready).toBe(false);
    }
    expect(formedEvents).not.toContain(true);
    release();
    await sim.until(() => range(3).every((n) => sim!.node(n).formed), 10_000, 'formed');
    expect(formedEvents.at(-1)).toBe(true);
    expect(sim.node(1).keyService('slow-extra')?.ready).toBe(false);
  });

  it('halts with a clear reason when no eligible node is left for a critical key service, and forms again when one joins', async () => {
    sim = simCluster(5, { candidates: [1, 2, 3] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    for (const n of [4, 5]) registerCounter(sim.node(n), { store, journal });
    const halts: { keyService: string; reason: string }[] = [];
    sim.node(1).on('halted', (h) => halts.push(h));
    await sim.until(() => allUp(sim!, range(5)) && readyElsewhere(sim!, range(5), 'counter'), 30_000, 'placement');
    const first = sim.node(1).keyService('counter')!.host!;
    const second = first === 4 ? 5 : 4;
    sim.kill(first);
    await sim.until(() => sim!.node(1).keyService('counter')?.host === second && sim!.node(1).keyService('counter')!.ready, 30_000, 'failover to the last eligible node');
    expect(sim.node(1).halted).toBeUndefined();
    sim.kill(second);
    const rest = [1, 2, 3];
    await sim.until(() => rest.every((n) => sim!.node(n).keyService('counter')?.halted === true), 30_000, 'halt');
    for (const n of rest) {
      expect(sim.node(n).formed).toBe(false);
      expect(sim.node(n).halted).toEqual({ keyService: 'counter', reason: 'no eligible node left for critical key service counter' });
    }
    expect(halts).toEqual([{ keyService: 'counter', reason: 'no eligible node left for critical key service counter' }]);
    const err = await settle(sim, sim.node(2).callKeyService('counter', 'get').catch((e: unknown) => e));
    expect(isClusterInfraError(err, 'CLMS_ERR_KEYSERVICE_HALTED')).toBe(true);
    // An eligible node joins: the key service is placed again and the cluster forms.
    await sim.until(() => rest.every((n) => sim!.node(n).info(first)?.state === 'Down'), 30_000, 'Down');
    const back = sim.start(first);
    registerCounter(back, { store, journal });
    await sim.until(() => [...rest, first].every((n) => sim!.node(n).formed && sim!.node(n).keyService('counter')?.host === first), 30_000, 'formed again');
    expect(sim.node(1).halted).toBeUndefined();
    expect(sim.node(1).keyService('counter')!.epoch).toBeGreaterThan(2);
  });
});

describe('calling by name', () => {
  /** Methods that hang on the first activation(s) until the host dies; `runs` counts every start. */
  function hangingCounter(node: ClusterNode, runs: Map<string, number>, hangBelowEpoch: Map<string, number>, store: FencedStore, journal: Journal): void {
    const hang = (method: string) => (_: unknown, ctx: { epoch: number; signal: AbortSignal }) => {
      runs.set(method, (runs.get(method) ?? 0) + 1);
      if (ctx.epoch < (hangBelowEpoch.get(method) ?? 0)) return new Promise(() => {});
      return `${method} done at epoch ${ctx.epoch}`;
    };
    registerCounter(node, {
      store,
      journal,
      extraHandlers: { write: hang('write'), read: hang('read'), flaky: hang('flaky') },
      idempotent: ['get', 'read', 'flaky'],
    });
  }

  it('a call that may have run on a failed host is retried once on the new host only when idempotent', async () => {
    sim = simCluster(5, { candidates: [1, 2, 3] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    const runs = new Map<string, number>();
    // write and read hang at epoch 1; flaky hangs at epochs 1 and 2.
    const hangBelow = new Map([
      ['write', 2],
      ['read', 2],
      ['flaky', 3],
    ]);
    // Node 1 is the client (it registers nothing); the master may be anywhere.
    for (const n of [2, 3, 4, 5]) hangingCounter(sim.node(n), runs, hangBelow, store, journal);
    await sim.until(() => allUp(sim!, range(5)) && readyElsewhere(sim!, range(5), 'counter'), 30_000, 'placement');
    const h1 = sim.node(1).keyService('counter')!.host!;
    const client = sim.node(1);
    const outcome = (p: Promise<unknown>): Promise<unknown> => p.catch((e: unknown) => e);
    const write = outcome(client.callKeyService('counter', 'write', null, { timeoutMs: 20_000 }));
    const read = outcome(client.callKeyService('counter', 'read', null, { timeoutMs: 20_000 }));
    const flaky = outcome(client.callKeyService('counter', 'flaky', null, { timeoutMs: 20_000 }));
    await sim.until(() => runs.get('write') === 1 && runs.get('read') === 1 && runs.get('flaky') === 1, 10_000, 'calls running on the host');
    sim.kill(h1);
    const writeErr = await settle(sim, write);
    expect(isClusterInfraError(writeErr)).toBe(true);
    expect(['ICS_ERR_NODE_DOWN', 'ICS_ERR_UNAVAILABLE']).toContain((writeErr as { code: string }).code);
    expect(await settle(sim, read)).toBe('read done at epoch 2');
    await sim.until(() => runs.get('flaky') === 2, 30_000, 'flaky retried on the second host');
    const h2 = client.keyService('counter')!.host!;
    sim.kill(h2);
    const flakyErr = await settle(sim, flaky);
    expect(isClusterInfraError(flakyErr)).toBe(true);
    // Not idempotent: never run again; idempotent: once more; and only once.
    expect(runs.get('write')).toBe(1);
    expect(runs.get('read')).toBe(2);
    expect(runs.get('flaky')).toBe(2);
  });

  it('a call that reaches a node that is no longer the host is answered "not the host" and goes to the new host', async () => {
    sim = simCluster(3, { candidates: [1, 2, 3] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    for (const n of range(3)) registerCounter(sim.node(n), { store, journal });
    await sim.until(() => allUp(sim!, range(3)) && readyElsewhere(sim!, range(3), 'counter'), 30_000, 'placement');
    const old = sim.node(1).keyService('counter')!;
    const others = range(3).filter((n) => n !== old.host);
    // A node that is not the host refuses without running the method, in a way the caller can tell.
    const refused = await settle(
      sim,
      sim.node(old.host!).communication.call(others[0]!, { channel: 'keyservice', subservice: 1 }, 'add', 100).catch((e: unknown) => e),
    );
    expect(refused).toMatchObject({ code: 'ICS_ERR_REMOTE', status: 'FAILED_PRECONDITION', details: { notHost: true } });
    expect(store.accepted.filter((w) => w.what === 'add 100')).toEqual([]);
    // Hand over (the old host stays a member until its leave); a non-idempotent call made meanwhile still lands once.
    let left = false;
    void sim.node(old.host!).leave().then(() => (left = true));
    const got = await settle(sim, sim.node(others[0]!).callKeyService<number>('counter', 'add', 1, { timeoutMs: 20_000 }));
    expect(got).toBeGreaterThan(0);
    expect(store.accepted.filter((w) => w.what === 'add 1')).toHaveLength(1);
    await sim.until(() => left, 30_000, 'leave');
  });

  it('a handler\'s refusal reaches the caller as the same typed error whether the host is another node or the caller itself', async () => {
    sim = simCluster(3, { candidates: [1, 2, 3] });
    const store = new FencedStore();
    const journal = new Journal(() => sim!.clock.now());
    const schema = z.object({ amount: z.number() });
    for (const n of range(3)) {
      registerCounter(sim.node(n), {
        store,
        journal,
        extraHandlers: {
          strict: (args: unknown) => schema.parse(args).amount,
          busy: () => {
            throw new IcsStatusError('RESOURCE_EXHAUSTED', 'come back later', { retryAfterMs: 5 });
          },
        },
      });
    }
    await sim.until(() => allUp(sim!, range(3)) && readyElsewhere(sim!, range(3), 'counter'), 30_000, 'placement');
    const host = sim.node(1).keyService('counter')!.host!;
    const other = range(3).find((n) => n !== host)!;
    const failure = async (n: number, method: string, args: unknown): Promise<{ code: unknown; name: string; details: unknown }> => {
      const err = (await settle(sim!, sim!.node(n).callKeyService('counter', method, args)).catch((e: unknown) => e)) as { code?: unknown; name: string; details?: unknown };
      return { code: err.code, name: err.name, details: err.details };
    };
    for (const n of [host, other]) {
      // A ZodError thrown by the handler: the caller sent what the method refuses (it was INTERNAL remotely, a raw ZodError locally).
      const refused = await failure(n, 'strict', { amount: 'x' });
      expect(refused, `caller ${n}`).toMatchObject({ code: 'ICS_ERR_INVALID_ARGUMENT', name: 'InvalidArgumentError' });
      expect(refused.details).toEqual([expect.objectContaining({ path: ['amount'] })]);
      // A status the handler chose, and an unknown method (raw IcsStatusErrors without a code on the host itself).
      expect(await failure(n, 'busy', null), `caller ${n}`).toMatchObject({ code: 'ICS_ERR_RESOURCE_EXHAUSTED', name: 'ResourceExhaustedError' });
      expect(await failure(n, 'nope', null), `caller ${n}`).toMatchObject({ code: 'ICS_ERR_NOT_FOUND', name: 'NotFoundError' });
    }
    expect(await settle(sim, sim.node(host).callKeyService('counter', 'strict', { amount: 3 }))).toBe(3);
  });
});
