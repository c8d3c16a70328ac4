/**
 * Clusters of ClusterNodes as separate OS processes over transport-tcp on
 * 127.0.0.1, each one node-runner.ts, driven and observed over IPC. Used by
 * the process tests (./*.test.ts) and by the CLMS benchmark (bench/clms.ts).
 *
 * The processes are those of the one process launcher of the repository
 * (`ProcessCluster` of @clusterinfra/cli/process, under `startLocalCluster`
 * too): forking, IPC commands, signals, SIGKILL on close and the exit hook
 * are its. What is here reads node-runner.ts's reports into a view per node.
 */
import { fileURLToPath } from 'node:url';
import { freePorts, hrNow, type NodeProcess, ProcessCluster, type RunnerProgram } from '@clusterinfra/cli/process';
import type { DecisionRecord, KeyServiceInfo, MemberInfo, Membership, Transition } from '../../src/index.js';
import type { RunnerConfig } from './node-runner.js';

const RUNNER = fileURLToPath(new URL('./node-runner.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

/** discovery.test.ts reserves ports with it too. */
export { freePorts };

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
  address: string | undefined;
  incarnation: number | undefined;
  readyAt: number | undefined;
  loadedAt: number | undefined;

  constructor(readonly proc: NodeProcess<RunnerMessage>) {}

  get nodeNum(): number {
    return this.proc.node;
  }

  get spawnedAt(): number {
    return this.proc.spawnedAt;
  }

  /** Its last lines of stdout and stderr, for diagnosis. */
  get output(): string[] {
    return this.proc.output;
  }

  get exited(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.proc.exited;
  }

  get killedAt(): number | undefined {
    return this.proc.killedAt;
  }

  get alive(): boolean {
    return this.proc.running;
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
    return this.proc.command<T>(cmd, args, timeoutMs);
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

  /** A report of node-runner.ts (process.ts routes replies itself). */
  report(m: RunnerMessage): void {
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
  }
}

type RunnerMessage =
  | { type: 'loaded'; at: number }
  | { type: 'ready'; address: string; incarnation: number; at: number }
  | { type: 'transition'; transition: Transition; at: number; members: [number, string, number][] }
  | { type: 'master'; master: number | undefined; term: number; at: number }
  | { type: 'cleanup'; node: number; incarnation: number; start: number; end: number }
  | { type: 'decision'; record: DecisionRecord; at: number }
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
  runner?: RunnerProgram;
  /** Runner configuration for every node (e.g. `keyService`). */
  config?: Partial<RunnerConfig>;
}

export class ProcCluster {
  readonly nodes = new Map<number, ProcNode>();
  readonly preset: 'lan' | 'local';
  readonly candidates: number[];
  readonly clusterName: string;
  private ports = new Map<number, number>();
  private readonly procs: ProcessCluster<RunnerMessage>;
  /** Each process's own view (a report of a killed process never reaches its successor's). */
  private readonly views = new WeakMap<NodeProcess<RunnerMessage>, ProcNode>();

  private constructor(private readonly options: ProcClusterOptions) {
    this.preset = options.preset ?? 'lan';
    this.candidates = options.candidates ?? Array.from({ length: Math.min(options.size, 3) }, (_, i) => i + 1);
    this.clusterName = options.clusterName ?? 'proc';
    this.procs = new ProcessCluster<RunnerMessage>({
      runner: options.runner ?? { file: RUNNER, execArgv: ['--import', 'tsx'] },
      cwd: ROOT,
      outputLines: 200,
      describe: () => this.describe(),
      onMessage: (p, m) => this.views.get(p)?.report(m),
    });
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
    const proc = this.procs.spawn(n, config);
    const node = new ProcNode(proc);
    this.views.set(proc, node);
    this.nodes.set(n, node);
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
    return this.procs.kill(n, 'SIGKILL');
  }

  /** SIGSTOP node `n` (a silent failure: its sockets stay open); the time it was sent. */
  pause(n: number): number {
    return this.procs.kill(n, 'SIGSTOP');
  }

  /** SIGCONT node `n` after pause(). */
  resume(n: number): void {
    this.procs.kill(n, 'SIGCONT');
  }

  /** Resolve when `pred` holds (checked on every report), or reject after `timeoutMs` with the state of every node. */
  until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return this.procs.until(pred, timeoutMs, what);
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
  close(): Promise<void> {
    return this.procs.close();
  }
}

export type { MemberInfo, Transition };
