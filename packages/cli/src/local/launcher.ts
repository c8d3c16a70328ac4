/**
 * startLocalCluster: a cluster of N nodes on this machine, each its own OS
 * process (runner.ts) over transport-tcp on 127.0.0.1, with a pre-shared
 * secret, observed through one merged timeline. The processes themselves
 * are the process launcher's (process.ts), as in the process tests.
 *
 * Every child is killed with SIGKILL by close() (and, should the parent exit
 * without close(), by a process 'exit' hook; should the parent be killed,
 * each child exits by itself when its IPC channel closes).
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type KeyServiceInfo, type Logger, type Membership, silentLogger } from '@clusterinfra/core';
import { freePorts, hrNow, type NodeProcess, ProcessCluster, type RunnerProgram } from './process.js';
import { ENV, type NodeReport, type RunnerConfig } from './protocol.js';

/** One thing that happened, on one node, `at` ms after the launcher started. */
export type LocalEvent = (
  | NodeReport
  | { type: 'spawned'; pid: number }
  | { type: 'killed'; signal: NodeJS.Signals; pid: number }
  | { type: 'exited'; code: number | null; signal: NodeJS.Signals | null }
  | { type: 'output'; stream: 'stdout' | 'stderr'; line: string }
) & { node: number; at: number };

export interface LocalClusterOptions {
  /** How many nodes (1–32). Nodes are numbered 1..nodes. */
  nodes: number;
  /** Port of node 1; node n listens on basePort + n − 1. @default free ports chosen by the kernel */
  basePort?: number;
  /** Timers of the membership protocol. @default 'local' */
  preset?: 'lan' | 'local';
  /** Token of each node's admin endpoint (at least 16 characters). @default a random one */
  adminToken?: string;
  /** Open an admin endpoint per node on 127.0.0.1 (needs @clusterinfra/admin's serveAdmin). @default true */
  admin?: boolean;
  /** Register the demo `ledger` key service on every node (ledger.ts). @default false */
  keyService?: boolean;
  /** @default 'local' */
  clusterName?: string;
  /** Called for every event, in the order the parent receives them. */
  onEvent?: (event: LocalEvent) => void;
  /** Diagnostics of the launcher itself. @default silent */
  logger?: Logger;
  /** How long start may take before every node is ready. @default 60000 (children compile TypeScript on a shared machine) */
  startTimeoutMs?: number;
  /** Aborting it during start kills what was started and rejects. */
  signal?: AbortSignal;
  /** The runner to fork. @default runner.ts under tsx from source, runner.js from the built package */
  runner?: RunnerProgram;
}

export interface LocalNode {
  /** The node number. */
  readonly node: number;
  readonly pid: number;
  /** host:port of its transport. */
  readonly address: string;
  /** Its admin endpoint, when one is open. */
  readonly adminUrl: string | undefined;
  readonly alive: boolean;
}

/** What a node answers to `state`. */
export interface NodeView {
  master: number | undefined;
  term: number;
  membership: Membership;
  keyServices: KeyServiceInfo[];
  /** What this node deposited into the demo ledger itself. */
  deposited: number;
}

export interface LocalCluster {
  readonly nodes: readonly LocalNode[];
  /** The admin endpoints' token. */
  readonly token: string;
  /** When the launcher started (performance.timeOrigin + performance.now(), ms): events' `at` count from here. */
  readonly startedAt: number;
  /** Every event so far (bounded: the newest 10,000). */
  readonly events: readonly LocalEvent[];
  /** Send `signal` to node `n`'s process. @default SIGKILL */
  kill(n: number, signal?: NodeJS.Signals): void;
  /** Resolves with the first event (past or future) matching `predicate`; rejects after `timeoutMs`. */
  waitFor(predicate: (e: LocalEvent) => boolean, options?: { timeoutMs?: number; what?: string }): Promise<LocalEvent>;
  /** Deposit into the demo ledger from node `n` (a key-service call by name). */
  deposit(n: number, amount: number): Promise<unknown>;
  /** Call any key-service method by name from node `n`. */
  callKeyService(n: number, name: string, method: string, args?: unknown, timeoutMs?: number): Promise<unknown>;
  /** Node `n`'s view: master, term, membership, key services. */
  state(n: number): Promise<NodeView>;
  /**
   * Resolves once every running node sees every running node Up (asked of
   * each node, every `everyMs`: a node that joined late has no nodeup event
   * for the members it found Up); rejects after `timeoutMs`.
   */
  allUp(options?: { timeoutMs?: number; everyMs?: number }): Promise<void>;
  /** The last lines each node printed, for diagnosis. */
  describe(): string;
  /** Kill every process with SIGKILL and wait until each one has exited. Idempotent. */
  close(): Promise<void>;
}

const MAX_EVENTS = 10_000;

/** The runner next to this file: source under tsx, or the built file under plain node. */
function defaultRunner(): RunnerProgram {
  const here = fileURLToPath(import.meta.url);
  const dir = dirname(here);
  if (here.endsWith('.ts')) return { file: join(dir, 'runner.ts'), execArgv: ['--import', 'tsx'] };
  const built = [join(dir, 'runner.js'), join(dir, 'local', 'runner.js')].find((f) => existsSync(f));
  if (!built) throw new Error(`startLocalCluster: no runner.js next to ${here}`);
  return { file: built, execArgv: [] };
}

/** What the launcher knows of a node beyond its process: its `ready` report. */
interface Ready {
  address: string;
  adminUrl: string | undefined;
}

export async function startLocalCluster(options: LocalClusterOptions): Promise<LocalCluster> {
  const n = options.nodes;
  if (!Number.isInteger(n) || n < 1 || n > 32) throw new RangeError(`nodes must be an integer in 1..32 (got ${String(n)})`);
  if (options.basePort !== undefined && (!Number.isInteger(options.basePort) || options.basePort < 1 || options.basePort + n - 1 > 65_535)) {
    throw new RangeError(`basePort must leave room for ${n} ports below 65536 (got ${String(options.basePort)})`);
  }
  if (options.adminToken !== undefined && options.adminToken.length < 16) throw new RangeError('adminToken must have at least 16 characters');
  const log = (options.logger ?? silentLogger).child({ component: 'local-cluster' });
  const startedAt = hrNow();
  const token = options.adminToken ?? randomBytes(16).toString('hex');
  const runner = options.runner ?? defaultRunner();
  const ports = options.basePort !== undefined ? Array.from({ length: n }, (_, i) => options.basePort! + i) : await freePorts(n);
  const nums = Array.from({ length: n }, (_, i) => i + 1);
  const address = (k: number): string => `127.0.0.1:${ports[k - 1]}`;
  const candidates = nums.slice(0, 3);

  const events: LocalEvent[] = [];
  const bus = new EventEmitter();
  bus.setMaxListeners(0);
  const emit = (e: LocalEvent): void => {
    events.push(e);
    if (events.length > MAX_EVENTS) events.shift();
    try {
      options.onEvent?.(e);
    } finally {
      bus.emit('event', e);
    }
  };
  const ready = new Map<number, Ready>();
  const fatal = new Map<number, string>();
  const now = (): number => hrNow() - startedAt;

  const describe = (): string =>
    procs.nodes
      .map((p) => {
        const r = ready.get(p.node);
        const state = p.exited ? `exited (${p.exited.signal ?? p.exited.code})` : r ? `ready at ${r.address}` : 'starting';
        const out = p.output.slice(-8).map((l) => `\n    | ${l}`).join('');
        return `  node ${p.node} pid ${p.pid}: ${state}${out}`;
      })
      .join('\n');

  const procs: ProcessCluster<NodeReport & { at: number }> = new ProcessCluster({
    runner,
    // From source, the children run in the repository root, where tsx finds tsconfig.json's paths to the packages' sources.
    cwd: runner.file.endsWith('.ts') ? fileURLToPath(new URL('../../../../', pathToFileURL(runner.file))) : process.cwd(),
    describe,
    onOutput: (p, stream, line) => emit({ type: 'output', stream, line, node: p.node, at: now() }),
    onExit: (p) => emit({ type: 'exited', code: p.exited!.code, signal: p.exited!.signal, node: p.node, at: now() }),
    onMessage: (p, m) => {
      if (m.type === 'ready') ready.set(p.node, { address: m.address, adminUrl: m.adminUrl });
      if (m.type === 'fatal') fatal.set(p.node, m.error);
      emit({ ...m, node: p.node, at: m.at - startedAt });
    },
  });

  for (const k of nums) {
    const config: RunnerConfig = {
      nodeNum: k,
      clusterName: options.clusterName ?? 'local',
      port: ports[k - 1]!,
      candidates,
      seeds: nums.filter((m) => m !== k).map(address),
      preset: options.preset ?? 'local',
      keyService: options.keyService ?? false,
      admin: options.admin ?? true,
    };
    const p = procs.spawn(k, config, { [ENV.token]: token });
    log.debug({ node: k, pid: p.pid }, 'spawned');
    emit({ type: 'spawned', pid: p.pid, node: k, at: now() });
  }

  const proc = (k: number): NodeProcess<unknown> => {
    if (!Number.isInteger(k) || k < 1 || k > n) throw new RangeError(`no node ${k} (nodes are 1..${n})`);
    return procs.node(k) as NodeProcess<unknown>;
  };

  // Ready: every node started (joined or formed the cluster). A node that dies or fails first fails the start.
  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  try {
    await procs.until(
      () => {
        for (const p of procs.nodes) {
          if (p.exited) throw new Error(`node ${p.node} exited (${p.exited.signal ?? p.exited.code}) before the cluster was ready\n${describe()}`);
          if (fatal.has(p.node)) throw new Error(`node ${p.node}: ${fatal.get(p.node)}\n${describe()}`);
        }
        return procs.nodes.every((p) => ready.has(p.node));
      },
      startTimeoutMs,
      'every node ready',
      options.signal,
    );
  } catch (err) {
    await procs.close();
    throw options.signal?.aborted ? new Error('startLocalCluster: aborted') : err;
  }

  const waitFor = (predicate: (e: LocalEvent) => boolean, o: { timeoutMs?: number; what?: string } = {}): Promise<LocalEvent> => {
    const past = events.find(predicate);
    if (past) return Promise.resolve(past);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        bus.off('event', on);
        reject(new Error(`timed out after ${o.timeoutMs ?? 30_000} ms waiting for ${o.what ?? 'an event'}\n${describe()}`));
      }, o.timeoutMs ?? 30_000);
      const on = (e: LocalEvent): void => {
        if (!predicate(e)) return;
        clearTimeout(timer);
        bus.off('event', on);
        resolve(e);
      };
      bus.on('event', on);
    });
  };
  const view = (p: NodeProcess<unknown>): Promise<NodeView | undefined> => p.command<NodeView>('state', {}, 10_000).catch(() => undefined);

  return {
    nodes: procs.nodes.map((p) => ({
      node: p.node,
      pid: p.pid,
      address: ready.get(p.node)?.address ?? address(p.node),
      adminUrl: ready.get(p.node)?.adminUrl,
      get alive() {
        return p.exited === undefined;
      },
    })),
    token,
    startedAt,
    events,
    kill: (k, signal = 'SIGKILL') => {
      const p = proc(k);
      emit({ type: 'killed', signal, pid: p.pid, node: k, at: now() });
      procs.kill(k, signal);
    },
    waitFor,
    deposit: (k, amount) => proc(k).command('deposit', { amount }, 30_000),
    callKeyService: (k, name, method, args = null, timeoutMs = 10_000) => proc(k).command('call', { name, method, args, timeoutMs }, timeoutMs + 5_000),
    state: (k) => proc(k).command<NodeView>('state', {}, 10_000),
    allUp: async (o = {}) => {
      const deadline = Date.now() + (o.timeoutMs ?? 60_000);
      for (;;) {
        const running = procs.nodes.filter((p) => !p.exited);
        const views = await Promise.all(running.map(view));
        const up = views.every((v) => v !== undefined && running.every((p) => v.membership.members.some((m) => m.node === p.node && m.state === 'Up')));
        if (up) return;
        if (Date.now() > deadline) throw new Error(`not every node saw every node Up within ${o.timeoutMs ?? 60_000} ms\n${describe()}`);
        await new Promise((r) => setTimeout(r, o.everyMs ?? 100));
      }
    },
    describe,
    close: () => procs.close(),
  };
}
