/**
 * The child side of the process launcher (process.ts): what every runner
 * program does the same way. Its configuration and the secret come from env;
 * it reports over IPC with a time on the machine-wide clock; it answers each
 * command with a reply of the same id; it exits when its IPC channel closes,
 * so a parent that dies, however it dies, leaves no node behind.
 */
import { ClusterNode, type ClusterNodeOptions, InvalidOptionError } from '@clusterinfra/core';
import { tcp } from '@clusterinfra/transport-tcp';
import { hrNow, RUNNER_ENV, type RunnerCommand, type RunnerReply } from './process.js';

export interface RunnerChannel<C> {
  /** The configuration the launcher passed to spawn(). */
  readonly config: C;
  /** The cluster's pre-shared secret. */
  readonly secret: string;
  /** Send a report to the parent; `at` is added (hrNow) unless the report has one. */
  report<R extends { type: string }>(message: R): void;
  /** Answer every command with what `handler` resolves to, or its error (message, `sent`, `code`); `settled` runs before each reply. */
  serve<K extends Pick<RunnerCommand, 'id' | 'cmd'>>(handler: (command: K) => Promise<unknown>, settled?: (command: K, outcome: { ok: boolean; result?: unknown; error?: string; code?: string }) => void): void;
}

function send(message: unknown): void {
  if (process.connected) process.send!(message, undefined, {}, () => {});
}

/**
 * Connect this process to its launcher. Outside a process the launcher forked
 * (run by hand: no configuration, secret or IPC channel) it throws
 * CONFIG_ERR_INVALID_OPTION naming `program`.
 */
export function runnerChannel<C>(program: string): RunnerChannel<C> {
  const raw = process.env[RUNNER_ENV.config];
  const secret = process.env[RUNNER_ENV.secret];
  if (!raw || !secret || typeof process.send !== 'function') {
    throw new InvalidOptionError(RUNNER_ENV.config, `${String(program)} is started by the process launcher of @clusterinfra/cli (ProcessCluster) over IPC; it is not run by hand`);
  }
  const report = <R extends { type: string }>(message: R): void => send({ at: hrNow(), ...message });
  // No orphans: the parent is gone, so are we.
  process.on('disconnect', () => process.exit(0));
  process.on('uncaughtException', (err) => {
    report({ type: 'fatal', error: String(err?.stack ?? err) });
    process.exitCode = 1;
  });
  process.on('unhandledRejection', (err) => report({ type: 'fatal', error: `unhandled rejection: ${String((err as Error)?.stack ?? err)}` }));
  return {
    config: JSON.parse(raw) as C,
    secret,
    report,
    serve(handler, settled) {
      process.on('message', (c: Parameters<typeof handler>[0]) => {
        const answer = (outcome: Omit<RunnerReply, 'type' | 'id' | 'at'>): void => {
          settled?.(c, outcome);
          send({ type: 'reply', id: c.id, ...outcome, at: hrNow() } satisfies RunnerReply);
        };
        Promise.resolve(c).then(handler).then(
          (result) => answer({ ok: true, result }),
          (err: unknown) => {
            const e = err as { message?: string; sent?: string; code?: string };
            answer({ ok: false, error: `${String(e?.message ?? err)}${e?.sent ? ` (${e.sent})` : ''}`, code: e?.code });
          },
        );
      });
    },
  };
}

/** What every runner's configuration holds: one ClusterNode over transport-tcp on 127.0.0.1. */
export interface NodeRunnerConfig {
  nodeNum: number;
  clusterName: string;
  /** Its transport's port on 127.0.0.1. */
  port: number;
  candidates: number[];
  seeds: string[];
  preset: 'lan' | 'local';
}

/** The runner's ClusterNode, as configured by the launcher, over transport-tcp on 127.0.0.1 with the cluster's secret; `options` adds to it. */
export function runnerNode(channel: RunnerChannel<NodeRunnerConfig>, options: Partial<ClusterNodeOptions> = {}): ClusterNode {
  const { config, secret } = channel;
  return new ClusterNode({
    nodeNum: config.nodeNum,
    clusterName: config.clusterName,
    transport: tcp({ host: '127.0.0.1', port: config.port, secret }),
    candidates: config.candidates,
    seeds: config.seeds,
    preset: config.preset,
    ...options,
  });
}
