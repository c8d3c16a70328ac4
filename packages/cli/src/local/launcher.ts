/**
 * startLocalCluster: a cluster of N nodes on this machine, each its own OS
 * process (runner.ts) over transport-tcp on 127.0.0.1, with a pre-shared
 * secret, observed through one merged timeline.
 *
 * Every child is killed with SIGKILL by close() (and, should the parent exit
 * without close(), by a process 'exit' hook; should the parent be killed,
 * each child exits by itself when its IPC channel closes).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type KeyServiceInfo, type Logger, type Membership, silentLogger } from '@clusterinfra/core';
import { type ChildMessage, type Command, ENV, type NodeReport, type Reply, type RunnerConfig } from './protocol.js';

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
  runner?: { file: string; execArgv: string[] };
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

/** Omit over each member of a union (Omit itself would merge them). */
type CommandBody = Command extends infer C ? (C extends unknown ? Omit<C, 'id'> : never) : never;
const MAX_OUTPUT_LINES = 50;

/** The runner next to this file: source under tsx, or the built file under plain node. */
function defaultRunner(): { file: string; execArgv: string[] } {
  const here = fileURLToPath(import.meta.url);
  const dir = dirname(here);
  if (here.endsWith('.ts')) return { file: join(dir, 'runner.ts'), execArgv: ['--import', 'tsx'] };
  const built = [join(dir, 'runner.js'), join(dir, 'local', 'runner.js')].find((f) => existsSync(f));
  if (!built) throw new Error(`startLocalCluster: no runner.js next to ${here}`);
  return { file: built, execArgv: [] };
}

/** Ports the kernel hands out now on 127.0.0.1 (held together, so distinct). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** One child process, as the parent sees it. */
class Child {
  address: string | undefined;
  adminUrl: string | undefined;
  ready = false;
  exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly output: string[] = [];
  readonly exit: Promise<void>;
  private nextId = 1;
  private readonly replies = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(
    readonly node: number,
    readonly proc: ChildProcess,
    private readonly emit: (e: LocalEvent) => void,
    private readonly since: number,
  ) {
    for (const stream of ['stdout', 'stderr'] as const) {
      let rest = '';
      proc[stream]?.on('data', (chunk: Buffer) => {
        const lines = (rest + chunk.toString('utf8')).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) this.line(stream, line);
      });
    }
    proc.on('message', (m: ChildMessage) => this.onMessage(m));
    proc.on('error', (err) => this.line('stderr', `child process error: ${err.message}`));
    this.exit = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exited = { code, signal };
        for (const r of this.replies.values()) r.reject(new Error(`node ${node} exited (${signal ?? code})`));
        this.replies.clear();
        this.emit({ type: 'exited', code, signal, node, at: this.rel(performance.timeOrigin + performance.now()) });
        resolve();
      });
    });
  }

  private rel(at: number): number {
    return at - this.since;
  }

  private line(stream: 'stdout' | 'stderr', line: string): void {
    if (!line) return;
    this.output.push(line);
    if (this.output.length > MAX_OUTPUT_LINES) this.output.shift();
    this.emit({ type: 'output', stream, line, node: this.node, at: this.rel(performance.timeOrigin + performance.now()) });
  }

  private onMessage(m: ChildMessage): void {
    if (m.type === 'reply') return this.onReply(m);
    if (m.type === 'ready') {
      this.ready = true;
      this.address = m.address;
      this.adminUrl = m.adminUrl;
    }
    this.emit({ ...m, node: this.node, at: this.rel(m.at) } as LocalEvent);
  }

  private onReply(m: Reply): void {
    const r = this.replies.get(m.id);
    this.replies.delete(m.id);
    if (m.ok) r?.resolve(m.result);
    else r?.reject(Object.assign(new Error(`node ${this.node}: ${m.error}`), { code: m.code }));
  }

  command(c: CommandBody, timeoutMs: number): Promise<unknown> {
    if (this.exited || !this.proc.connected) return Promise.reject(new Error(`node ${this.node} is not running`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.replies.delete(id);
        reject(new Error(`node ${this.node}: no answer to ${c.cmd} within ${timeoutMs} ms`));
      }, timeoutMs);
      const settle = (fn: () => void): void => {
        clearTimeout(timer);
        fn();
      };
      this.replies.set(id, { resolve: (v) => settle(() => resolve(v)), reject: (e) => settle(() => reject(e)) });
      this.proc.send({ ...c, id } as Command);
    });
  }
}

export async function startLocalCluster(options: LocalClusterOptions): Promise<LocalCluster> {
  const n = options.nodes;
  if (!Number.isInteger(n) || n < 1 || n > 32) throw new RangeError(`nodes must be an integer in 1..32 (got ${String(n)})`);
  if (options.basePort !== undefined && (!Number.isInteger(options.basePort) || options.basePort < 1 || options.basePort + n - 1 > 65_535)) {
    throw new RangeError(`basePort must leave room for ${n} ports below 65536 (got ${String(options.basePort)})`);
  }
  if (options.adminToken !== undefined && options.adminToken.length < 16) throw new RangeError('adminToken must have at least 16 characters');
  const log = (options.logger ?? silentLogger).child({ component: 'local-cluster' });
  const startedAt = performance.timeOrigin + performance.now();
  const secret = randomBytes(32).toString('hex');
  const token = options.adminToken ?? randomBytes(16).toString('hex');
  const runner = options.runner ?? defaultRunner();
  // From source, the children run in the repository root, where tsx finds tsconfig.json's paths to the packages' sources.
  const root = runner.file.endsWith('.ts') ? fileURLToPath(new URL('../../../../', pathToFileURL(runner.file))) : process.cwd();
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

  const children: Child[] = [];
  // The parent exits without close(): kill what is left (synchronously; nothing else can run then).
  const onExit = (): void => {
    for (const c of children) if (!c.exited) c.proc.kill('SIGKILL');
  };
  process.on('exit', onExit);

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
    const proc = fork(runner.file, [], {
      cwd: root,
      execArgv: runner.execArgv,
      env: { ...process.env, [ENV.config]: JSON.stringify(config), [ENV.secret]: secret, [ENV.token]: token },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    const child = new Child(k, proc, emit, startedAt);
    children.push(child);
    log.debug({ node: k, pid: proc.pid }, 'spawned');
    emit({ type: 'spawned', pid: proc.pid ?? -1, node: k, at: performance.timeOrigin + performance.now() - startedAt });
  }

  const child = (k: number): Child => {
    const c = children[k - 1];
    if (!c) throw new RangeError(`no node ${k} (nodes are 1..${n})`);
    return c;
  };

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      for (const c of children) if (!c.exited) c.proc.kill('SIGKILL');
      // SIGKILL cannot be refused: the wait is for the kernel to reap them.
      await Promise.all(children.map((c) => c.exit));
      process.off('exit', onExit);
    })());

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

  const describe = (): string =>
    children
      .map((c) => {
        const state = c.exited ? `exited (${c.exited.signal ?? c.exited.code})` : c.ready ? `ready at ${c.address}` : 'starting';
        const out = c.output.slice(-8).map((l) => `\n    | ${l}`).join('');
        return `  node ${c.node} pid ${c.proc.pid}: ${state}${out}`;
      })
      .join('\n');

  // Ready: every node started (joined or formed the cluster). A node that dies or fails first fails the start.
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`not every node was ready within ${options.startTimeoutMs ?? 60_000} ms\n${describe()}`)), options.startTimeoutMs ?? 60_000);
      const finish = (err?: Error): void => {
        clearTimeout(timer);
        bus.off('event', check);
        options.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onAbort = (): void => finish(new Error('startLocalCluster: aborted'));
      options.signal?.addEventListener('abort', onAbort, { once: true });
      const check = (e?: LocalEvent): void => {
        if (options.signal?.aborted) return onAbort();
        if (e?.type === 'exited') return finish(new Error(`node ${e.node} exited (${e.signal ?? e.code}) before the cluster was ready\n${describe()}`));
        if (e?.type === 'fatal') return finish(new Error(`node ${e.node}: ${e.error}\n${describe()}`));
        if (children.every((c) => c.ready)) finish();
      };
      bus.on('event', check);
      check();
    });
  } catch (err) {
    await close();
    throw err;
  }

  return {
    nodes: children.map((c) => ({
      node: c.node,
      pid: c.proc.pid ?? -1,
      address: c.address ?? address(c.node),
      adminUrl: c.adminUrl,
      get alive() {
        return c.exited === undefined;
      },
    })),
    token,
    startedAt,
    events,
    kill: (k, signal = 'SIGKILL') => {
      const c = child(k);
      emit({ type: 'killed', signal, pid: c.proc.pid ?? -1, node: k, at: performance.timeOrigin + performance.now() - startedAt });
      c.proc.kill(signal);
    },
    waitFor,
    deposit: (k, amount) => child(k).command({ cmd: 'deposit', amount }, 30_000),
    callKeyService: (k, name, method, args = null, timeoutMs = 10_000) => child(k).command({ cmd: 'call', name, method, args, timeoutMs }, timeoutMs + 5_000),
    state: (k) => child(k).command({ cmd: 'state' }, 10_000) as Promise<NodeView>,
    allUp: async (o = {}) => {
      const deadline = Date.now() + (o.timeoutMs ?? 60_000);
      for (;;) {
        const running = children.filter((c) => !c.exited);
        const views = await Promise.all(running.map((c) => (c.command({ cmd: 'state' }, 10_000) as Promise<NodeView>).catch(() => undefined)));
        const up = views.every((v) => v !== undefined && running.every((c) => v.membership.members.some((m) => m.node === c.node && m.state === 'Up')));
        if (up) return;
        if (Date.now() > deadline) throw new Error(`not every node saw every node Up within ${o.timeoutMs ?? 60_000} ms\n${describe()}`);
        await new Promise((r) => setTimeout(r, o.everyMs ?? 100));
      }
    },
    describe,
    close,
  };
}
