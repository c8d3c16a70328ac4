/**
 * The one process launcher of ClusterInfra: node processes forked from a
 * runner program, their readiness, their IPC commands, signals, and their
 * end. `startLocalCluster` (launcher.ts, the `cluster sim` command and the
 * demo) is built on it, and so are the process tests and the CLMS bench
 * (packages/core/test/process/cluster.ts), through `@clusterinfra/cli/process`.
 *
 * It knows nothing of what a runner reports: every message that is not a
 * reply goes to `onMessage`. The child side of the same conventions is
 * child.ts (`runnerChannel`).
 *
 * No process outlives the launcher: close() sends SIGKILL to every process
 * ever spawned and waits until the kernel reaped each; a parent that exits
 * without close() kills them from a process 'exit' hook; a parent that is
 * killed leaves children that exit by themselves when their IPC channel
 * closes (runnerChannel does that).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { performance } from 'node:perf_hooks';
import { InvalidOptionError } from '@clusterinfra/core';

/** Milliseconds on a clock every process of this machine shares: the `at` of every report. */
export const hrNow = (): number => performance.timeOrigin + performance.now();

/** The env variables a runner reads; the secret never goes on the command line, where `ps` shows it. */
export const RUNNER_ENV = { config: 'CLUSTERINFRA_LOCAL_NODE', secret: 'CLUSTERINFRA_LOCAL_SECRET', token: 'CLUSTERINFRA_LOCAL_TOKEN' } as const;

/** A command (parent → child); the child answers each one with a `RunnerReply` of the same id. */
export type RunnerCommand = { id: number; cmd: string } & Record<string, unknown>;
export type RunnerReply = { type: 'reply'; id: number; ok: boolean; result?: unknown; error?: string; code?: string; at?: number };

/** The program each node process runs: a file and the node options to run it with (e.g. `['--import', 'tsx']`). */
export interface RunnerProgram {
  file: string;
  execArgv: string[];
}

/** Ports the kernel hands out now on 127.0.0.1 (held together, so distinct). */
export async function freePorts(n: number): Promise<number[]> {
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

export interface ProcessClusterOptions<M> {
  runner: RunnerProgram;
  /** Working directory of the children (a `.ts` runner under tsx needs the directory of the tsconfig.json with the packages' paths). @default process.cwd() */
  cwd?: string;
  /** Every message a child sends that is not a reply. */
  onMessage?: (node: NodeProcess<M>, message: M) => void;
  /** Every non-empty line a child prints. */
  onOutput?: (node: NodeProcess<M>, stream: 'stdout' | 'stderr', line: string) => void;
  /** A child exited (after its pending commands were rejected). */
  onExit?: (node: NodeProcess<M>) => void;
  /** The last lines of output kept per process. @default 50 */
  outputLines?: number;
  /** The state of the cluster, appended to the error of a wait that timed out. */
  describe?: () => string;
}

/** One node process, as the parent sees it. */
export class NodeProcess<M = unknown> {
  /** Its last lines of stdout and stderr, for diagnosis. */
  readonly output: string[] = [];
  readonly spawnedAt = hrNow();
  exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** When the launcher sent it SIGKILL (hrNow clock). */
  killedAt: number | undefined;
  /** Resolves when the process has exited. */
  readonly exit: Promise<void>;
  private nextId = 1;
  private readonly replies = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(
    readonly node: number,
    readonly proc: ChildProcess,
    options: ProcessClusterOptions<M>,
    changed: () => void,
  ) {
    const keep = options.outputLines ?? 50;
    for (const stream of ['stdout', 'stderr'] as const) {
      let rest = '';
      proc[stream]?.on('data', (chunk: Buffer) => {
        const lines = (rest + chunk.toString('utf8')).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) this.line(stream, line, keep, options);
      });
    }
    proc.on('message', (m: M | RunnerReply) => {
      if ((m as RunnerReply).type === 'reply') this.onReply(m as RunnerReply);
      else options.onMessage?.(this, m as M);
      changed();
    });
    proc.on('error', (err) => this.line('stderr', `child process error: ${err.message}`, keep, options));
    this.exit = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exited = { code, signal };
        for (const r of this.replies.values()) r.reject(new Error(`node ${node} exited (${signal ?? code})`));
        this.replies.clear();
        options.onExit?.(this);
        changed();
        resolve();
      });
    });
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  /** Neither exited nor sent SIGKILL. */
  get running(): boolean {
    return this.exited === undefined && this.killedAt === undefined;
  }

  /** Send `{ id, cmd, ...args }`; resolves with the reply's result, rejects with its error (and `code`), on exit, or after `timeoutMs`. */
  command<T = unknown>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 15_000): Promise<T> {
    if (!this.running || !this.proc.connected) return Promise.reject(new Error(`node ${this.node} is not running`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.replies.delete(id);
        reject(new Error(`node ${this.node}: no answer to ${cmd} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.replies.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.proc.send({ ...args, id, cmd } satisfies RunnerCommand);
    });
  }

  private line(stream: 'stdout' | 'stderr', line: string, keep: number, options: ProcessClusterOptions<M>): void {
    if (!line) return;
    this.output.push(line);
    if (this.output.length > keep) this.output.shift();
    options.onOutput?.(this, stream, line);
  }

  private onReply(m: RunnerReply): void {
    const r = this.replies.get(m.id);
    this.replies.delete(m.id);
    if (m.ok) r?.resolve(m.result);
    else r?.reject(Object.assign(new Error(`node ${this.node}: ${m.error}`), { code: m.code }));
  }
}

/**
 * Node processes numbered by the caller, each forked from one runner with a
 * configuration (JSON in env), the cluster's secret, and its IPC channel.
 * A node can be spawned again after it died (a new incarnation).
 */
export class ProcessCluster<M = unknown> {
  /** The pre-shared secret every node gets (in env). */
  readonly secret = randomBytes(32).toString('hex');
  /** Every process ever spawned, killed ones too. */
  readonly all: NodeProcess<M>[] = [];
  private readonly current = new Map<number, NodeProcess<M>>();
  private readonly changes = new EventEmitter();
  private closing: Promise<void> | undefined;
  // The parent exits without close(): kill what is left (synchronously; nothing else can run then).
  private readonly onExit = (): void => {
    for (const p of this.all) if (p.exited === undefined) p.proc.kill('SIGKILL');
  };

  constructor(private readonly options: ProcessClusterOptions<M>) {
    if (typeof options?.runner?.file !== 'string' || !Array.isArray(options.runner.execArgv)) throw new InvalidOptionError('runner', 'ProcessCluster needs a runner: { file, execArgv }');
    this.changes.setMaxListeners(0);
    process.on('exit', this.onExit);
  }

  /** Fork node `n` with `config` (again, once its previous process is gone); `env` adds variables. */
  spawn(n: number, config: object, env: Record<string, string> = {}): NodeProcess<M> {
    if (this.closing) throw new Error(`node ${n}: the cluster is closed`);
    if (this.current.get(n)?.running) throw new Error(`node ${n} runs already`);
    const proc = fork(this.options.runner.file, [], {
      cwd: this.options.cwd ?? process.cwd(),
      execArgv: this.options.runner.execArgv,
      env: { ...process.env, ...env, [RUNNER_ENV.config]: JSON.stringify(config), [RUNNER_ENV.secret]: this.secret },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    const p = new NodeProcess<M>(n, proc, this.options, () => this.changed());
    this.current.set(n, p);
    this.all.push(p);
    return p;
  }

  /** The latest process of node `n`. */
  node(n: number): NodeProcess<M> {
    const p = this.current.get(n);
    if (!p) throw new RangeError(`no node ${n}`);
    return p;
  }

  /** The latest process of every node spawned, in spawn order of the node numbers. */
  get nodes(): NodeProcess<M>[] {
    return [...this.current.values()];
  }

  /** Send `signal` to node `n` (SIGKILL marks it no longer running; SIGSTOP/SIGCONT pause and resume it). Returns the time just before. */
  kill(n: number, signal: NodeJS.Signals = 'SIGKILL'): number {
    const p = this.node(n);
    const at = hrNow();
    if (signal === 'SIGKILL') p.killedAt ??= at;
    p.proc.kill(signal);
    return at;
  }

  /** Re-check every pending until() (called by the launcher on every report and exit; callers with state of their own call it too). */
  changed(): void {
    this.changes.emit('change');
  }

  /**
   * Resolves once `pred` holds (checked now and on every change); rejects when
   * `pred` throws, after `timeoutMs` (with describe()), or when `signal` aborts.
   */
  until(pred: () => boolean, timeoutMs: number, what: string, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const finish = (err?: Error): void => {
        clearTimeout(timer);
        this.changes.off('change', check);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onAbort = (): void => finish(new Error(`aborted while waiting for ${what}`));
      const check = (): void => {
        if (signal?.aborted) return onAbort();
        try {
          if (pred()) finish();
        } catch (err) {
          finish(err as Error);
        }
      };
      const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.options.describe?.() ?? ''}`)), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.changes.on('change', check);
      check();
    });
  }

  /** SIGKILL every process ever spawned and wait until each one has exited (SIGKILL cannot be refused, a stopped process included). Idempotent. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      for (const p of this.all) {
        if (p.exited !== undefined) continue;
        p.killedAt ??= hrNow();
        p.proc.kill('SIGKILL');
      }
      await Promise.all(this.all.map((p) => p.exit));
      process.off('exit', this.onExit);
    })());
  }
}
