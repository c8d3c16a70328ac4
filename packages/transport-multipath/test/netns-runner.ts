/**
 * One ClusterNode over multipath (two TCP paths) inside a network
 * namespace, started by ./netns.test.ts as
 * `ip netns exec <ns> node --import tsx netns-runner.ts`. Never run by hand.
 *
 * Configuration: JSON in env MP_NETNS (RunnerConfig); the secret in env MP_SECRET.
 * Reports, one JSON object per stdout line, each starting with `{"mp":`:
 *   { mp: 'up' }                          the node sees itself and its peer Up
 *   { mp: 'path', path, state, link }     a path of a link went up or down
 *   { mp: 'progress', settled, failures } (client) every 50 settled calls
 *   { mp: 'done', ... }                   (client) after `stop`, once nothing is in flight
 *   { mp: 'report', ... }                 (server) after `report`
 *   { mp: 'fatal', error }
 * Commands, one word per stdin line: `go` and `stop` (client: start and stop
 * calling the server), `report` (server).
 * The process exits when stdin closes and, whatever happens, after `maxLifeMs`.
 */
import { createInterface } from 'node:readline';
import { ClusterNode } from '@clusterinfra/core';
import { tcp } from '@clusterinfra/transport-tcp';
import { multipath } from '@clusterinfra/transport-multipath';

export interface RunnerConfig {
  role: 'server' | 'client';
  nodeNum: number;
  /** This node's address on path 0 and on path 1. */
  hosts: [string, string];
  port: number;
  /** The server's multipath address (client only). */
  peer?: string;
  maxLifeMs: number;
}

const send = (msg: { mp: string } & Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
};
process.stdout.on('error', () => process.exit(0));

const raw = process.env.MP_NETNS;
const secret = process.env.MP_SECRET;
if (!raw || !secret) {
  console.error('netns-runner.ts is started by test/netns.test.ts');
  process.exit(2);
}
const config = JSON.parse(raw) as RunnerConfig;
setTimeout(() => process.exit(3), config.maxLifeMs).unref();
process.on('uncaughtException', (err) => send({ mp: 'fatal', error: String(err?.stack ?? err) }));
process.on('unhandledRejection', (err) => send({ mp: 'fatal', error: `unhandled rejection: ${String((err as Error)?.stack ?? err)}` }));

// Paths fail over well inside the `lan` failure timeout (1 s), so nobody is declared down.
const transport = multipath(
  config.hosts.map((host) => tcp({ host, port: config.port, secret })),
  { heartbeatIntervalMs: 50, pathTimeoutMs: 300, linkTimeoutMs: 20_000, redialMinMs: 50, redialMaxMs: 500 },
);
transport.on('path', (e) => send({ mp: 'path', path: e.path, state: e.state, link: e.link, reason: e.reason }));

const node = new ClusterNode({
  nodeNum: config.nodeNum,
  clusterName: 'mp-netns',
  transport,
  candidates: [2],
  seeds: config.peer ? [config.peer] : [],
  preset: 'lan',
});
const nodedowns: number[] = [];
node.on('nodedown', (info) => nodedowns.push(info.node));

const SVC = { channel: 'default', subservice: 5 };
const got: number[] = [];

const bothUp = (): boolean => node.membership().members.filter((m) => m.state === 'Up').length === 2;
node.start().then(
  () => {
    if (config.role === 'server') node.communication.registerService({ ...SVC, name: 'recorder', handlers: { rec: (seq) => (got.push(seq as number), seq) } });
    const wait = setInterval(() => {
      if (!bothUp()) return;
      clearInterval(wait);
      send({ mp: 'up' });
    }, 20);
  },
  (err: unknown) => send({ mp: 'fatal', error: `start failed: ${String((err as Error)?.stack ?? err)}` }),
);

let stopping = false;
function traffic(): () => void {
  let next = 0;
  let settled = 0;
  const results: unknown[] = [];
  const errors: string[] = [];
  const launch = (): void => {
    while (!stopping && next - settled < 8) {
      const i = next++;
      node.communication.call(2, SVC, 'rec', i, { timeoutMs: 15_000 }).then(
        (v) => finish(() => (results[i] = v)),
        (e: unknown) => finish(() => errors.push(`call ${i}: ${(e as Error).message}`)),
      );
    }
    if (stopping && settled === next) {
      send({
        mp: 'done',
        settled,
        failures: errors.length,
        errors: errors.slice(0, 5),
        inOrder: results.every((v, i) => v === i) && results.length === settled,
        nodedowns,
        health: transport.health(),
      });
    }
  };
  const finish = (f: () => void): void => {
    f();
    settled++;
    if (settled % 50 === 0) send({ mp: 'progress', settled, failures: errors.length });
    launch();
  };
  launch();
  return () => {
    stopping = true;
    launch();
  };
}

let stop: (() => void) | undefined;
const lines = createInterface({ input: process.stdin });
lines.on('line', (text) => {
  const line = text.trim();
  if (line === 'go' && config.role === 'client') stop ??= traffic();
  if (line === 'stop' && !stopping) stop?.();
  if (line !== 'report') return;
  const dups = got.length - new Set(got).size;
  send({ mp: 'report', count: got.length, inOrder: got.every((v, i) => v === i), duplicates: dups, nodedowns, health: transport.health() });
});
lines.on('close', () => {
  void node.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});
