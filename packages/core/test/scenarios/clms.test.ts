import { afterEach, describe, expect, it } from 'vitest';
import type { Transition } from '@clusterinfra/core';
import { type SimCluster, simCluster } from './clms-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);
const stateOn = (s: SimCluster, on: number, of: number): string | undefined => s.node(on).info(of)?.state;
const allUp = (s: SimCluster, ns: number[]): boolean => ns.every((n) => ns.every((m) => stateOn(s, n, m) === 'Up'));

/** M1/M2: numbers go up by one, and two nodes agree on every number both applied. */
function checkHistories(s: SimCluster, ns: number[]): void {
  const hs = ns.map((n) => s.node(n).transitions());
  for (const h of hs) h.forEach((t, i) => i > 0 && expect(t.number).toBe(h[i - 1]!.number + 1));
  const byNumber = new Map<number, Transition>();
  for (const h of hs) {
    for (const t of h) {
      const seen = byNumber.get(t.number);
      if (seen) expect(t).toEqual(seen);
      else byNumber.set(t.number, t);
    }
  }
}

describe('formation', () => {
  for (const size of [1, 2, 3, 5]) {
    it(`forms a ${size}-node cluster: one master, every node Up everywhere, one history`, async () => {
      sim = simCluster(size, { candidates: range(Math.min(size, 3)) });
      await sim.until(() => allUp(sim!, range(size)) && sim!.converged(range(size)), 30_000, 'formation');
      const masters = new Set(range(size).map((n) => sim!.node(n).master));
      expect(masters.size).toBe(1);
      expect(sim.node(1).candidates).toContain([...masters][0]);
      checkHistories(sim, range(size));
      const h = sim.node(1).transitions();
      expect(h[0]!.number).toBe(1);
      expect(h.filter((t) => t.kind === 'state' && t.to === 'Up').map((t) => t.node).sort()).toEqual(range(size));
    });
  }
});

describe('failures', () => {
  it('kills a non-master: GoingDown then Down everywhere after cleanup, callbacks once per node', async () => {
    sim = simCluster(3);
    const downs = new Map<number, number[]>();
    for (const n of [1, 2, 3]) {
      downs.set(n, []);
      sim.node(n).registerSubsystem({ name: 'probe', nodedown: (e) => void downs.get(n)!.push(e.node) });
    }
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const victim = [1, 2, 3].find((n) => n !== master)!;
    const survivors = [1, 2, 3].filter((n) => n !== victim);
    const t0 = sim.clock.now();
    sim.kill(victim);
    await sim.until(() => survivors.every((n) => stateOn(sim!, n, victim) === 'Down'), 10_000, 'Down');
    // A crash is seen through the broken links: far quicker than the failure timeout.
    expect(sim.clock.now() - t0).toBeLessThan(sim.node(master).timing.failureTimeoutMs);
    for (const n of survivors) expect(downs.get(n)).toEqual([victim]);
    const states = sim.node(master).transitions().filter((t) => t.node === victim).map((t) => t.to);
    expect(states.slice(-2)).toEqual(['GoingDown', 'Down']);
    checkHistories(sim, survivors);
    const record = sim.node(master).decisionRecords().find((r) => r.kind === 'down');
    expect(record?.node).toBe(victim);
  });

  it('a crash is verified by the probes and the members that lost their links; the record says who saw what, and when', async () => {
    sim = simCluster(5);
    await sim.until(() => allUp(sim!, range(5)) && sim!.converged(range(5)), 30_000, 'formation');
    const master = sim.node(1).master!;
    const victim = range(5).filter((n) => n !== master).at(-1)!;
    const incarnation = sim.node(victim).incarnation;
    sim.kill(victim);
    await sim.until(() => stateOn(sim!, master, victim) === 'GoingDown' || stateOn(sim!, master, victim) === 'Down', 10_000, 'GoingDown');
    const record = sim.node(master).decisionRecords().find((r) => r.kind === 'down' && r.node === victim)!;
    expect(record.rule).toMatch(/link lost/);
    // Three others could not reach it: by probe, or by a report of their own.
    const others = Object.entries(record.observers ?? {}).filter(([n, v]) => Number(n) !== master && /could not reach it|reported it unreachable/.test(v));
    expect(others.length).toBe(3);
    expect(record.observers?.[String(master)]).not.toBe('answered');
    const t = record.timings!;
    expect(t.verified).toBeLessThanOrEqual(t.confirmed!);
    expect(t.confirmed).toBeLessThanOrEqual(t.committed!);
    expect(t.committed).toBe(record.tookMs);
    expect(sim.node(master).transitions().some((x) => x.node === victim && x.incarnation === incarnation && x.to === 'GoingDown')).toBe(true);
  });

  it('one member that loses its link to a node does not bring it down: the master reaches it', async () => {
    // Three nodes: the reporter is the only other member, so its word alone would settle it.
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, range(3)) && sim!.converged(range(3)), 30_000, 'formation');
    const master = sim.node(1).master!;
    const [reporter, target] = range(3).filter((n) => n !== master) as [number, number];
    // Cut the pair both ways and break their link: the reporter tells the master at once.
    sim.network.partition(`node-${reporter}`, `node-${target}`);
    sim.network.killLinks(`node-${reporter}`, `node-${target}`);
    await sim.clock.advance(3000);
    expect(stateOn(sim, master, target)).toBe('Up');
    expect(stateOn(sim, master, reporter)).toBe('Up');
    expect(sim.node(master).decisionRecords().filter((r) => r.kind === 'down')).toEqual([]);
    sim.network.heal();
    await sim.clock.advance(1000);
    expect(sim.converged(range(3))).toBe(true);
  });

  it('kills the master: a surviving candidate takes over with a higher term, history intact', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const old = sim.node(1).master!;
    const oldTerm = sim.node(old).currentTerm;
    const before = sim.node(old).transitions();
    const survivors = [1, 2, 3].filter((n) => n !== old);
    sim.kill(old);
    await sim.until(
      () => survivors.every((n) => stateOn(sim!, n, old) === 'Down') && sim!.converged(survivors),
      20_000,
      'failover',
    );
    const master = sim.node(survivors[0]!).master!;
    expect(survivors).toContain(master);
    expect(sim.node(master).currentTerm).toBeGreaterThan(oldTerm);
    // Every transition committed under the old master is still there, unchanged.
    const after = sim.node(master).transitions();
    expect(after.slice(0, before.length)).toEqual(before);
    checkHistories(sim, survivors);
  });

  it('a silent failure is declared down within the failure timeout; pauses shorter than it less 1.25 heartbeat intervals never are', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const victim = [1, 2, 3].find((n) => n !== master)!;
    const { failureTimeoutMs, heartbeatIntervalMs } = sim.node(master).timing;
    const head = sim.node(master).lastTransition;
    // Pauses begun at every phase of the heartbeat cycle, each just shorter than the guarantee.
    for (let i = 0; i < 8; i++) {
      await sim.clock.advance(heartbeatIntervalMs / 8 + 3 * heartbeatIntervalMs);
      sim.network.pause(`node-${victim}`);
      await sim.clock.advance(failureTimeoutMs - 1.25 * heartbeatIntervalMs - 2);
      sim.network.resume(`node-${victim}`);
    }
    await sim.clock.advance(failureTimeoutMs * 2);
    expect(stateOn(sim, master, victim)).toBe('Up');
    expect(sim.node(master).lastTransition).toBe(head);
    // A cut that never heals: committed within the timeout.
    const cutAt = sim.clock.now();
    sim.network.isolate(`node-${victim}`);
    await sim.until(() => stateOn(sim!, master, victim) === 'GoingDown' || stateOn(sim!, master, victim) === 'Down', 10_000, 'declared down');
    const took = sim.clock.now() - cutAt;
    expect(took).toBeLessThanOrEqual(failureTimeoutMs);
    const record = sim.node(master).decisionRecords().find((r) => r.kind === 'down' && r.node === victim)!;
    expect(record.rule).toMatch(/no heartbeat answer/);
  });

  it('a pause shorter than the timeout is not a failure; a longer one is, and the node rejoins as a new incarnation', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const victim = [1, 2, 3].find((n) => n !== master)!;
    const timeout = sim.node(master).timing.failureTimeoutMs;
    const head = sim.node(master).lastTransition;
    sim.network.pause(`node-${victim}`);
    await sim.clock.advance(timeout / 2);
    sim.network.resume(`node-${victim}`);
    await sim.clock.advance(timeout * 2);
    expect(stateOn(sim, master, victim)).toBe('Up');
    expect(sim.node(master).lastTransition).toBe(head);

    const oldIncarnation = sim.node(victim).incarnation;
    // An application service on the victim: it must survive the rejoin.
    const APP = { channel: 'default', subservice: 77 };
    sim.node(victim).communication.registerService({ ...APP, name: 'app', handlers: { who: () => sim!.node(victim).incarnation } });
    sim.network.pause(`node-${victim}`);
    await sim.until(() => stateOn(sim!, master, victim) === 'Down', 10_000, 'the paused node declared down');
    sim.network.resume(`node-${victim}`);
    await sim.until(
      () => stateOn(sim!, master, victim) === 'Up' && sim!.node(master).info(victim)!.incarnation !== oldIncarnation && sim!.converged([1, 2, 3]),
      30_000,
      'rejoin as a new incarnation',
    );
    expect(sim.node(victim).incarnation).not.toBe(oldIncarnation);
    let answer: unknown;
    void sim.node(master).communication.call(victim, APP, 'who', null, { timeoutMs: 5000 }).then(
      (v) => (answer = v),
      (e: unknown) => (answer = e),
    );
    await sim.until(() => answer !== undefined, 10_000, 'a call to the rejoined node');
    expect(answer).toBe(sim.node(victim).incarnation);
  });
});

describe('nodedown ordering', () => {
  it("the 'nodedown' event fires after ICS errored out the calls to that node", async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const [victim, caller] = [1, 2, 3].filter((n) => n !== master) as [number, number];
    const HANG = { channel: 'default', subservice: 78 };
    sim.node(victim).communication.registerService({ ...HANG, name: 'hang', handlers: { wait: (_args, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)) } });
    let outcome: unknown;
    void sim.node(caller).communication.call(victim, HANG, 'wait', null, { timeoutMs: 60_000 }).then(
      (v) => (outcome = v),
      (e: unknown) => (outcome = e),
    );
    await sim.until(() => sim!.node(victim).communication.servingCount(caller) === 1, 5_000, 'the call to reach its handler');
    let pendingAtEvent: number | undefined;
    sim.node(caller).on('nodedown', (info) => {
      if (info.node === victim) pendingAtEvent = sim!.node(caller).communication.stats().pendingCalls;
    });
    void sim.node(master).declareDown(victim, 'test');
    await sim.until(() => pendingAtEvent !== undefined && outcome !== undefined, 10_000, 'nodedown at the caller');
    expect(pendingAtEvent).toBe(0);
    expect((outcome as { code?: string }).code).toBe('ICS_ERR_NODE_DOWN');
  });
});

describe('membership API', () => {
  it('a node leaves cleanly: ShuttingDown then Down, and it closes', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const leaver = [1, 2, 3].find((n) => n !== master)!;
    let left = false;
    void sim.node(leaver).leave().then(() => (left = true));
    await sim.until(() => left && stateOn(sim!, master, leaver) === 'Down', 10_000, 'leave');
    const states = sim.node(master).transitions().filter((t) => t.node === leaver).map((t) => t.to);
    expect(states.slice(-2)).toEqual(['ShuttingDown', 'Down']);
  });

  it('declares a node down through the API, from any node', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const [asker, victim] = [1, 2, 3].filter((n) => n !== master) as [number, number];
    // Not awaited: the test ends (and closes the nodes) once the down shows; closing ends the request.
    void sim.node(asker).declareDown(victim, 'operator said so').catch(() => {});
    await sim.until(() => stateOn(sim!, master, victim) === 'GoingDown' || stateOn(sim!, master, victim) === 'Down', 10_000, 'declared down');
    const t = sim.node(master).transitions().find((x) => x.node === victim && x.to === 'GoingDown');
    expect(t?.cause).toBe('operator said so');
  });

  it('a late joiner receives the whole history', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    sim.start(4, { seeds: ['node-1', 'node-2', 'node-3'] });
    await sim.until(() => allUp(sim!, [1, 2, 3, 4]) && sim!.converged([1, 2, 3, 4]), 30_000, 'late join');
    expect(sim.node(4).transitions()).toEqual(sim.node(1).transitions());
  });
});

describe('metadata', () => {
  it('setInfo replicates metadata as a transition', async () => {
    sim = simCluster(3, { extra: (n) => ({ meta: { zone: `z${n}` } }) });
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    expect(sim.node(1).info(2)?.meta).toEqual({ zone: 'z2' });
    let done = false;
    void sim.node(2).setInfo({ zone: 'z9', rack: 4 }).then(() => (done = true));
    await sim.until(() => done && [1, 2, 3].every((n) => sim!.node(n).info(2)?.meta.zone === 'z9'), 10_000, 'meta');
    const t = sim.node(3).transitions().at(-1)!;
    expect(t).toMatchObject({ kind: 'meta', node: 2, from: 'Up', to: 'Up' });
    expect(sim.node(1).info(2)?.state).toBe('Up');
  });
});

describe('partitions and barriers', () => {
  it('a minority side never commits; the majority carries on; healing converges on one history', async () => {
    sim = simCluster(5, { candidates: [1, 2, 3] });
    await sim.until(() => allUp(sim!, range(5)) && sim!.converged(range(5)), 30_000, 'formation');
    const master = sim.node(1).master!;
    // The master and one other node on the minority side.
    const minority = [master, master === 5 ? 4 : 5];
    const majority = range(5).filter((n) => !minority.includes(n));
    for (const a of minority) for (const b of majority) sim.network.partition(`node-${a}`, `node-${b}`);
    const minorityHeads = new Map(minority.map((n) => [n, sim!.node(n).lastTransition]));
    await sim.until(
      () => majority.every((n) => minority.every((m) => ['GoingDown', 'Down'].includes(stateOn(sim!, n, m) ?? ''))) && sim!.converged(majority),
      30_000,
      'majority declares the minority down',
    );
    expect(majority).toContain(sim.node(majority[0]!).master);
    // M4: the minority side committed nothing after the cut (it may only have lost its master).
    for (const n of minority) {
      const after = sim.node(n).transitions().filter((t) => t.number > minorityHeads.get(n)!);
      expect(after.filter((t) => t.kind !== 'master')).toEqual([]);
      expect(sim.node(n).hasQuorum).toBe(false);
    }
    sim.network.heal();
    await sim.until(() => allUp(sim!, range(5)) && sim!.converged(range(5)), 60_000, 'heal and rejoin');
    checkHistories(sim, range(5));
  });

  it('a slow nodedown callback holds the node Down (and its rejoin) back, and nothing else', async () => {
    sim = simCluster(4, { candidates: [1, 2, 3] });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    await sim.until(() => allUp(sim!, range(4)) && sim!.converged(range(4)), 30_000, 'formation');
    const master = sim.node(1).master!;
    const [slow, victim, other] = range(4).filter((n) => n !== master) as [number, number, number];
    sim.node(slow).registerSubsystem({ name: 'slow', nodedown: (e) => (e.node === victim ? gate : undefined) });
    sim.kill(victim);
    await sim.until(() => stateOn(sim!, master, victim) === 'GoingDown', 10_000, 'GoingDown');
    sim.start(victim);
    await sim.clock.advance(2000);
    // Still GoingDown: one node has not finished its cleanup; the restart waits.
    expect(stateOn(sim, master, victim)).toBe('GoingDown');
    // Other membership work goes on meanwhile.
    let declared = false;
    void sim.node(master).declareDown(other, 'unrelated').then(() => (declared = true));
    await sim.until(() => declared && ['GoingDown', 'Down'].includes(stateOn(sim!, master, other) ?? ''), 10_000, 'unrelated down');
    release();
    await sim.until(() => stateOn(sim!, master, victim) === 'Up', 30_000, 'rejoin after the cleanup');
    const states = sim.node(master).transitions().filter((t) => t.node === victim).map((t) => t.to);
    const down = states.lastIndexOf('Down');
    expect(states.slice(down)).toEqual(['Down', 'ComingUp', 'Up']);
  });

  it('kills two nodes in a row, master first', async () => {
    sim = simCluster(5, { candidates: [1, 2, 3] });
    await sim.until(() => allUp(sim!, range(5)) && sim!.converged(range(5)), 30_000, 'formation');
    const first = sim.node(1).master!;
    sim.kill(first);
    const second = range(5).find((n) => n !== first && sim!.node(1 === first ? 2 : 1).candidates.includes(n))!;
    await sim.clock.advance(10);
    sim.kill(second);
    const survivors = range(5).filter((n) => n !== first && n !== second);
    await sim.until(
      () => survivors.every((n) => [first, second].every((d) => stateOn(sim!, n, d) === 'Down')) && sim!.converged(survivors),
      30_000,
      'both down',
    );
    checkHistories(sim, survivors);
  });
});

describe('subsystems and notifications', () => {
  it('runs callbacks by band, then registration order, on every surviving node', async () => {
    sim = simCluster(3);
    const order: string[] = [];
    const node1 = sim.node(1);
    node1.registerSubsystem({ name: 'late', band: 2, nodeup: (e) => void order.push(`late:up:${e.node}`), nodedown: (e) => void order.push(`late:down:${e.node}`) });
    node1.registerSubsystem({ name: 'early-a', band: 0, nodeup: (e) => void order.push(`a:up:${e.node}`), nodedown: (e) => void order.push(`a:down:${e.node}`) });
    node1.registerSubsystem({ name: 'early-b', band: 0, nodeup: (e) => void order.push(`b:up:${e.node}`), nodedown: (e) => void order.push(`b:down:${e.node}`) });
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const victim = sim.node(1).master === 3 ? 2 : 3;
    sim.kill(victim);
    await sim.until(() => stateOn(sim!, 1, victim) === 'Down', 10_000, 'down');
    const downs = order.filter((x) => x.includes(':down:'));
    expect(downs).toEqual([`a:down:${victim}`, `b:down:${victim}`, `late:down:${victim}`]);
    const ups = order.filter((x) => x.endsWith(`:up:${victim}`));
    expect(ups).toEqual([`a:up:${victim}`, `b:up:${victim}`, `late:up:${victim}`]);
  });

  it('watch() replays from a number and follows live, each transition once, in order', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const ac = new AbortController();
    const seen: number[] = [];
    const done = (async () => {
      for await (const e of sim!.node(1).watch({ since: 2, signal: ac.signal })) {
        if (e.type === 'transition') seen.push(e.transition.number);
      }
    })();
    void sim.node(2).setInfo({ x: 1 });
    const target = sim.node(1).lastTransition + 1;
    await sim.until(() => seen.includes(target), 10_000, 'live transition');
    ac.abort();
    await sim.clock.advance(1);
    await done;
    expect(seen).toEqual(Array.from({ length: target - 1 }, (_, i) => i + 2));
  });

  it('refuses a node outside the allow-list and records why', async () => {
    sim = simCluster(3, { extra: () => ({ allow: { nodes: [1, 2, 3] } }) });
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    sim.start(7, { seeds: ['node-1', 'node-2', 'node-3'] });
    await sim.clock.advance(2000);
    const master = sim.node(1).master!;
    expect(sim.node(master).info(7)).toBeUndefined();
    expect(sim.node(master).decisionRecords().some((r) => r.kind === 'refused-join' && r.node === 7)).toBe(true);
  });
});

describe('policies and hooks', () => {
  it('quorum policies decide as documented', async () => {
    const { hasQuorum } = await import('@clusterinfra/core');
    const voters = [1, 2, 3, 4];
    expect(hasQuorum('majority', new Set([1, 2]), voters)).toBe(false);
    expect(hasQuorum('majority', new Set([1, 2, 3]), voters)).toBe(true);
    expect(hasQuorum('none', new Set([1]), voters)).toBe(true);
    expect(hasQuorum({ size: 2 }, new Set([3, 4]), voters)).toBe(true);
    expect(hasQuorum({ size: 3 }, new Set([3, 4]), voters)).toBe(false);
    expect(hasQuorum({ tieBreaker: 1 }, new Set([1, 2]), voters)).toBe(true);
    expect(hasQuorum({ tieBreaker: 1 }, new Set([3, 4]), voters)).toBe(false);
    // Acknowledgements from non-voters do not count.
    expect(hasQuorum('majority', new Set([1, 2, 9]), voters)).toBe(false);
  });

  it("with quorum 'none' a 2-node cluster survives the loss of one node", async () => {
    sim = simCluster(2, { candidates: [1, 2], extra: () => ({ quorum: 'none' }) });
    await sim.until(() => allUp(sim!, [1, 2]) && sim!.converged([1, 2]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const other = master === 1 ? 2 : 1;
    sim.kill(other);
    await sim.until(() => stateOn(sim!, master, other) === 'Down', 10_000, 'down');
  });

  it("with quorum 'majority' a 2-node cluster cannot decide alone", async () => {
    sim = simCluster(2, { candidates: [1, 2] });
    await sim.until(() => allUp(sim!, [1, 2]) && sim!.converged([1, 2]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const other = master === 1 ? 2 : 1;
    const committed: Transition[] = [];
    sim.node(master).on('transition', (t) => committed.push(t));
    let quorumLost = false;
    sim.node(master).on('quorum', (q) => (quorumLost ||= !q.hasQuorum));
    sim.kill(other);
    await sim.clock.advance(3000);
    // Alone it is not a majority of two: nothing is committed, and it says so.
    expect(committed).toEqual([]);
    expect(quorumLost).toBe(true);
    expect(sim.node(master).hasQuorum).toBe(false);
  });

  it('confirmDown can keep a node; fence runs before GoingDown and a failing fence blocks it', async () => {
    const fenced: number[] = [];
    let allowDown = false;
    let fenceWorks = false;
    sim = simCluster(3, {
      extra: () => ({
        confirmDown: () => allowDown,
        fence: async (node) => {
          if (!fenceWorks) throw new Error('fence device offline');
          fenced.push(node);
        },
      }),
    });
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const victim = [1, 2, 3].find((n) => n !== master)!;
    sim.kill(victim);
    await sim.clock.advance(1500);
    expect(stateOn(sim, master, victim)).toBe('Up'); // the policy said no
    allowDown = true;
    await sim.clock.advance(1500);
    expect(stateOn(sim, master, victim)).toBe('Up'); // fencing failed
    fenceWorks = true;
    await sim.until(() => stateOn(sim!, master, victim) === 'Down', 10_000, 'down after fencing');
    expect(fenced[0]).toBe(victim);
  });

  it('a pluggable detector can push its own suspicions (verified before acting)', async () => {
    const { heartbeatDetector } = await import('@clusterinfra/core');
    let report: ((node: number, reason: string) => void) | undefined;
    sim = simCluster(3, {
      extra: () => ({
        detector: (timing) => {
          const base = heartbeatDetector()(timing);
          return { ...base, name: 'watchdog', start: (ctx) => void (report = ctx.suspect) };
        },
      }),
    });
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const victim = [1, 2, 3].find((n) => n !== master)!;
    // A suspicion about a healthy node is verified and dropped.
    report!(victim, 'watchdog says so');
    await sim.clock.advance(1000);
    expect(stateOn(sim, master, victim)).toBe('Up');
    // A silent failure (no link break): the heartbeat timeout finds it; the record names the detector.
    sim.network.isolate(`node-${victim}`);
    await sim.until(() => stateOn(sim!, master, victim) === 'Down', 10_000, 'down');
    const r = sim.node(master).decisionRecords().find((d) => d.kind === 'down' && d.node === victim);
    expect(r?.detector).toBe('watchdog');
  });

  it('an asymmetric partition (the master hears a node that cannot hear it) does not split the cluster', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const victim = [1, 2, 3].find((n) => n !== master)!;
    sim.network.partition(`node-${master}`, `node-${victim}`, { oneWay: true });
    await sim.clock.advance(5000);
    const others = [1, 2, 3].filter((n) => n !== victim);
    // Whatever happened to the one-way-cut node, the others agree and one master decides.
    expect(sim.converged(others)).toBe(true);
    checkHistories(sim, [1, 2, 3]);
    sim.network.heal();
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 60_000, 'heal');
    checkHistories(sim, [1, 2, 3]);
  });

  it('history can be walked by number', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const n = sim.node(2);
    const first = n.transition(n.firstTransition)!;
    expect(first.number).toBe(1);
    expect(n.nextTransition(1)?.number).toBe(2);
    expect(n.previousTransition(2)?.number).toBe(1);
    expect(n.nextTransition(n.lastTransition)).toBeUndefined();
  });
});
