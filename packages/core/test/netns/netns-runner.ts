/**
 * One ClusterNode over transport-tcp inside a network namespace, started by
 * ./netns.test.ts as `ip netns exec <ns> node --import tsx netns-runner.ts`
 * (`ip netns exec` gives no IPC channel, so the parent talks over stdio).
 * Never run by hand.
 *
 * Configuration: JSON in env NETNS_RUNNER (RunnerConfig); the shared secret
 * in env NETNS_SECRET.
 *
 * Reports, one JSON object per stdout line, each starting with `{"netns":`:
 *   { netns: 'state', event, state }  after start and after every transition,
 *                                     master or quorum event; `event` says which
 *   { netns: 'reply', id, ok, result?, error? }
 *   { netns: 'fatal', error }
 * Commands, one JSON object per stdin line: { id, cmd: 'state' | 'history' }.
 *
 * The process exits when stdin closes (the parent is gone) and, whatever
 * happens, after `maxLifeMs`.
 */
import { createInterface } from 'node:readline';
import { ClusterNode } from '@clusterinfra/core';
import { tcp } from '@clusterinfra/transport-tcp';

export interface RunnerConfig {
  nodeNum: number;
  clusterName: string;
  host: string;
  port: number;
  candidates: number[];
  seeds: string[];
  preset: 'lan' | 'local';
  /** The process exits after this long, finished or not. */
  maxLifeMs: number;
}

/** What the parent learns of a node: enough to judge agreement and progress. */
export interface NodeState {
  nodeNum: number;
  incarnation: number;
  head: number;
  master: number | null;
  term: number;
  hasQuorum: boolean;
  /** [node, state, incarnation] for every member this node knows. */
  members: [number, string, number][];
  /** Numbers of the transitions this node committed, as its events reported them, since it started. */
  committed: number[];
}

// Every message literal starts with its `netns` key: the parent tells reports from stray output by that prefix.
const send = (msg: { netns: string } & Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
};
// A closed pipe means the parent is gone.
process.stdout.on('error', () => process.exit(0));

const raw = process.env.NETNS_RUNNER;
const secret = process.env.NETNS_SECRET;
if (!raw || !secret) {
  console.error('netns-runner.ts is started by test/netns/netns.test.ts');
  process.exit(2);
}
const config = JSON.parse(raw) as RunnerConfig;

// Ends by itself, whatever the parent does.
setTimeout(() => process.exit(3), config.maxLifeMs).unref();
process.on('uncaughtException', (err) => {
  send({ netns: 'fatal', error: String(err?.stack ?? err) });
  process.exitCode = 1;
});
process.on('unhandledRejection', (err) => send({ netns: 'fatal', error: `unhandled rejection: ${String((err as Error)?.stack ?? err)}` }));

const node = new ClusterNode({
  nodeNum: config.nodeNum,
  clusterName: config.clusterName,
  transport: tcp({ host: config.host, port: config.port, secret }),
  candidates: config.candidates,
  seeds: config.seeds,
  preset: config.preset,
});

const committed: number[] = [];

function snapshot(): NodeState {
  return {
    nodeNum: config.nodeNum,
    incarnation: node.incarnation,
    head: node.lastTransition,
    master: node.master ?? null,
    term: node.currentTerm,
    hasQuorum: node.hasQuorum,
    members: node.membership().members.map((m) => [m.node, m.state, m.incarnation]),
    committed: committed.slice(-200),
  };
}

const report = (event: string): void => send({ netns: 'state', event, state: snapshot() });

node.on('transition', (t) => {
  committed.push(t.number);
  report('transition');
});
node.on('master', () => report('master'));
node.on('quorum', () => report('quorum'));
node.on('evicted', () => report('evicted'));

node.start().then(
  () => report('started'),
  (err: unknown) => send({ netns: 'fatal', error: `start failed: ${String((err as Error)?.stack ?? err)}` }),
);

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  let m: { id: number; cmd: string };
  try {
    m = JSON.parse(line) as typeof m;
  } catch {
    return;
  }
  if (m.cmd === 'state') send({ netns: 'reply', id: m.id, ok: true, result: snapshot() });
  else if (m.cmd === 'history') send({ netns: 'reply', id: m.id, ok: true, result: node.transitions() });
  else send({ netns: 'reply', id: m.id, ok: false, error: `unknown command ${m.cmd}` });
});
// The parent is gone (or done with us).
lines.on('close', () => {
  void node.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});
