/**
 * Membership under the faults real deployments make (issue 16), each as a
 * deterministic scenario on the memory network and the virtual clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ClusterNode, createIcs, type Ics, seededRandom, silentLogger } from '@clusterinfra/core';
import { memory } from '@clusterinfra/transport-mem';
import { tcp } from '@clusterinfra/transport-tcp';
import { range, type SimCluster, simCluster } from './clms-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const stateOn = (s: SimCluster, on: number, of: number): string | undefined => s.node(on).info(of)?.state;
const allUp = (s: SimCluster, ns: number[]): boolean => ns.every((n) => ns.every((m) => stateOn(s, n, m) === 'Up'));

describe("a node's own trouble is not evidence against others", () => {
  it('every link of the master reset at once: no member is declared down', async () => {
    sim = simCluster(5, { candidates: [1, 2, 3], extra: () => ({ preset: 'lan' }) });
    await sim.until(() => allUp(sim!, range(5)) && sim!.converged(range(5)), 30_000, 'formation');
    const master = sim.node(1).master!;
    const head = sim.node(master).lastTransition;
    const killed = sim.network.killLinks(`node-${master}`);
    expect(killed).toBeGreaterThan(0);
    await sim.clock.advance(sim.node(master).timing.failureTimeoutMs * 3);
    const downs = sim.node(master).transitions(head).filter((t) => t.kind === 'state' && (t.to === 'GoingDown' || t.to === 'Down'));
    expect(downs.map((t) => `${t.node} ${t.to} (${t.cause})`)).toEqual([]);
    expect(allUp(sim, range(5))).toBe(true);
    expect(sim.converged(range(5))).toBe(true);
  });
});

describe('a master that can send but not receive', () => {
  it('evicts no healthy member, and every committed GoingDown has a decision record', async () => {
    sim = simCluster(5, { candidates: [1, 2, 3], extra: () => ({ preset: 'lan' }) });
    await sim.until(() => allUp(sim!, range(5)) && sim!.converged(range(5)), 30_000, 'formation');
    const master = sim.node(1).master!;
    const head = sim.node(master).lastTransition;
    const others = range(5).filter((n) => n !== master);
    for (const n of others) sim.network.partition(`node-${n}`, `node-${master}`, { oneWay: true });
    await sim.clock.advance(sim.node(master).timing.failureTimeoutMs * 10);
    sim.network.heal();
    await sim.until(() => sim!.converged(range(5).filter((n) => sim!.node(n).master !== undefined)) && others.every((n) => sim!.node(n).master !== undefined), 30_000, 'a master again');
    await sim.clock.advance(sim.node(others[0]!).timing.failureTimeoutMs * 5);
    const history = sim.node(others[0]!).transitions(head);
    const downs = history.filter((t) => t.kind === 'state' && t.to === 'GoingDown');
    // Only the deaf master may have been taken out: the members could not reach it.
    expect(downs.filter((t) => t.node !== master).map((t) => `${t.node} (${t.cause})`)).toEqual([]);
    for (const t of downs) {
      const recorded = range(5).some((n) => sim!.node(n).decisionRecords().some((r) => r.kind === 'down' && r.node === t.node && r.term === t.term));
      expect(recorded, `a decision record for #${t.number} ${t.node} GoingDown`).toBe(true);
    }
  });
});

describe('membership requests from a peer that is not a member', () => {
  const CLMS_SERVICE = { channel: 'clms', subservice: 1 };
  async function outsider(s: SimCluster, nodeNum = 9): Promise<Ics> {
    const ics = createIcs({ transport: memory({ network: s.network, address: `node-${nodeNum}` }), clusterName: 'sim', nodeNum, clock: s.clock, logger: silentLogger, peers: (n) => `node-${n}` });
    let started = false;
    void ics.start().then(() => (started = true));
    await s.until(() => started, 5_000, 'the outsider to start');
    return ics;
  }
  async function closeOutsider(s: SimCluster, ics: Ics): Promise<void> {
    let closed = false;
    void ics.close().then(() => (closed = true));
    await s.until(() => closed, 10_000, 'the outsider to close');
  }
  const outcome = async (s: SimCluster, p: Promise<unknown>): Promise<unknown> => {
    let out: unknown;
    void p.then(
      (v) => (out = { value: v }),
      (e: unknown) => (out = e),
    );
    await s.until(() => out !== undefined, 10_000, 'an answer');
    return out;
  };

  it('probe is served to the current master only, fetch to members only', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const [a, b] = [1, 2, 3].filter((n) => n !== master) as [number, number];
    const x = await outsider(sim);
    try {
      const probe = (await outcome(sim, x.call(a, CLMS_SERVICE, 'probe', { node: b }))) as { code?: string; status?: string };
      expect(probe.code).toBe('ICS_ERR_REMOTE');
      expect(probe.status).toBe('PERMISSION_DENIED');
      const fetch = (await outcome(sim, x.call(master, CLMS_SERVICE, 'fetch', { after: 0 }))) as { code?: string; status?: string };
      expect(fetch.status).toBe('PERMISSION_DENIED');
      // A member that is not the master may not make others probe either.
      const byMember = (await outcome(sim, sim.node(a).communication.call(b, CLMS_SERVICE, 'probe', { node: master }))) as { status?: string };
      expect(byMember.status).toBe('PERMISSION_DENIED');
      // The master may, and a member may fetch.
      expect(await outcome(sim, sim.node(master).communication.call(a, CLMS_SERVICE, 'probe', { node: b }))).toEqual({ value: { reachable: true } });
      expect(await outcome(sim, sim.node(a).communication.call(master, CLMS_SERVICE, 'fetch', { after: 0 }))).toMatchObject({ value: { snapshot: null } });
    } finally {
      await closeOutsider(sim, x);
    }
  });

  it('a flood of probes naming the caller itself holds no handler and downs nobody', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const member = [1, 2, 3].find((n) => n !== master)!;
    const head = sim.node(master).lastTransition;
    const x = await outsider(sim);
    x.registerService({ ...CLMS_SERVICE, name: 'clms', handlers: { alive: () => new Promise(() => {}) } });
    try {
      for (let round = 0; round < 20; round++) {
        for (let i = 0; i < 100; i++) void x.call(member, CLMS_SERVICE, 'probe', { node: 9, timeoutMs: 60_000 }, { timeoutMs: 60_000 }).catch(() => {});
        await sim.clock.advance(50);
        // Refused at once: none waits on the caller's silence in the member's clms pool.
        expect(sim.node(member).communication.servingCount(9)).toBe(0);
      }
      await sim.clock.advance(sim.node(master).timing.failureTimeoutMs * 3);
      expect(sim.node(master).transitions(head).filter((t) => t.kind === 'state').map((t) => `${t.node} ${t.to}`)).toEqual([]);
    } finally {
      await closeOutsider(sim, x);
    }
  });

  it('joins wait for their commit in a bounded number of handlers; the others are told to ask again', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const joiners: Ics[] = [];
    for (const i of range(100)) joiners.push(await outsider(sim, 100 + i));
    const answers: unknown[] = [];
    for (const x of joiners) {
      void x.call(master, CLMS_SERVICE, 'join', { incarnation: x.incarnation, address: x.address ?? '', meta: {}, keyServices: [] }, { timeoutMs: 60_000 }).then(
        (v) => answers.push(v),
        (e: unknown) => answers.push(e),
      );
    }
    await sim.until(() => answers.length === joiners.length, 10_000, 'every join answered');
    // The joins all arrive in one instant; only MAX_JOIN_WAITERS (64) handlers wait for their commit.
    const waited = answers.filter((a) => (a as { ok?: boolean }).ok === true).length;
    const queued = answers.filter((a) => (a as { queued?: boolean }).queued === true).length;
    expect(waited).toBeLessThanOrEqual(64);
    expect(queued).toBe(joiners.length - waited);
    for (const x of joiners) await closeOutsider(sim, x);
  });
});

describe('leave() and a master that dies at the same moment', () => {
  for (const size of [4, 5]) {
    it(`${size} nodes: leave() resolves only once the next master committed the ShuttingDown, and the survivors carry on`, async () => {
      sim = simCluster(size, { candidates: [1, 2, 3] });
      await sim.until(() => allUp(sim!, range(size)) && sim!.converged(range(size)), 30_000, 'formation');
      const master = sim.node(1).master!;
      const leaver = size;
      const survivors = range(size).filter((n) => n !== master && n !== leaver);
      let left: unknown;
      sim.kill(master);
      void sim.node(leaver).leave().then(
        () => (left = 'left'),
        (e: unknown) => (left = e),
      );
      await sim.until(() => left !== undefined, 60_000, 'leave() to settle');
      expect(left).toBe('left');
      await sim.until(() => sim!.converged(survivors) && survivors.every((n) => ['ShuttingDown', 'Down'].includes(stateOn(sim!, n, leaver) ?? '')), 30_000, 'the survivors to agree');
      const mine = sim.node(survivors[0]!).transitions().filter((t) => t.node === leaver && t.kind === 'state');
      expect(mine.map((t) => t.to)).toContain('ShuttingDown');
      expect(mine.map((t) => t.to)).not.toContain('GoingDown');
      expect(survivors.every((n) => stateOn(sim!, n, n) === 'Up')).toBe(true);
      expect(sim.node(survivors[0]!).master).toBeDefined();
    });
  }

  it('leave() rejects with LeaveFailedError when no master can commit it, and the node stays', async () => {
    sim = simCluster(3, { candidates: [1, 2, 3] });
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const [leaver, other] = [1, 2, 3].filter((n) => n !== master) as [number, number];
    sim.kill(master);
    sim.kill(other);
    let left: unknown;
    void sim.node(leaver).leave().then(
      () => (left = 'left'),
      (e: unknown) => (left = e),
    );
    await sim.until(() => left !== undefined, 120_000, 'leave() to settle');
    expect((left as { code?: string }).code).toBe('CLMS_ERR_LEAVE_FAILED');
    expect(sim.node(leaver).info()?.state).toBe('Up');
  });
});

describe('a healthy node declared down', () => {
  it('learns it from the first refused link and is Up again as a new incarnation within a failure timeout', async () => {
    sim = simCluster(3);
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const victim = [1, 2, 3].find((n) => n !== master)!;
    const before = sim.node(victim).incarnation;
    // The victim misses the news: every frame to it is lost while it is declared down.
    sim.network.partition(`node-${master}`, `node-${victim}`, { oneWay: true });
    const third = [1, 2, 3].find((n) => n !== master && n !== victim)!;
    sim.network.partition(`node-${third}`, `node-${victim}`, { oneWay: true });
    void sim.node(master).declareDown(victim, 'operator');
    await sim.until(() => stateOn(sim!, master, victim) === 'GoingDown' || stateOn(sim!, master, victim) === 'Down', 10_000, 'GoingDown');
    const downAt = sim.clock.now();
    sim.network.heal();
    await sim.until(() => stateOn(sim!, master, victim) === 'Up' && sim!.node(master).info(victim)!.incarnation !== before, 30_000, 'the new incarnation Up');
    expect(sim.clock.now() - downAt).toBeLessThanOrEqual(sim.node(master).timing.failureTimeoutMs);
  });
});

describe('what packages built on the public API need', () => {
  it("a node elected master after it lost its quorum emits 'quorum' true, as members do on hearing it", async () => {
    sim = simCluster(3, { candidates: [1, 2, 3] });
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const master = sim.node(1).master!;
    const others = [1, 2, 3].filter((n) => n !== master);
    const events = new Map<number, boolean[]>(others.map((n) => [n, []]));
    for (const n of others) sim.node(n).on('quorum', (q) => events.get(n)!.push(q.hasQuorum));
    sim.kill(master);
    await sim.until(() => others.every((n) => sim!.node(n).master !== undefined && sim!.node(n).master !== master), 30_000, 'a new master');
    await sim.until(() => others.every((n) => sim!.node(n).hasQuorum), 10_000, 'quorum everywhere');
    for (const n of others) {
      // Whoever lost it said so, and whoever has it again says so: the last event agrees with hasQuorum.
      const seen = events.get(n)!;
      if (seen.includes(false)) expect(seen.at(-1), `node ${n}: ${JSON.stringify(seen)}`).toBe(true);
    }
    const elected = sim.node(others[0]!).master!;
    expect(events.get(elected)).toContain(false);
  });

  it('a node exposes the clock it runs on (a virtual clock in tests)', () => {
    sim = simCluster(1);
    expect(sim.node(1).clock).toBe(sim.clock);
  });
});

describe('CLMS operations fail with CLMS codes', () => {
  it('start twice, an unknown node, and a change no quorum can commit', async () => {
    sim = simCluster(3, { candidates: [1, 2, 3] });
    await sim.until(() => allUp(sim!, [1, 2, 3]) && sim!.converged([1, 2, 3]), 30_000, 'formation');
    const twice = await sim.node(1).start().catch((e: unknown) => e);
    expect((twice as { code?: string }).code).toBe('CLMS_ERR_ALREADY_STARTED');
    const unknown = await sim.node(1).declareDown(99).catch((e: unknown) => e);
    expect((unknown as { code?: string }).code).toBe('CLMS_ERR_NOT_MEMBER');
    // Two of three gone: the survivor cannot get a change committed.
    const survivor = 3;
    sim.kill(1);
    sim.kill(2);
    let outcome: unknown;
    void sim.node(survivor).setInfo({ zone: 'b' }).then(
      () => (outcome = 'committed'),
      (e: unknown) => (outcome = e),
    );
    await sim.until(() => outcome !== undefined, 120_000, 'setInfo to settle');
    expect((outcome as { code?: string }).code).toBe('CLMS_ERR_NO_QUORUM');
  });
});

describe('two processes with one node number', () => {
  /** A second node 4 at another address, seeded on the candidates; its start() outcome in `out`. */
  function second(s: SimCluster, address: string): { node: ClusterNode; out: { v?: unknown } } {
    const node = new ClusterNode({ nodeNum: 4, clusterName: 'sim', transport: memory({ network: s.network, address }), candidates: [1, 2, 3], seeds: ['node-1', 'node-2', 'node-3'], preset: 'local', clock: s.clock, random: seededRandom(address), logger: silentLogger });
    const out: { v?: unknown } = {};
    void node.start().then(
      () => (out.v = 'started'),
      (e: unknown) => (out.v = e),
    );
    return { node, out };
  }

  async function closeNode(s: SimCluster, node: ClusterNode): Promise<void> {
    let closed = false;
    void node.close().then(() => (closed = true));
    await s.until(() => closed, 10_000, 'the node to close');
  }

  it('a second process is refused with CLMS_ERR_DUPLICATE_NODE while the first answers; the first stays, untouched', async () => {
    sim = simCluster(5, { candidates: [1, 2, 3] });
    await sim.until(() => allUp(sim!, range(5)) && sim!.converged(range(5)), 30_000, 'formation');
    const first = sim.node(4).incarnation;
    const head = sim.node(1).lastTransition;
    const dup = second(sim, 'node-4b');
    try {
      await sim.until(() => dup.out.v !== undefined, 10_000, "the second process's start() to settle");
      expect((dup.out.v as { code?: string }).code).toBe('CLMS_ERR_DUPLICATE_NODE');
      // Long enough for the flapping seen before (an eviction every ≈ 5 s).
      await sim.clock.advance(sim.node(1).timing.failureTimeoutMs * 30);
      for (const n of range(5)) expect(sim.node(n).info(4), `node 4 at node ${n}`).toMatchObject({ state: 'Up', incarnation: first });
      expect(sim.node(1).transitions(head).filter((t) => t.node === 4).map((t) => `${t.to} (${t.cause})`)).toEqual([]);
      const master = sim.node(1).master!;
      expect(sim.node(master).decisionRecords().some((r) => r.kind === 'refused-join' && r.node === 4 && r.rule.includes('in use'))).toBe(true);
    } finally {
      await closeNode(sim, dup.node);
    }
  });

  it('a restart at another address is admitted at once when the old process is gone without a word (no link loss seen)', async () => {
    sim = simCluster(5, { candidates: [1, 2, 3] });
    await sim.until(() => allUp(sim!, range(5)) && sim!.converged(range(5)), 30_000, 'formation');
    const first = sim.node(4).incarnation;
    // Its machine dropped off the network: no link closes, the history still says Up.
    sim.network.isolate('node-4');
    const startedAt = sim.clock.now();
    const again = second(sim, 'node-4b');
    try {
      await sim.until(() => again.out.v !== undefined, 10_000, 'start() to settle');
      expect(again.out.v).toBe('started');
      await sim.until(() => [1, 2, 3, 5].every((n) => sim!.node(n).info(4)?.state === 'Up' && sim!.node(n).info(4)?.incarnation === again.node.incarnation), 10_000, 'the new node 4 Up');
      expect(again.node.incarnation).not.toBe(first);
      // At once: the old one is asked (one RPC timeout) and taken out as replaced, not when its silence is judged.
      const timing = sim.node(1).timing;
      expect(sim.clock.now() - startedAt).toBeLessThanOrEqual(timing.failureTimeoutMs + timing.rpcTimeoutMs);
      const out = sim.node(1).transitions().filter((t) => t.node === 4 && t.incarnation === first && t.to === 'GoingDown');
      expect(out.map((t) => t.cause)).toEqual(['restarted as a new incarnation']);
      const master = sim.node(1).master!;
      expect(sim.node(master).decisionRecords().some((r) => r.kind === 'refused-join')).toBe(false);
    } finally {
      await closeNode(sim, again.node);
    }
  });
});

describe('the master killed', () => {
  for (const size of [3, 16]) {
    it(`${size} nodes, lan: its GoingDown is committed everywhere within an election stagger of its links dying, as "link lost"`, async () => {
      sim = simCluster(size, { candidates: [1, 2, 3], extra: () => ({ preset: 'lan' }) });
      await sim.until(() => allUp(sim!, range(size)) && sim!.converged(range(size)), 60_000, 'formation');
      // The first candidate is master: the next one must not wait its place in the line for it.
      const master = sim.node(1).master!;
      expect(master).toBe(1);
      const incarnation = sim.node(master).incarnation;
      const survivors = range(size).filter((n) => n !== master);
      const killedAt = sim.clock.now();
      sim.kill(master);
      const gone = (n: number): boolean => sim!.node(n).transitions().some((t) => t.node === master && t.incarnation === incarnation && t.to === 'GoingDown');
      await sim.until(() => survivors.every(gone), 10_000, "the old master's GoingDown everywhere");
      const timing = sim.node(survivors[0]!).timing;
      // Before: the next candidate stood only after its stagger (150 ms with lan), ≈ 214 ms in all.
      expect(sim.clock.now() - killedAt).toBeLessThan(timing.electionStaggerMs);
      const records = survivors.flatMap((n) => sim!.node(n).decisionRecords()).filter((r) => r.kind === 'down' && r.node === master);
      expect(records.map((r) => r.rule)).toEqual(['link lost']);
    });
  }
});

describe('two processes with one node number, over TCP on 127.0.0.1', () => {
  it('the second (another port) is refused with CLMS_ERR_DUPLICATE_NODE; the first stays a member, same incarnation', async () => {
    const secret = 'duplicate-number-secret-16+';
    const make = (nodeNum: number, seeds: string[] = []): ClusterNode =>
      new ClusterNode({ nodeNum, clusterName: 'tcp-dup', transport: tcp({ secret }), candidates: [1], seeds, preset: 'lan', logger: silentLogger });
    const one = make(1);
    const nodes = [one];
    try {
      await one.start({ timeoutMs: 20_000 });
      const two = make(2, [one.address!]);
      nodes.push(two);
      await two.start({ timeoutMs: 20_000 });
      await two.whenUp();
      const first = two.incarnation;
      const dup = make(2, [one.address!]);
      nodes.push(dup);
      const err = (await dup.start({ timeoutMs: 20_000 }).catch((e: unknown) => e)) as { code?: string; refusedBy?: number };
      expect(err.code).toBe('CLMS_ERR_DUPLICATE_NODE');
      expect(err.refusedBy).toBe(1);
      // A few failure timeouts: the flapping seen before evicted one of them every ≈ 5 s, the first within a second.
      await new Promise((r) => setTimeout(r, 3 * one.timing.failureTimeoutMs));
      expect(one.info(2)).toMatchObject({ state: 'Up', incarnation: first });
      expect(one.decisionRecords().some((r) => r.kind === 'refused-join' && r.node === 2)).toBe(true);
    } finally {
      for (const n of nodes.reverse()) await n.close();
    }
  }, 60_000);
});
