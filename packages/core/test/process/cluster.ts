/**
 * Clusters of ClusterNodes as separate OS processes over transport-tcp on
 * 127.0.0.1, each one node-runner.ts, driven and observed over IPC. Used by
 * the process tests (./*.test.ts) and by the CLMS benchmark (bench/clms.ts).
 *
 * Every child is killed with SIGKILL by close(), and (should the parent die
 * first) exits by itself when its IPC channel closes.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { DecisionRecord, KeyServiceInfo, MemberInfo, Membership, Transition } from '../../src/index.js';
import type { RunnerConfig } from './node-runner.js';

const RUNNER = fileURLToPath(new URL('./node-runner.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

/** Milliseconds on a clock shared by every process of this machine. */
export const hrNow = (): number => performance.timeOrigin + performance.now();

export interface Seen<T> {
  value: T;
  at: number;
}

export interface Cleanup {
  node: number;
  incarnation: number;
  start: number;
  end: number;
}

/** One node process, as its parent sees it. */
export class ProcNode {
  readonly transitions: Seen<Transition>[] = [];
  readonly masters: Seen<{ master: number | undefined; term: number }>[] = [];
  readonly cleanups: Cleanup[] = [];
  /** The decision records this node made (a master's downs, its mastership, quorum changes). */
  readonly decisions: Seen<DecisionRecord>[] = [];
  /** Key-service reports (with `keyService` configured): every keyservice event, and this node's failover steps. */
  readonly keyService: Seen<KeyServiceReport>[] = [];
  readonly fatal: string[] = [];
  /** The last lines of its stdout and stderr, for diagnosis. */
  readonly output: string[] = [];
  address: string | undefined;
  incarnation: number | undefined;
  readyAt: number | undefined;
  loadedAt: number | undefined;
  exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  killedAt: number | undefined;
  private nextId = 1;
  private readonly replies = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly exit: Promise<void>;

  constructor(
    readonly nodeNum: number,
    readonly child: ChildProcess,
    readonly spawnedAt: number,
    private readonly changed: () => void,
  ) {
    const keep = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) if (line) this.output.push(line);
      if (this.output.length > 200) this.output.splice(0, this.output.length - 200);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.on('message', (m: RunnerMessage) => this.onMessage(m));
    child.on('error', (err) => this.fatal.push(`child process error: ${err.message}`));
    this.exit = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exited = { code, signal };
        for (const r of this.replies.values()) r.reject(new Error(`node ${nodeNum} exited (${signal ?? code})`));
        this.replies.clear();
        this.changed();
        resolve();
      });
    });
  }

  get alive(): boolean {
    return this.exited === undefined && this.killedAt === undefined;
  }

  /** The membership as of this node's last transition event: node → [state, incarnation]. */
  readonly view = new Map<number, { state: string; incarnation: number }>();

  /** The state of `of` at this node, as of its last transition event. */
  stateOf(of: number): string | undefined {
    return this.view.get(of)?.state;
  }

  incarnationOf(of: number): number | undefined {
    return this.view.get(of)?.incarnation;
  }

  /** Transition numbers missing between this node's transition events (the events must not skip any). */
  eventGaps(): number[] {
    const gaps: number[] = [];
    let prev: number | undefined;
    for (const s of this.transitions) {
      const n = s.value.number;
      if (prev !== undefined) for (let g = prev + 1; g < n; g++) gaps.push(g);
      prev = n;
    }
    return gaps;
  }

  get lastNumber(): number {
    return this.transitions.at(-1)?.value.number ?? 0;
  }

  get master(): number | undefined {
    return this.masters.at(-1)?.value.master;
  }

  /** When this node applied the first transition matching `pred`. */
  seen(pred: (t: Transition) => boolean): Seen<Transition> | undefined {
    return this.transitions.find((s) => pred(s.value));
  }

  command<T = unknown>(cmd: 'start' | 'leave' | 'declareDown' | 'close' | 'stats' | 'state' | 'history' | 'call', args: Record<string, unknown> = {}, timeoutMs = 15_000): Promise<T> {
    if (!this.alive || !this.child.connected) return Promise.reject(new Error(`node ${this.nodeNum} is not running`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.replies.delete(id);
        reject(new Error(`node ${this.nodeNum}: no reply to ${cmd} within ${timeoutMs} ms`));
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
      this.child.send({ id, cmd, ...args });
    });
  }

  stats(): Promise<{ messagesSent: number; transitions: number }> {
    return this.command('stats');
  }

  state(): Promise<{ master: number | undefined; term: number; last: number; membership: Membership }> {
    return this.command('state');
  }

  /** callKeyService on this node. */
  call<T = unknown>(name: string, method: string, args: unknown, timeoutMs: number): Promise<T> {
    return this.command<T>('call', { name, method, args, timeoutMs }, timeoutMs + 15_000);
  }

  /** The node's committed history (ClusterNode.transitions()). */
  history(): Promise<Transition[]> {
    return this.command('history');
  }

  private onMessage(m: RunnerMessage): void {
    switch (m.type) {
      case 'loaded':
        this.loadedAt = m.at;
        break;
      case 'ready':
        this.address = m.address;
        this.incarnation = m.incarnation;
        this.readyAt = m.at;
        break;
      case 'transition':
        this.transitions.push({ value: m.transition, at: m.at });
        this.view.clear();
        for (const [node, state, incarnation] of m.members) this.view.set(node, { state, incarnation });
        break;
      case 'master':
        this.masters.push({ value: { master: m.master, term: m.term }, at: m.at });
        break;
      case 'cleanup':
        this.cleanups.push({ node: m.node, incarnation: m.incarnation, start: m.start, end: m.end });
        break;
      case 'reply': {
        const r = this.replies.get(m.id);
        this.replies.delete(m.id);
        if (m.ok) r?.resolve(m.result);
        else r?.reject(new Error(`node ${this.nodeNum}: ${m.error}`));
        break;
      }
      case 'decision':
        this.decisions.push({ value: m.record, at: m.at });
        break;
      case 'ks':
        this.keyService.push({ value: m, at: m.at });
        break;
      case 'fatal':
        this.fatal.push(m.error);
        break;
    }
    this.changed();
  }
}

type RunnerMessage =
  | { type: 'loaded'; at: number }
  | { type: 'ready'; address: string; incarnation: number; at: number }
  | { type: 'transition'; transition: Transition; at: number; members: [number, string, number][] }
  | { type: 'master'; master: number | undefined; term: number; at: number }
  | { type: 'cleanup'; node: number; incarnation: number; start: number; end: number }
  | { type: 'decision'; record: DecisionRecord; at: number }
  | { type: 'reply'; id: number; ok: boolean; result?: unknown; error?: string }
  | ({ type: 'ks'; at: number } & KeyServiceReport)
  | { type: 'fatal'; error: string };

export type KeyServiceReport =
  | { event: 'info'; info: KeyServiceInfo }
  | { event: 'failover'; epoch: number }
  | { event: 'data'; epoch: number; from: number[] };

export interface ProcClusterOptions {
  /** Nodes 1..size are started at once (more with spawn()). */
  size: number;
  /** Node numbers that may be master. @default the first three */
  candidates?: number[];
  preset?: 'lan' | 'local';
  clusterName?: string;
  /** Ports for nodes beyond `size` (late joiners). @default 2 */
  spare?: number;
  /** Load the processes, but start the nodes only on go(). */
  hold?: boolean;
  /** Seeds of each node: every other reserved address, or the candidates' only. @default 'all' */
  seeds?: 'all' | 'candidates';
  /** The runner to fork. @default node-runner.ts under `node --import tsx` */
  runner?: { file: string; execArgv: string[] };
  /** Runner configuration for every node (e.g. `keyService`). */
  config?: Partial<RunnerConfig>;
}

/** Ports the kernel hands out now for 127.0.0.1 (held together, so distinct). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<import('node:net').Server>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as import('node:net').AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export class ProcCluster {
  readonly nodes = new Map<number, ProcNode>();
  /** Every process ever started (killed ones too), for close(). */
  readonly all: ProcNode[] = [];
  readonly secret = randomBytes(32).toString('hex');
  readonly events = new EventEmitter();
  readonly preset: 'lan' | 'local';
  readonly candidates: number[];
  readonly clusterName: string;
  private ports = new Map<number, number>();

  private constructor(private readonly options: ProcClusterOptions) {
    this.preset = options.preset ?? 'lan';
    this.candidates = options.candidates ?? Array.from({ length: Math.min(options.size, 3) }, (_, i) => i + 1);
    this.clusterName = options.clusterName ?? 'proc';
    this.events.setMaxListeners(0);
  }

  /** Allocate ports for nodes 1..size+spare and start nodes 1..size. */
  static async start(options: ProcClusterOptions): Promise<ProcCluster> {
    const c = new ProcCluster(options);
    const total = options.size + (options.spare ?? 2);
    const ports = await freePorts(total);
    ports.forEach((p, i) => c.ports.set(i + 1, p));
    for (let n = 1; n <= options.size; n++) c.spawn(n);
    return c;
  }

  addressOf(n: number): string {
    const p = this.ports.get(n);
    if (p === undefined) throw new Error(`no port reserved for node ${n}`);
    return `127.0.0.1:${p}`;
  }

  /** Start node `n` as a new process (again: a new incarnation on the same address). */
  spawn(n: number, extra: Partial<RunnerConfig> = {}): ProcNode {
    const old = this.nodes.get(n);
    if (old?.alive) throw new Error(`node ${n} runs already`);
    const seedNodes = this.options.seeds === 'candidates' ? this.candidates : [...this.ports.keys()];
    const seeds = seedNodes.filter((m) => m !== n).map((m) => this.addressOf(m));
    const config: RunnerConfig = {
      nodeNum: n,
      clusterName: this.clusterName,
      port: this.ports.get(n) ?? 0,
      candidates: this.candidates,
      seeds,
      preset: this.preset,
      hold: this.options.hold ?? false,
      ...this.options.config,
      ...extra,
    };
    const child = fork(this.options.runner?.file ?? RUNNER, [], {
      cwd: ROOT,
      execArgv: this.options.runner?.execArgv ?? ['--import', 'tsx'],
      env: { ...process.env, CLMS_RUNNER: JSON.stringify(config), CLMS_SECRET: this.secret },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    const node = new ProcNode(n, child, hrNow(), () => this.events.emit('change'));
    this.nodes.set(n, node);
    this.all.push(node);
    return node;
  }

  node(n: number): ProcNode {
    const p = this.nodes.get(n);
    if (!p) throw new Error(`no node ${n}`);
    return p;
  }

  /** The numbers of the running nodes. */
  get running(): number[] {
    return [...this.nodes.values()].filter((p) => p.alive).map((p) => p.nodeNum);
  }

  /** Start held nodes; returns the time just before the first start command. */
  async go(ns: number[] = this.running): Promise<number> {
    await this.until(() => ns.every((n) => this.node(n).loadedAt !== undefined), 120_000, 'processes loaded');
    const t0 = hrNow();
    await Promise.all(ns.map((n) => this.node(n).command('start', {}, 120_000)));
    return t0;
  }

  /** SIGKILL node `n`; returns the time taken just before the signal. */
  kill(n: number): number {
    const p = this.node(n);
    const at = hrNow();
    p.killedAt = at;
    p.child.kill('SIGKILL');
    return at;
  }

  /** SIGSTOP node `n` (a silent failure: its sockets stay open); the time it was sent. */
  pause(n: number): number {
    const at = hrNow();
    this.node(n).child.kill('SIGSTOP');
    return at;
  }

  /** SIGCONT node `n` after pause(). */
  resume(n: number): void {
    this.node(n).child.kill('SIGCONT');
  }

  /** Resolve when `pred` holds (checked on every report), or reject after `timeoutMs` with the state of every node. */
  until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        let ok = false;
        try {
          ok = pred();
        } catch (err) {
          finish();
          reject(err as Error);
          return;
        }
        if (ok) {
          finish();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.describe()}`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        this.events.off('change', check);
      };
      this.events.on('change', check);
      check();
    });
  }

  /** Every node in `ns` has every node in `ns` Up. */
  allUp(ns: number[] = this.running): boolean {
    return ns.every((n) => ns.every((m) => this.node(n).stateOf(m) === 'Up'));
  }

  /** Same master and history head on every node in `ns`. */
  converged(ns: number[] = this.running): boolean {
    const heads = ns.map((n) => this.node(n).lastNumber);
    const masters = ns.map((n) => this.node(n).master);
    return heads.every((h) => h === heads[0]) && masters.every((m) => m !== undefined && m === masters[0]);
  }

  async formed(ns: number[] = this.running, timeoutMs = 30_000): Promise<void> {
    await this.until(() => this.allUp(ns) && this.converged(ns), timeoutMs, `nodes ${ns.join(', ')} Up everywhere with one master`);
  }

  /** A one-line-per-node summary: states, master, head, exits, errors, output. */
  describe(): string {
    const lines: string[] = [];
    for (const p of this.nodes.values()) {
      const states = [...this.nodes.keys()].map((m) => `${m}:${p.stateOf(m) ?? '-'}`).join(' ');
      lines.push(
        `  node ${p.nodeNum} ${p.alive ? 'running' : p.exited ? `exited(${p.exited.signal ?? p.exited.code})` : 'killed'} ` +
          `master=${p.master ?? '-'} head=${p.lastNumber} [${states}]` +
          (p.fatal.length ? ` FATAL: ${p.fatal.join(' | ')}` : '') +
          (p.output.length ? `\n    output: ${p.output.slice(-5).join('\n    ')}` : ''),
      );
    }
    return lines.join('\n');
  }

  /** SIGKILL every process ever started and wait for them to exit. */
  async close(): Promise<void> {
    for (const p of this.all) {
      if (p.exited === undefined) {
        p.killedAt ??= hrNow();
        p.child.kill('SIGKILL');
      }
    }
    await Promise.race([Promise.all(this.all.map((p) => p.exit)), new Promise((r) => setTimeout(r, 5000))]);
  }
}

export type { MemberInfo, Transition };
