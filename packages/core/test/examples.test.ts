/**
 * The examples run as a user runs them (their `main`), on transport-mem
 * with fast real timers where they can, and assert what each one says it
 * shows. tcp-cluster-cli needs OS processes over TCP: it runs with --check.
 */
import { expect, it } from 'vitest';
import { main } from '../../../examples/hello-cluster.js';
import { main as helloRpc } from '../../../examples/hello-rpc/main.js';
import { main as keyServiceFailover } from '../../../examples/key-service-failover.js';
import { main as ledger } from '../../../examples/ledger/main.js';
import { main as singleNode } from '../../../examples/single-node.js';
import { main as largeCluster } from '../../../examples/large-cluster.js';
import { main as membershipWatch } from '../../../examples/membership-watch.js';
import { main as registryExample } from '../../../examples/registry.js';
import { main as runLevelsExample } from '../../../examples/runlevels.js';
import { main as subsystem } from '../../../examples/subsystem.js';
import { main as tcpClusterCli } from '../../../examples/tcp-cluster-cli.js';

const quiet = (): void => {};
const consecutive = (ns: number[]): boolean => ns.every((n, i) => i === 0 || n === ns[i - 1]! + 1);

it('the hello-cluster example (npm run example:hello) runs on transport-mem', async () => {
  const lines: string[] = [];
  const r = await main({ transport: 'memory', print: (l) => lines.push(l) });
  expect(r.greetings).toEqual(['hello world', 'hello later']);
  expect(r.nodedownError).toBe('ICS_ERR_NODE_DOWN (may-have-run)');
  expect(lines.some((l) => l.includes('ICS_ERR_INVALID_ARGUMENT'))).toBe(true);
  expect(lines.at(-1)).toContain('all nodes closed');
});

it('the hello-cluster example runs over TCP too', async () => {
  const r = await main({ transport: 'tcp', print: () => {} });
  expect(r.nodedownError).toBe('ICS_ERR_NODE_DOWN (may-have-run)');
});

it('hello-rpc: the generated stubs serve and call Hello (sync, async, one-way, invalid arguments) on transport-mem', async () => {
  const lines: string[] = [];
  const r = await helloRpc('memory', (l) => lines.push(l));
  expect(r.greetings).toEqual(['hello world', 'hello later']);
  expect(r.waves).toEqual(['node 2 saw a wave from node 1']);
  expect(r.invalidCode).toBe('ICS_ERR_INVALID_ARGUMENT');
  // The invalid call did not count: node 2 greeted once.
  expect(r.count).toBe(1);
  expect(lines.at(-1)).toBe('all nodes closed');
});

it('hello-rpc runs over TCP too', async () => {
  const r = await helloRpc('tcp', quiet);
  expect(r.greetings).toEqual(['hello world', 'hello later']);
});

it('membership-watch: watch() replays from 1 then follows live without gaps or repeats, and resumes from a number', async () => {
  const lines: string[] = [];
  const r = await membershipWatch('memory', (l) => lines.push(l));
  expect(r.watched[0]).toBe(1);
  expect(consecutive(r.watched)).toBe(true);
  expect(r.watched.at(-1)).toBe(r.history.at(-1));
  // Some were replayed, some came live (the leave and the return of node 3).
  expect(r.replayed).toBeGreaterThan(0);
  expect(r.watched.length).toBeGreaterThan(r.replayed);
  expect(lines.some((l) => /watch: live #\d+ node 3 Up → ShuttingDown \(left\)/.test(l))).toBe(true);
  expect(lines.some((l) => /watch: live #\d+ node 3 Down → ComingUp/.test(l))).toBe(true);
  // The resumed watcher starts where it asked and reaches the end.
  const from = r.watched[Math.floor(r.watched.length / 2)]! + 1;
  expect(r.resumed[0]).toBe(from);
  expect(consecutive(r.resumed)).toBe(true);
  expect(r.resumed.at(-1)).toBe(r.history.at(-1));
  // Node 1's transition events: in order, no gaps, up to its head.
  expect(consecutive(r.events)).toBe(true);
  expect(r.events.at(-1)).toBe(r.history.at(-1));
});

it('subsystem: nodedown callbacks run by band on every survivor, and the restarted node joins only after the slow cleanup', async () => {
  const lines: string[] = [];
  const r = await subsystem('memory', (l) => lines.push(l));
  expect(r.cleanupOrder).toEqual({ 1: ['locks', 'sessions', 'audit'], 2: ['locks', 'sessions', 'audit'] });
  expect(r.auditDone).toBeGreaterThan(0);
  expect(r.rejoinedUp).toBeGreaterThan(r.auditDone);
  expect(r.incarnations[1]).not.toBe(r.incarnations[0]);
  // The barrier in the history: Down (cleanup finished everywhere) before the new incarnation's ComingUp.
  const down = lines.findIndex((l) => /node 3 GoingDown → Down/.test(l));
  const audit = lines.findIndex((l) => l.includes('node 2 audit: done for node 3'));
  const comingUp = lines.findIndex((l) => /node 3 Down → ComingUp/.test(l));
  expect(audit).toBeGreaterThan(0);
  expect(down).toBeGreaterThan(audit);
  expect(comingUp).toBeGreaterThan(down);
});

it(
  'tcp-cluster-cli --check: three processes over TCP, `cluster status` through each admin endpoint agrees on one master and three Up nodes',
  async () => {
    const lines: string[] = [];
    const statuses = await tcpClusterCli({ check: true, print: (l) => lines.push(l) });
    expect(statuses.map((s) => s.node)).toEqual([1, 2, 3]);
    for (const s of statuses) {
      expect(s.exitCode).toBe(0);
      expect(s.members).toEqual([
        { node: 1, state: 'Up' },
        { node: 2, state: 'Up' },
        { node: 3, state: 'Up' },
      ]);
      expect(s.master).toBe(statuses[0]!.master);
    }
    expect(lines.at(-1)).toBe('every node stopped');
  },
  // A ceiling for a loaded machine: three node processes and three `cluster` commands start under tsx.
  240_000,
);

it('key-service-failover: a critical key service fails over with pulled data, then hands over on a clean leave (transport-mem)', async () => {
  const lines: string[] = [];
  const r = await keyServiceFailover('memory', (l) => lines.push(l));
  // Placed on an eligible node, moved to the other one after the crash, then back by hand-over.
  expect([2, 3]).toContain(r.hosts[0]);
  expect(r.hosts[1]).toBe(r.hosts[0] === 2 ? 3 : 2);
  expect(r.hosts[2]).toBe(r.hosts[0]);
  expect(r.epochs).toEqual([1, 2, 3]);
  expect(r.tokens).toEqual([1, 1]);
  // The lock held by the surviving node came back from its pullData; then it travelled with the hand-over.
  expect(r.pulledFrom).toContain(r.hosts[1]);
  expect(r.ownerAfterCrash).toBe(r.hosts[1]);
  expect(r.handedOver).toEqual({ b: r.hosts[1] });
  expect(r.ownerAfterLeave).toBe(r.hosts[1]);
  expect(lines.at(-1)).toContain('all nodes closed');
}, 60_000);

it('single-node: a node that is its own only candidate forms a cluster alone and node 2 joins it; two of three candidates wait for the third', async () => {
  const lines: string[] = [];
  const r = await singleNode('memory', (l) => lines.push(l));
  expect(r.solo).toEqual([
    'node 1 NeverUp → ComingUp (formed the cluster)',
    'node 1 ComingUp → Up (formed the cluster)',
    'node 2 NeverUp → ComingUp (joined)',
    'node 2 ComingUp → Up (every member ran its nodeup callbacks)',
  ]);
  // Every candidate is needed to found a cluster, not two of three: nodes 3 and 4 were still starting when node 5 started.
  expect(r.waitingLines).toBeGreaterThanOrEqual(3);
  expect(r.startedWithout5).toBe(false);
  expect(r.trio).toEqual(['node 3 Up', 'node 4 Up', 'node 5 Up']);
  expect(lines.at(-1)).toBe('all nodes closed');
});

it('ledger: a typed key service (icsgen keyservice) fails over with pulled data, hands over apart from the pulls, refuses bad arguments and unknown names', async () => {
  const lines: string[] = [];
  const r = await ledger('memory', (l) => lines.push(l));
  const [first, second, third] = r.hosts;
  expect([2, 3]).toContain(first);
  expect(second).toBe(first === 2 ? 3 : 2);
  expect(third).toBe(first);
  // 100 by the host, 50 by the other; the crashed host's own 100 is gone with it; then 10 more, handed over whole.
  expect(r.balances).toEqual([150, 50, 60]);
  expect(r.handover).toEqual({ from: second, accounts: 1 });
  // The new host's own deposit (10) came as pulled data too, apart: summing both would say 70.
  expect(r.pulledOnLeave).toEqual([third]);
  expect(r.invalidCode).toBe('ICS_ERR_INVALID_ARGUMENT');
  expect(r.unknownCode).toBe('CLMS_ERR_KEYSERVICE_UNKNOWN');
  expect(lines.at(-1)).toContain('all nodes closed');
}, 60_000);

it('registry: owned entries, a compare-and-set race, a watcher, and the sequencer crash that keeps every acknowledged write (transport-mem)', async () => {
  const lines: string[] = [];
  const r = await registryExample('memory', (l) => lines.push(l));
  // Exactly one node created `leader`; the other two got a conflict.
  expect(r.leaders).toHaveLength(1);
  expect([...r.leaders, ...r.conflicts].sort()).toEqual([1, 2, 3]);
  expect(r.epochs[1]).toBeGreaterThan(r.epochs[0]);
  // The acknowledged write survived the crash; the crashed node's owned entries did not.
  expect(r.colorAfter).toBe('blue');
  const survivors = [1, 2, 3].filter((n) => n !== r.crashed).map((n) => `svc/api/${n}`);
  expect(r.keysAfter).toEqual(['config/color', ...(r.leaders[0] === r.crashed ? [] : ['leader']), ...survivors]);
  expect(r.versions[1]).toBeGreaterThan(r.versions[0]);
  expect(r.watched).toContain(`delete svc/api/${r.crashed} (owner-down)`);
  expect(lines.at(-1)).toContain('all nodes closed');
}, 60_000);

it('runlevels: the cluster moves through phases as a whole; a late joiner counts as up only at the target; leave walks down (transport-mem)', async () => {
  const lines: string[] = [];
  const r = await runLevelsExample('memory', (l) => lines.push(l));
  expect(r.stateWhileJoining).toBe('Up');
  expect(r.upWhileJoining).toEqual([1, 2, 3]);
  expect(r.upAfterJoining).toEqual([1, 2, 3, 4]);
  expect(r.draining).toEqual({ 1: 'draining', 2: 'draining', 3: 'draining', 4: 'draining' });
  expect(r.node4).toEqual(['enter starting', 'enter serving', 'enter draining', 'leave draining', 'leave serving', 'leave starting']);
  expect(lines.at(-1)).toContain('all nodes closed');
}, 60_000);

it("large-cluster: 24 nodes form with every member voting and with voters 'candidates'; losing two of three candidates stops only the latter (transport-mem)", async () => {
  const lines: string[] = [];
  const [members, candidates] = await largeCluster(24, 'memory', (l) => lines.push(l));
  expect([members!.voters, candidates!.voters]).toEqual(['members', 'candidates']);
  expect(members!.frames).toBeGreaterThan(0);
  expect(candidates!.frames).toBeGreaterThan(0);
  expect(members!.decidedAfterLosingTwoCandidates).toBe(true);
  expect(candidates!.decidedAfterLosingTwoCandidates).toBe(false);
  expect(lines.filter((l) => l.startsWith('voters:'))).toHaveLength(2);
}, 60_000);
