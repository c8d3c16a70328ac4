/**
 * First contact (issue 16, items 8, 10–13): what a new user meets when the
 * configuration is wrong or the cluster is still forming. Memory network,
 * virtual clock: every test is deterministic.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  ClusterNode,
  type ClusterNodeOptions,
  type JoinProgress,
  type Logger,
  NotJoinedError,
  seededRandom,
  silentLogger,
  VirtualClock,
} from '@clusterinfra/core';
import { createMemoryNetwork, memory, type MemoryNetwork } from '@clusterinfra/transport-mem';

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
