/**
 * A rolling rotation of the cluster secret on a running three-node cluster
 * (ClusterNodes over TCP on 127.0.0.1) while RPC traffic flows, in the order
 * docs/operations.md gives: add the new key on every node, make it primary
 * on every node, remove the old key from every node. After each single
 * node's change, every node's keyring must still connect to every other
 * node (probe connections prove with that node's primary against the other
 * node's real listener), no call may fail and nobody may be declared down.
 */
import { ClusterNode, type TransportFactory, client, defineService, serve } from '@clusterinfra/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { HandshakeRejectedError, type Transport } from '@clusterinfra/core';
import { TcpKeyring, type TcpSecret, tcp } from '../src/index.js';
import { makeTransport, unusedAddress } from './helpers.js';

const OLD = 'the old cluster secret, 32 bytes';
const NEW = 'the new cluster secret, 32 bytes';

const Echo = defineService({
  name: 'rotation.Echo',
  subservice: 1,
  methods: { echo: { kind: 'rpc', input: z.object({ n: z.number() }), output: z.object({ n: z.number(), by: z.number() }) } },
});

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('key rotation', () => {
  it('rotates the secret of a running 3-node cluster with traffic: no failed call, no nodedown', async () => {
    const addresses = await Promise.all([1, 2, 3].map(() => unusedAddress()));
    const port = (n: number) => Number(addresses[n - 1]!.split(':')[1]);
    const rings = new Map([1, 2, 3].map((n) => [n, new TcpKeyring(OLD)]));
    const nodeOf = (n: number, ring: TcpKeyring): ClusterNode =>
      new ClusterNode({
        nodeNum: n,
        clusterName: 'rotation',
        transport: tcp({ host: '127.0.0.1', port: port(n), secret: ring }) satisfies TransportFactory,
        candidates: [1, 2, 3],
        seeds: addresses,
        preset: 'local',
      });
    const nodes = new Map([1, 2, 3].map((n) => [n, nodeOf(n, rings.get(n)!)]));
    cleanups.push(() => Promise.all([...nodes.values()].map((x) => x.close())));
    let nodedowns = 0;
    await Promise.all([...nodes.values()].map((x) => x.start()));
    for (const [n, node] of nodes) {
      node.on('nodedown', () => nodedowns++);
      serve(node.communication, Echo, { echo: ({ n: i }) => ({ n: i, by: n }) });
    }
    const allUp = (expected: number[]) =>
      vi.waitFor(
        () => {
          for (const node of nodes.values())
            expect(node.membership().members.filter((m) => m.state === 'Up').map((m) => m.node).sort()).toEqual(expected);
        },
        { timeout: 30_000, interval: 50 },
      );
    await allUp([1, 2, 3]);

    // Traffic: every node calls every other node, over and over, until the rotation is done.
    let calls = 0;
    const failures: unknown[] = [];
    let running = true;
    const traffic = [...nodes].map(async ([from, node]) => {
      for (let i = 0; running; i++) {
        for (const to of [1, 2, 3].filter((x) => x !== from)) {
          try {
            const r = await client(node.communication, Echo, to).echo({ n: i });
            if (r.n !== i || r.by !== to) failures.push(new Error(`wrong answer ${JSON.stringify(r)}`));
            calls++;
          } catch (err) {
            failures.push(err);
          }
        }
      }
    });

    /** Connect as node i would (its ring, its primary) to node j's listener, for every i ≠ j. */
    const probe = async (step: string): Promise<void> => {
      for (const i of [1, 2, 3])
        for (const j of [1, 2, 3].filter((x) => x !== i)) {
          const t = makeTransport(100 + i, { secret: rings.get(i)! }, 'rotation');
          try {
            const link = await t.connect(addresses[j - 1]!);
            expect(link.remote.nodeNum, `${step}: ${i} → ${j}`).toBe(j);
          } catch (err) {
            throw new Error(`${step}: node ${i}'s keyring was refused by node ${j}: ${String(err)}`);
          } finally {
            await t.close();
          }
        }
      const before = calls;
      await vi.waitFor(() => expect(calls).toBeGreaterThan(before + 6), { timeout: 10_000, interval: 10 });
    };

    await probe('start');
    for (const n of [1, 2, 3]) {
      rings.get(n)!.add(NEW);
      await probe(`add new key on node ${n}`);
    }
    for (const n of [1, 2, 3]) {
      rings.get(n)!.use(NEW);
      await probe(`use new key on node ${n}`);
    }
    for (const n of [1, 2, 3]) {
      rings.get(n)!.remove(OLD);
      await probe(`remove old key on node ${n}`);
    }
    running = false;
    await Promise.all(traffic);

    expect(failures).toEqual([]);
    expect(calls).toBeGreaterThan(100);
    expect(nodedowns).toBe(0);
    for (const ring of rings.values()) expect(ring.size === 1 && ring.isPrimary(NEW) && !ring.has(OLD)).toBe(true);

    // The old key is now refused everywhere; the new one alone is enough to join.
    for (const [j, secret, ok] of [[1, OLD, false], [2, OLD, false], [3, NEW, true]] as Array<[number, TcpSecret, boolean]>) {
      const t: Transport = makeTransport(200 + j, { secret }, 'rotation');
      cleanups.push(() => t.close());
      const err = await t.connect(addresses[j - 1]!).then(() => undefined, (e: unknown) => e);
      if (ok) expect(err).toBeUndefined();
      else expect((err as HandshakeRejectedError).reason).toBe('auth');
    }
    // Node 3 restarts with nothing but the new key and rejoins the rotated cluster.
    await nodes.get(3)!.close();
    const fresh = nodeOf(3, new TcpKeyring(NEW));
    nodes.set(3, fresh);
    await fresh.start();
    await allUp([1, 2, 3]);
  }, 90_000);
});
