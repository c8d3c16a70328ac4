/**
 * First contact (issue 16, items 8, 10–13): what a new user meets when the
 * configuration is wrong or the cluster is still forming. Memory network,
 * virtual clock: every test is deterministic.
 */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  client,
  ClusterNode,
  defineService,
  Ics,
  type ClusterNodeOptions,
  type JoinProgress,
  type Logger,
  NotJoinedError,
  seededRandom,
  silentLogger,
  VirtualClock,
} from '@clusterinfra/core';
import { createMemoryNetwork, memory, type MemoryNetwork } from '@clusterinfra/transport-mem';
import { tcp } from '@clusterinfra/transport-tcp';

/** A logger that keeps what it was asked to warn. */
function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  const log: Logger & { warnings: string[] } = {
    warnings,
    fatal: () => {},
    error: () => {},
    info: () => {},
    debug: () => {},
    trace: () => {},
    warn: (first: unknown, msg?: unknown) => void warnings.push(typeof first === 'string' ? first : String(msg)),
    child: () => log,
  };
  return log;
}

interface World {
  clock: VirtualClock;
  network: MemoryNetwork;
  nodes: ClusterNode[];
  make(n: number, extra?: Partial<ClusterNodeOptions> & { secret?: string }): ClusterNode;
}

let world: World | undefined;
afterEach(async () => {
  if (!world) return;
  const w = world;
  world = undefined;
  let done = false;
  const closing = Promise.all(w.nodes.map((n) => n.close())).then(() => (done = true));
  await w.clock.advanceUntil(() => done, 60_000);
  await closing;
});

function newWorld(candidates: number[]): World {
  const clock = new VirtualClock();
  const network = createMemoryNetwork({ seed: 1, clock });
  const nodes: ClusterNode[] = [];
  const w: World = {
    clock,
    network,
    nodes,
    make: (n, { secret, ...extra } = {}) => {
      const node = new ClusterNode({
        nodeNum: n,
        clusterName: 'first',
        transport: memory({ network, address: `node-${n}`, ...(secret ? { secret } : {}) }),
        candidates,
        seeds: [1, 2, 3].filter((x) => x !== n).map((x) => `node-${x}`),
        preset: 'local',
        clock,
        random: seededRandom(`first/${n}`),
        logger: silentLogger,
        ...extra,
      });
      nodes.push(node);
      return node;
    },
  };
  world = w;
  return w;
}

describe('joining progress (item 8)', () => {
  it('a wrong secret: a joining event and a warning name the refused handshake; start({ timeoutMs }) rejects with the reasons', async () => {
    const w = newWorld([1]);
    const founder = w.make(1, { secret: 'right' });
    void founder.start();
    await w.clock.advanceUntil(() => founder.info(1)?.state === 'Up', 10_000);
    const log = recordingLogger();
    const stray = w.make(2, { secret: 'wrong', logger: log });
    const events: JoinProgress[] = [];
    stray.on('joining', (p) => events.push(p));
    let outcome: unknown;
    void stray.start({ timeoutMs: 5000 }).then(
      () => (outcome = 'joined'),
      (err: unknown) => (outcome = err),
    );
    await w.clock.advanceUntil(() => outcome !== undefined, 10_000);
    const refused = 'handshake with node-1 rejected: auth (check the secret)';
    expect(events.at(-1)?.reasons).toContain(refused);
    expect(outcome).toBeInstanceOf(NotJoinedError);
    const err = outcome as NotJoinedError;
    expect(err.code).toBe('CLMS_ERR_NOT_JOINED');
    expect(err.reasons).toContain(refused);
    expect(err.message).toContain('did not join within 5000 ms');
    // Warned, at a bounded rate: the first after 2 s, then at most one per 10 s.
    expect(log.warnings.some((l) => l.includes(refused))).toBe(true);
    expect(log.warnings.filter((l) => l.startsWith('not joined yet')).length).toBe(1);
    // The node gave up: closed, so whenUp() says so.
    await expect(stray.whenUp()).rejects.toMatchObject({ code: 'CLMS_ERR_CLOSED' });
    // The healthy side keeps the refusal for `cluster status`.
    const seen = founder.refusedHandshakes();
    expect(seen).toEqual([expect.objectContaining({ direction: 'inbound', node: 2, reason: 'auth' })]);
    expect(seen[0]!.count).toBeGreaterThan(1);
    expect(seen[0]!.text).toContain('check the secret');
  });

  it('only one of three candidates started: it says which candidates it waits for, and that no seed answers', async () => {
    const w = newWorld([1, 2, 3]);
    const log = recordingLogger();
    const lonely = w.make(1, { logger: log });
    const events: JoinProgress[] = [];
    lonely.on('joining', (p) => events.push(p));
    void lonely.start();
    await w.clock.advance(60_000);
    const last = events.at(-1)!;
    expect(last.reasons).toContain('no seed answers');
    expect(last.reasons).toContain('waiting for candidates 2, 3 (formation: all-candidates)');
    expect(last.reasons.some((r) => r === 'nothing answers at node-2 (connection refused)')).toBe(true);
    expect(lonely.joiningReasons()).toEqual(last.reasons);
    // Events only when the reasons change, not every round.
    expect(events.length).toBeLessThan(10);
    // 60 s of joining: a handful of warnings, not one per round.
    const warned = log.warnings.filter((l) => l.startsWith('not joined yet'));
    expect(warned.length).toBeGreaterThanOrEqual(1);
    expect(warned.length).toBeLessThanOrEqual(6);
    // The others arrive: the cluster forms and the reasons are gone.
    const others = [w.make(2), w.make(3)];
    for (const o of others) void o.start();
    await w.clock.advanceUntil(() => [lonely, ...others].every((n) => n.info(n.nodeNum)?.state === 'Up'), 30_000);
    expect(lonely.joiningReasons()).toEqual([]);
  });

  it('start({ signal }) gives up when the signal aborts, with the cause and the reasons', async () => {
    const w = newWorld([1, 2]);
    const node = w.make(1);
    const ac = new AbortController();
    let outcome: unknown;
    void node.start({ signal: ac.signal }).catch((err: unknown) => (outcome = err));
    await w.clock.advance(3000);
    ac.abort(new Error('operator gave up'));
    await w.clock.advanceUntil(() => outcome !== undefined, 5000);
    expect(outcome).toBeInstanceOf(NotJoinedError);
    expect((outcome as NotJoinedError).reasons).toContain('waiting for candidates 2 (formation: all-candidates)');
    expect(((outcome as NotJoinedError).cause as Error).message).toBe('operator gave up');
  });

  it('start() refuses a negative timeout by validation', async () => {
    const w = newWorld([1]);
    await expect(w.make(1).start({ timeoutMs: -1 })).rejects.toMatchObject({ code: 'CONFIG_ERR_INVALID_OPTION', path: 'timeoutMs' });
  });
});

const isUp = (n: ClusterNode): boolean => n.info(n.nodeNum)?.state === 'Up' && n.info(n.nodeNum)?.incarnation === n.incarnation;

describe('whenUp (item 10)', () => {
  it('start() may resolve before the node is Up; whenUp() resolves when it is, at once when it already is', async () => {
    const w = newWorld([1, 2, 3]);
    const nodes = [1, 2, 3].map((n) => w.make(n));
    const upAtStart: boolean[] = [];
    const upAtWhenUp: boolean[] = [];
    for (const n of nodes) {
      void n.whenUp().then((x) => void upAtWhenUp.push(isUp(x)));
      void n.start().then((x) => void upAtStart.push(isUp(x)));
    }
    await w.clock.advanceUntil(() => upAtWhenUp.length === 3, 30_000);
    expect(upAtStart).toHaveLength(3);
    // The founder (at least) is a member, not Up, when its start() resolves.
    expect(upAtStart).toContain(false);
    expect(upAtWhenUp).toEqual([true, true, true]);
    await expect(nodes[0]!.whenUp()).resolves.toBe(nodes[0]);
  });

  it('rejects with CLMS_ERR_CLOSED when the node closes first, and with the abort when the signal aborts', async () => {
    const w = newWorld([1, 2]);
    const node = w.make(1);
    void node.start().catch(() => {});
    const ac = new AbortController();
    const aborted = node.whenUp({ signal: ac.signal }).catch((e: unknown) => e);
    const closed = node.whenUp().catch((e: unknown) => e);
    await w.clock.advance(1000);
    ac.abort(new Error('enough'));
    expect(await aborted).toMatchObject({ code: 'CORE_ERR_ABORTED' });
    void node.close();
    await w.clock.advance(100);
    expect(await closed).toMatchObject({ code: 'CLMS_ERR_CLOSED' });
  });
});

describe('late joiner events (item 11)', () => {
  it('every node gets one nodeup event per member Up, agreeing with its nodeup callbacks; a joiner marks the history it receives as replayed', async () => {
    const w = newWorld([1, 2, 3]);
    const events = new Map<number, number[]>();
    const callbacks = new Map<number, number[]>();
    const transitions = new Map<number, { number: number; replayed: boolean }[]>();
    const boot = (n: number): ClusterNode => {
      const node = w.make(n, { seeds: [1, 2, 3, 4].filter((x) => x !== n).map((x) => `node-${x}`) });
      events.set(n, []);
      callbacks.set(n, []);
      transitions.set(n, []);
      node.on('nodeup', (m) => void events.get(n)!.push(m.node));
      node.on('transition', (t) => void transitions.get(n)!.push({ number: t.number, replayed: t.replayed === true }));
      node.registerSubsystem({ name: 'app', nodeup: (e) => void callbacks.get(n)!.push(e.node) });
      void node.start();
      return node;
    };
    const founders = [1, 2, 3].map(boot);
    await w.clock.advanceUntil(() => founders.every((a) => founders.every((b) => a.info(b.nodeNum)?.state === 'Up')), 30_000);
    const late = boot(4);
    const all = [...founders, late];
    await w.clock.advanceUntil(() => all.every((a) => all.every((b) => a.info(b.nodeNum)?.state === 'Up')), 30_000);
    for (const n of all) {
      const others = [1, 2, 3, 4].filter((x) => x !== n.nodeNum);
      // One event per member (itself included), and callbacks for every other member: the same nodes.
      expect([...events.get(n.nodeNum)!].sort(), `nodeup events on node ${n.nodeNum}`).toEqual([1, 2, 3, 4]);
      expect([...callbacks.get(n.nodeNum)!].sort(), `nodeup callbacks on node ${n.nodeNum}`).toEqual(others);
    }
    // The late joiner: what was committed before its ComingUp is replayed; its own join onwards is live.
    const joinedAt = late.transitions().find((t) => t.node === 4 && t.to === 'ComingUp')!.number;
    const seen = transitions.get(4)!;
    expect(seen.map((t) => t.number)).toEqual(Array.from({ length: late.lastTransition }, (_, i) => i + 1));
    for (const t of seen) expect(t.replayed, `transition ${t.number}`).toBe(t.number < joinedAt);
    // Everyone gets what follows its own ComingUp live; the history itself never carries the mark.
    for (const n of all) {
      const own = n.transitions().find((t) => t.node === n.nodeNum && t.to === 'ComingUp')!.number;
      expect(transitions.get(n.nodeNum)!.filter((t) => t.number >= own && t.replayed)).toEqual([]);
    }
    expect(late.transitions().some((t) => 'replayed' in t)).toBe(false);
  });

  it('watch({ since }) marks what it replays from the kept history', async () => {
    const w = newWorld([1]);
    const node = w.make(1);
    void node.start();
    await w.clock.advanceUntil(() => isUp(node), 10_000);
    const ac = new AbortController();
    const got: { number: number; replayed: boolean }[] = [];
    const reading = (async () => {
      for await (const e of node.watch({ since: 1, signal: ac.signal })) {
        if (e.type === 'transition') got.push({ number: e.transition.number, replayed: e.transition.replayed === true });
        if (got.length === node.lastTransition + 1) ac.abort();
      }
    })();
    await w.clock.advance(10);
    const head = node.lastTransition;
    await node.setInfo({ role: 'web' }).catch(() => {});
    await w.clock.advanceUntil(() => got.length === head + 1, 5000);
    ac.abort();
    await reading;
    expect(got.slice(0, head).every((t) => t.replayed)).toBe(true);
    expect(got[head]).toEqual({ number: head + 1, replayed: false });
  });
});

describe('communication across incarnations (item 12)', () => {
  it('a cached node.communication, a typed client made once and listeners added through it keep working after an automatic rejoin', async () => {
    const w = newWorld([1, 2, 3]);
    const nodes = [1, 2, 3].map((n) => w.make(n));
    for (const n of nodes) void n.start();
    await w.clock.advanceUntil(() => nodes.every((a) => nodes.every((b) => a.info(b.nodeNum)?.state === 'Up')), 30_000);
    const master = nodes.find((n) => n.isMaster)!;
    const victim = nodes.find((n) => !n.isMaster)!;
    const Who = defineService({ name: 'who', subservice: 77, methods: { who: { kind: 'rpc', input: z.null(), output: z.number() } } });
    for (const n of nodes) n.communication.registerService({ channel: 'default', subservice: 77, name: 'who', handlers: { who: () => n.incarnation } });
    // Kept once, as an application would.
    const comm = victim.communication;
    const who = client(comm, Who, master.nodeNum);
    // Which incarnation of the victim each link event came to.
    const links: number[] = [];
    const onLink = (): void => void links.push(victim.incarnation);
    comm.on('link', onLink);
    const raw = victim.currentCommunication;
    const before = victim.incarnation;
    let rejoined = false;
    void master.declareDown(victim.nodeNum, 'testing a rejoin');
    await w.clock.advanceUntil(() => {
      rejoined = victim.incarnation !== before && isUp(victim) && master.info(victim.nodeNum)?.state === 'Up';
      return rejoined;
    }, 30_000);
    expect(rejoined).toBe(true);
    // The former endpoint is closed; the handle follows the new one.
    expect(raw).not.toBe(victim.currentCommunication);
    await expect(raw.call(master.nodeNum, { channel: 'default', subservice: 77 }, 'who', null)).rejects.toMatchObject({ code: 'ICS_ERR_CLOSED' });
    expect(comm).toBe(victim.communication);
    expect(comm).toBeInstanceOf(Ics);
    expect(comm.incarnation).toBe(victim.incarnation);
    let answer: unknown;
    void who.who(null, { timeoutMs: 2000 }).then(
      (v) => (answer = v),
      (e: unknown) => (answer = e),
    );
    await w.clock.advanceUntil(() => answer !== undefined, 5000);
    expect(answer).toBe(master.incarnation);
    // The service registered through the handle was carried over: the master reaches the new incarnation.
    let back: unknown;
    void master.communication.call(victim.nodeNum, { channel: 'default', subservice: 77 }, 'who', null, { timeoutMs: 2000 }).then(
      (v) => (back = v),
      (e: unknown) => (back = e),
    );
    await w.clock.advanceUntil(() => back !== undefined, 5000);
    expect(back).toBe(victim.incarnation);
    // The listener added through the handle hears the new endpoint's links too, until taken off.
    expect(links).toContain(before);
    expect(links).toContain(victim.incarnation);
    const attached = victim.currentCommunication.listenerCount('link');
    comm.off('link', onLink);
    expect(victim.currentCommunication.listenerCount('link')).toBe(attached - 1);
  });
});

describe('small things (item 13)', () => {
  async function formed(w: World, ns: number[]): Promise<ClusterNode[]> {
    const nodes = ns.map((n) => w.make(n));
    for (const n of nodes) void n.start();
    await w.clock.advanceUntil(() => nodes.every((a) => nodes.every((b) => a.info(b.nodeNum)?.state === 'Up')), 30_000);
    return nodes;
  }

  it('a quorum-lost record says whom the master heard: "heard no voter but itself", not "heard 1 of voters"', async () => {
    const w = newWorld([1, 2, 3]);
    const nodes = await formed(w, [1, 2, 3]);
    const master = nodes.find((n) => n.isMaster)!;
    for (const n of nodes) if (n !== master) w.network.crash(`node-${n.nodeNum}`);
    await w.clock.advanceUntil(() => master.decisionRecords().some((r) => r.kind === 'quorum-lost'), 30_000);
    const rule = master.decisionRecords().find((r) => r.kind === 'quorum-lost')!.rule;
    expect(rule).toContain(`node ${master.nodeNum} heard no voter but itself, of voters 1, 2, 3`);
  });

  it("a killed master's down record says 'link lost' (its links broke), not a heartbeat timeout", async () => {
    const w = newWorld([1, 2, 3]);
    const nodes = await formed(w, [1, 2, 3]);
    const old = nodes.find((n) => n.isMaster)!;
    const survivors = nodes.filter((n) => n !== old);
    w.network.crash(`node-${old.nodeNum}`);
    void old.close();
    await w.clock.advanceUntil(() => survivors.some((n) => n.isMaster && n.decisionRecords().some((r) => r.kind === 'down' && r.node === old.nodeNum)), 30_000);
    const record = survivors.find((n) => n.isMaster)!.decisionRecords().find((r) => r.kind === 'down' && r.node === old.nodeNum)!;
    expect(record.rule).toBe('link lost');
  });

  it('registerKeyService after start() gives a CLMS code, not a wire status', async () => {
    const w = newWorld([1]);
    const [node] = await formed(w, [1]);
    expect(() => node!.registerKeyService({ name: 'late', subservice: 5, handlers: {} })).toThrow(expect.objectContaining({ code: 'CLMS_ERR_INVALID_STATE' }));
  });

  it('a negative call timeout and subservice -1 are refused before anything is sent', async () => {
    const w = newWorld([1, 2, 3]);
    const [a, b] = await formed(w, [1, 2, 3]);
    b!.communication.registerService({ channel: 'default', subservice: 5, name: 'echo', handlers: { echo: (x) => x } });
    await expect(a!.communication.call(b!.nodeNum, { channel: 'default', subservice: 5 }, 'echo', 1, { timeoutMs: -1 })).rejects.toMatchObject({ code: 'ICS_ERR_INVALID_ARGUMENT' });
    await expect(a!.communication.call(b!.nodeNum, { channel: 'default', subservice: -1 }, 'echo', 1)).rejects.toMatchObject({ code: 'ICS_ERR_INVALID_ARGUMENT' });
    await expect(a!.communication.send(b!.nodeNum, { channel: 'default', subservice: 70_000 }, 'echo', 1)).rejects.toMatchObject({ code: 'ICS_ERR_INVALID_ARGUMENT' });
    await expect(a!.callKeyService('any', 'get', null, { timeoutMs: -5 })).rejects.toMatchObject({ code: 'ICS_ERR_INVALID_ARGUMENT' });
  });

  it("a seed the transport cannot dial ('localhost' without a port) and a wildcard tcp host are refused by validation, with the option's path", () => {
    const base = { nodeNum: 1, clusterName: 'c', candidates: [1] };
    expect(() => new ClusterNode({ ...base, transport: tcp(), seeds: ['127.0.0.1:7201', 'localhost'] })).toThrow(expect.objectContaining({ code: 'CONFIG_ERR_INVALID_OPTION', path: 'seeds.1' }));
    expect(() => new ClusterNode({ ...base, transport: tcp(), seeds: ['127.0.0.1:7201', '[::1]:7202', 'db.local:7203'] })).not.toThrow();
    expect(() => tcp({ host: '0.0.0.0' })).toThrow(expect.objectContaining({ code: 'CONFIG_ERR_INVALID_OPTION', path: 'host' }));
    expect(() => tcp({ host: '::' })).toThrow(expect.objectContaining({ path: 'host' }));
    expect(() => tcp({ host: '10.0.0.5' })).not.toThrow();
  });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('over TCP on 127.0.0.1 (item 8)', () => {
  it('a wrong secret: the joiner names the refused handshake, the healthy node keeps it; a node listing its own address as a seed does not report itself', async () => {
    const healthy = new ClusterNode({ nodeNum: 1, clusterName: 'tcp-first', transport: tcp({ secret: 'the-right-secret-16+' }), candidates: [1], preset: 'local', logger: silentLogger });
    const stray = () =>
      new ClusterNode({ nodeNum: 2, clusterName: 'tcp-first', transport: tcp({ secret: 'a-wrong-secret-of-16+' }), candidates: [1], seeds: [healthy.address!], preset: 'local', logger: silentLogger });
    try {
      await healthy.start({ timeoutMs: 20_000 });
      await healthy.whenUp();
      const events: JoinProgress[] = [];
      const node = stray();
      node.on('joining', (p) => events.push(p));
      const err = (await node.start({ timeoutMs: 1500 }).catch((e: unknown) => e)) as NotJoinedError;
      const expected = `handshake with ${healthy.address} rejected: auth (check the secret)`;
      expect(err.code).toBe('CLMS_ERR_NOT_JOINED');
      expect(err.reasons).toContain(expected);
      expect(events.at(-1)?.reasons).toContain(expected);
      expect(healthy.refusedHandshakes()).toEqual([expect.objectContaining({ direction: 'inbound', node: 2, reason: 'auth' })]);
      // Its own address among its seeds (as in the README): no `identity` refusal of itself.
      const port = await freePort();
      const self = new ClusterNode({ nodeNum: 3, clusterName: 'tcp-first', transport: tcp({ secret: 'the-right-secret-16+', port }), candidates: [3, 4], seeds: [`127.0.0.1:${port}`], preset: 'local', logger: silentLogger });
      const reasons = (await self.start({ timeoutMs: 1000 }).catch((e: unknown) => e)) as NotJoinedError;
      expect(reasons.reasons).toContain('waiting for candidates 4 (formation: all-candidates)');
      expect(reasons.reasons.join('\n')).not.toContain('identity');
      expect(self.refusedHandshakes()).toEqual([]);
    } finally {
      await healthy.close();
    }
  }, 30_000);
});
