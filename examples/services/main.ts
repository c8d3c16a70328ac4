/**
 * services: what a Moleculer user does first, on four ClusterInfra nodes
 * (@clusterinfra/services).
 *
 * - Roles: node 1 is a `frontend`, nodes 2–4 are `storage` (member metadata).
 * - Services by name: every node runs the same code, which serves the
 *   icsgen service Inventory (shop.ics) on nodes with the role `storage`
 *   only; node 1 calls it by name, round-robin over nodes 2, 3 and 4.
 * - Events: the storage nodes subscribe to `order.placed` in the group
 *   `billing` (balanced: each order billed once); node 1 subscribes without
 *   a group (a dashboard: every order). Then a broadcast reaches them all.
 * - A storage node stops: its announcements vanish with its incarnation,
 *   and calls and events go to the other two.
 *
 *   npx tsx examples/services/main.ts            # on the in-memory network
 *   npx tsx examples/services/main.ts --tcp      # over TCP on 127.0.0.1
 */
import { pathToFileURL } from 'node:url';
import { ClusterNode } from '@clusterinfra/core';
import { createRegistry, type Registry } from '@clusterinfra/registry';
import { createServices, isServicesError, type Services, withRoles } from '@clusterinfra/services';
import { exampleNetwork, type TransportKind } from '../lib/transports.js';
import { stopwatch, until } from '../lib/wait.js';
import { Inventory, type InventoryImpl } from './shop.gen.js';

export interface ServicesExampleResult {
  /** Which node served each of the six reservations node 1 made by name. */
  servedBy: number[];
  /** Orders billed per storage node (balanced, group `billing`), and what the dashboard on node 1 saw. */
  billed: Record<number, number[]>;
  dashboard: number[];
  /** Nodes the broadcast reached. */
  broadcastTo: number[];
  /** The crashed node, and the nodes serving Inventory afterwards. */
  crashed: number;
  providersAfter: number[];
  /** Which nodes served the reservations made after the crash. */
  servedAfter: number[];
  /** The code of a call to a name nobody serves. */
  noProviderCode: string;
}

const ROLES: Record<number, string[]> = { 1: ['frontend'], 2: ['storage'], 3: ['storage'], 4: ['storage'] };

/** What every node runs: the same code, whatever its roles. */
async function app(n: number, services: Services, billed: Record<number, number[]>, dashboard: number[]): Promise<void> {
  let count = 0;
  const inventory: InventoryImpl = {
    reserve: ({ sku, qty }) => {
      count++;
      return { sku, qty, by: n };
    },
    count: () => count,
  };
  // Served and announced only where the node has the role.
  await services.serve(Inventory, inventory, { roles: ['storage'] });
  if (services.roles.includes('storage')) {
    await services.subscribe('order.placed', (order) => void (billed[n] ??= []).push(order as number), { group: 'billing' });
  } else {
    await services.subscribe('order.placed', (order) => void dashboard.push(order as number));
  }
}

export async function main(transport: TransportKind = 'memory', print: (line: string) => void = (l) => console.log(l)): Promise<ServicesExampleResult> {
  const net = await exampleNetwork(transport, 4);
  const time = stopwatch();
  const say = (line: string): void => print(`${time()} ${line}`);
  const nodes = new Map<number, ClusterNode>();
  const layer = new Map<number, Services>();
  const registries: Registry[] = [];
  const billed: Record<number, number[]> = {};
  const dashboard: number[] = [];
  const all = [1, 2, 3, 4];
  for (const n of all) {
    const node = new ClusterNode({
      nodeNum: n,
      clusterName: 'shop',
      transport: net.transport(n),
      candidates: [1, 2, 3],
      seeds: all.filter((m) => m !== n).map((m) => net.address(m)),
      preset: 'local',
      meta: withRoles(ROLES[n]!),
    });
    nodes.set(n, node);
    // Before node.start(): the map where services and subscriptions are announced.
    const registry = createRegistry(node, { name: 'services', subservice: 40, pushTimeoutMs: 1000, checkIntervalMs: 200 });
    registries.push(registry);
    layer.set(n, createServices(node, { registry, subservice: 41, announceIntervalMs: 200 }));
  }
  const svc = (n: number): Services => layer.get(n)!;
  try {
    await Promise.all([...nodes.values()].map((node) => node.start()));
    await Promise.all(all.map((n) => svc(n).start()));
    await Promise.all(all.map((n) => app(n, svc(n), billed, dashboard)));
    say(`storage nodes: ${svc(1).nodesWithRole('storage').join(', ')}; Inventory served by ${svc(1).providers('Inventory').join(', ')}`);

    // By name, typed by the generated descriptor: node 1 does not say which node.
    const inventory = svc(1).client(Inventory);
    const servedBy: number[] = [];
    for (let i = 1; i <= 6; i++) {
      const r = await inventory.reserve({ sku: `sku-${i}`, qty: i });
      servedBy.push(r.by);
    }
    say(`node 1 reserved 6 items by name; served by ${servedBy.join(', ')}`);

    // Balanced events: each order billed by one storage node; the dashboard sees all.
    for (let order = 1; order <= 6; order++) await svc(1).publish('order.placed', order, { delivery: 'balanced' });
    await until(() => Object.values(billed).flat().length === 6 && dashboard.length === 6, 'the orders to be billed');
    say(`billed: ${[2, 3, 4].map((n) => `node ${n} ${JSON.stringify(billed[n] ?? [])}`).join(', ')}; dashboard saw ${dashboard.length}`);
    const broadcast = await svc(2).publish('order.placed', 100);
    await until(() => dashboard.includes(100) && Object.values(billed).flat().filter((o) => o === 100).length === 3, 'the broadcast');
    say(`a broadcast from node 2 reached nodes ${broadcast.nodes.join(', ')}`);

    const crashed = 2;
    say(`stopping node ${crashed} without withdrawing anything: its entries go with its incarnation`);
    await nodes.get(crashed)!.close();
    await until(() => svc(1).providers('Inventory').join() === '3,4', 'node 2 to be withdrawn');
    const providersAfter = svc(1).providers('Inventory');
    const servedAfter: number[] = [];
    for (let i = 0; i < 4; i++) servedAfter.push((await inventory.reserve({ sku: 'after', qty: 1 })).by);
    say(`Inventory now on ${providersAfter.join(', ')}; reservations served by ${servedAfter.join(', ')}`);

    let noProviderCode = '';
    try {
      await svc(1).call('Payments', 'charge', { amount: 5 });
    } catch (err) {
      if (!isServicesError(err)) throw err;
      noProviderCode = err.code;
      say(`calling Payments: ${err.code}`);
    }
    return { servedBy, billed, dashboard: [...dashboard], broadcastTo: [...broadcast.nodes], crashed, providersAfter, servedAfter, noProviderCode };
  } finally {
    // The services layer leaves the map to its owner: close both.
    for (const s of layer.values()) await s.close();
    for (const r of registries) await r.close();
    await Promise.all([...nodes.values()].map((node) => node.close()));
    say('all nodes closed');
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.includes('--tcp') ? 'tcp' : 'memory').catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
