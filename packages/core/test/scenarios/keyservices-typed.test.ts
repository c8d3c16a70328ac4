/**
 * Typed key services (issue 19) on transport-mem under the virtual clock:
 * a descriptor served with `serveKeyService` and called with
 * `keyServiceClient`; arguments checked on arrival (remote and local calls);
 * `failoverData` given pulled and hand-over data apart, each checked against
 * its schema; and a call to a key service nobody announced failing at once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  type ClusterNode,
  defineKeyService,
  InvalidArgumentError,
  keyServiceClient,
  RemoteInternalError,
  serveKeyService,
  type TypedFailoverInput,
  UnknownKeyServiceError,
} from '@clusterinfra/core';
import { type SimCluster, simCluster } from './clms-harness.js';
import { range, readyElsewhere, settle } from './keyservices-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

/** A ledger: the host keeps every balance; each node remembers what it deposited (its pulled data). */
const Ledger = defineKeyService({
  name: 'ledger',
  subservice: 7,
  methods: {
    deposit: { kind: 'rpc', input: z.object({ account: z.string().min(1), amount: z.number().int().positive() }), output: z.number() },
    balance: { kind: 'rpc', input: z.object({ account: z.string() }), output: z.number(), idempotent: true },
    broken: { kind: 'rpc', input: z.object({}), output: z.number() },
  },
  pullData: z.object({ deposited: z.record(z.string(), z.number()) }),
  handover: z.object({ balances: z.record(z.string(), z.number()) }),
});

/**
 * Compile-time checks (npm run typecheck): the types follow the descriptor.
 * Each @ts-expect-error fails the typecheck if the types were loose.
 */
export function typeChecks(node: ClusterNode): void {
  const Bare = defineKeyService({ name: 'bare', subservice: 8, methods: { now: { kind: 'rpc', input: z.object({}), output: z.number() } } });
  // @ts-expect-error Bare declares no pull data: no pullData
  serveKeyService(node, Bare, { handlers: { now: () => 1 }, pullData: () => 1 });
  // @ts-expect-error Ledger declares pull data: pullData is required
  serveKeyService(node, Ledger, { handlers: { deposit: () => 1, balance: () => 1, broken: () => 1 }, handover: () => ({ balances: {} }) });
  serveKeyService(node, Bare, {
    handlers: { now: () => 1 },
    failoverData: ({ handover }) => {
      // Nothing is handed over: the data is null.
      const data: null | undefined = handover?.data;
      void data;
    },
  });
  const ledger = keyServiceClient(node, Ledger);
  // @ts-expect-error amount is a number
  void ledger.deposit({ account: 'a', amount: '1' });
  // @ts-expect-error no such method
  void ledger.withdraw({});
  void ledger.balance({ account: 'a' }).then((n: number) => n);
}

interface Seen {
  node: number;
  epoch: number;
  input: TypedFailoverInput<{ deposited: Record<string, number> }, { balances: Record<string, number> }>;
}

/** Registers the typed ledger on `node`; returns what it deposited (pulled on failover) and what ran. */
function serveLedger(node: ClusterNode, seen: Seen[], ran: string[]): { deposited: Record<string, number> } {
  let balances: Record<string, number> = {};
  const mine = { deposited: {} as Record<string, number> };
  serveKeyService(
    node,
    Ledger,
    {
      handlers: {
        // Arguments arrive parsed: `amount` is a positive integer here, or the handler never runs.
        deposit: ({ account, amount }, ctx) => {
          ran.push(`deposit ${account} ${amount} on ${node.nodeNum} epoch ${ctx.epoch}`);
          balances[account] = (balances[account] ?? 0) + amount;
          return balances[account]!;
        },
        balance: ({ account }) => balances[account] ?? 0,
        // Breaks its own output schema: the caller gets INTERNAL, never the bad value.
        broken: () => 'not a number' as unknown as number,
      },
      failover: () => {
        balances = {};
      },
      pullData: () => mine,
      failoverData: (input, ctx) => {
        seen.push({ node: node.nodeNum, epoch: ctx.epoch, input });
        // The hand-over holds every balance already; pulls count only when there is none (no double counting).
        if (input.handover) {
          balances = { ...input.handover.data.balances };
          return;
        }
        for (const d of input.pulled.values()) for (const [a, v] of Object.entries(d.deposited)) balances[a] = (balances[a] ?? 0) + v;
      },
      handover: () => ({ balances }),
    },
    { critical: true },
  );
  return mine;
}

const allUp = (s: SimCluster, ns: number[]): boolean => ns.every((n) => ns.every((m) => s.node(n).info(m)?.state === 'Up')) && s.converged(ns);

async function ledgerCluster(size: number): Promise<{ seen: Seen[]; ran: string[]; mine: Map<number, { deposited: Record<string, number> }> }> {
  sim = simCluster(size, { candidates: [1] });
  const seen: Seen[] = [];
  const ran: string[] = [];
  const mine = new Map<number, { deposited: Record<string, number> }>();
  for (const n of range(size).filter((x) => x !== 1)) mine.set(n, serveLedger(sim.node(n), seen, ran));
  await sim.until(() => allUp(sim!, range(size)) && readyElsewhere(sim!, range(size), 'ledger'), 30_000, 'placement');
  return { seen, ran, mine };
}

/** A typed deposit that the depositor also remembers (what its pullData reports). */
async function deposit(n: number, mine: Map<number, { deposited: Record<string, number> }>, account: string, amount: number): Promise<number> {
  const balance = await settle(sim!, keyServiceClient(sim!.node(n), Ledger).deposit({ account, amount }));
  const d = mine.get(n)?.deposited;
  if (d) d[account] = (d[account] ?? 0) + amount;
  return balance;
}

describe('typed key services', () => {
  it('a typed client calls the host by name; bad arguments are refused on arrival (remote and local) and the handler never runs', async () => {
    const { ran, mine } = await ledgerCluster(3);
    const host = sim!.node(1).keyService('ledger')!.host!;
    const other = host === 2 ? 3 : 2;
    expect(await deposit(1, mine, 'alice', 5)).toBe(5);
    expect(await deposit(other, mine, 'alice', 2)).toBe(7);
    expect(await settle(sim!, keyServiceClient(sim!.node(host), Ledger).balance({ account: 'alice' }))).toBe(7);
    const before = ran.length;
    for (const caller of [1, host]) {
      const bad = keyServiceClient(sim!.node(caller), Ledger).deposit({ account: 'alice', amount: -3 });
      const err = await settle(sim!, bad).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).code).toBe('ICS_ERR_INVALID_ARGUMENT');
    }
    expect(ran.length).toBe(before);
    // A handler that breaks its own result schema: INTERNAL to the caller.
    const broken = await settle(sim!, keyServiceClient(sim!.node(1), Ledger).broken({})).catch((e: unknown) => e);
    expect(broken).toBeInstanceOf(RemoteInternalError);
    expect(await settle(sim!, keyServiceClient(sim!.node(1), Ledger).balance({ account: 'alice' }))).toBe(7);
  });

  it('failover: failoverData gets every survivor\'s typed pullData and no hand-over', async () => {
    const { seen, mine } = await ledgerCluster(4);
    const host = sim!.node(1).keyService('ledger')!.host!;
    const survivors = range(4).filter((n) => n !== host && n !== 1);
    await deposit(survivors[0]!, mine, 'bob', 10);
    await deposit(survivors[1]!, mine, 'bob', 1);
    await deposit(host, mine, 'bob', 100); // gone with its host
    sim!.kill(host);
    await sim!.until(() => readyElsewhere(sim!, [1, ...survivors], 'ledger', host), 30_000, 'failover');
    const last = seen.at(-1)!;
    expect(last.epoch).toBe(2);
    expect(last.input.handover).toBeUndefined();
    expect([...last.input.pulled.keys()].sort()).toEqual(survivors);
    expect(last.input.rejected.size).toBe(0);
    expect(await settle(sim!, keyServiceClient(sim!.node(1), Ledger).balance({ account: 'bob' }))).toBe(11);
  });

  it('clean leave: the hand-over arrives apart from the pulled data, so summing nothing twice keeps the balance', async () => {
    const { seen, mine } = await ledgerCluster(4);
    const host = sim!.node(1).keyService('ledger')!.host!;
    const others = range(4).filter((n) => n !== host && n !== 1);
    await deposit(others[0]!, mine, 'carol', 4);
    await deposit(others[1]!, mine, 'carol', 6);
    await settle(sim!, sim!.node(host).leave(), 30_000, 'leave');
    await sim!.until(() => readyElsewhere(sim!, [1, ...others], 'ledger', host), 30_000, 'hand-over');
    const last = seen.at(-1)!;
    expect(last.input.handover).toEqual({ from: host, data: { balances: { carol: 10 } } });
    // The leaver is not pulled; the survivors are, and their data is there too, apart.
    expect(last.input.pulled.has(host)).toBe(false);
    expect([...last.input.pulled.keys()].sort()).toEqual(others);
    expect(last.input.pulled.get(others[0]!)).toEqual({ deposited: { carol: 4 } });
    expect(await settle(sim!, keyServiceClient(sim!.node(1), Ledger).balance({ account: 'carol' }))).toBe(10);
  });

  it('pulled data that does not match the schema (a peer on another version) is set apart in rejected, never passed on', async () => {
    sim = simCluster(4, { candidates: [1] });
    const seen: Seen[] = [];
    const ran: string[] = [];
    for (const n of [2, 3]) serveLedger(sim.node(n), seen, ran);
    // Node 4 registers the same key service untyped, and pulls something else.
    sim.node(4).registerKeyService({ name: 'ledger', subservice: 7, pullData: () => ({ deposited: 'everything' }) });
    await sim.until(() => allUp(sim!, range(4)) && readyElsewhere(sim!, range(4), 'ledger'), 30_000, 'placement');
    const host = sim.node(1).keyService('ledger')!.host!;
    expect([2, 3]).toContain(host);
    sim.kill(host);
    const next = host === 2 ? 3 : 2;
    await sim.until(() => readyElsewhere(sim!, [1, next, 4], 'ledger', host), 30_000, 'failover');
    const last = seen.at(-1)!;
    expect(last.node).toBe(next);
    expect([...last.input.pulled.keys()]).toEqual([next]);
    expect(last.input.rejected.get(4)).toMatch(/^pulled data: deposited: /);
  });

  it('a call to a key service nobody announced fails at once with CLMS_ERR_KEYSERVICE_UNKNOWN, not at its deadline', async () => {
    const { mine } = await ledgerCluster(3);
    const at = sim!.clock.now();
    const raw = await sim!.node(1).callKeyService('ledgr', 'balance', { account: 'x' }, { timeoutMs: 60_000 }).catch((e: unknown) => e);
    expect(raw).toBeInstanceOf(UnknownKeyServiceError);
    expect((raw as UnknownKeyServiceError).code).toBe('CLMS_ERR_KEYSERVICE_UNKNOWN');
    expect((raw as UnknownKeyServiceError).keyService).toBe('ledgr');
    const typo = keyServiceClient(sim!.node(2), { ...Ledger, name: 'Ledger' });
    await expect(typo.balance({ account: 'x' })).rejects.toMatchObject({ code: 'CLMS_ERR_KEYSERVICE_UNKNOWN' });
    // No virtual time passed: nothing waited.
    expect(sim!.clock.now()).toBe(at);
    // A known one still works from the same nodes.
    expect(await deposit(1, mine, 'dave', 1)).toBe(1);
  });

  it('a node that has not joined yet cannot tell a name is unknown: its call waits for the cluster, then reaches the host', async () => {
    sim = simCluster(3, { candidates: [1] });
    const seen: Seen[] = [];
    for (const n of [2, 3]) serveLedger(sim.node(n), seen, []);
    // Node 1 knows no member yet (it registers nothing and has no history): the call must wait, not fail.
    expect(sim.node(1).info(1)).toBeUndefined();
    const early = keyServiceClient(sim.node(1), Ledger).balance({ account: 'erin' }, { timeoutMs: 20_000 });
    expect(await settle(sim, early)).toBe(0);
  });
});
