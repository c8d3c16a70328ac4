/**
 * The deterministic simulator: K real ClusterNodes on one memory network,
 * each on its own pausable view of one virtual clock (clock.ts), with randomness drawn
 * from the seed only. A seed draws its fault rates, forms the cluster, runs
 * a random schedule of faults and application RPCs, then heals and checks
 * that the cluster converges. Invariants (checker.ts) are checked on every
 * event and every simulated step; the first violation stops the seed.
 *
 * Key services (K1–K5) are part of every seed: keyservices.ts registers
 * them, writes to a model fencing store and checks what it sees. `hooks`
 * below gets each node object as it starts and every step, for workloads
 * of one's own.
 */
import { createHash } from 'node:crypto';
import {
  ClusterNode,
  every,
  type NodeEvent,
  presets,
  SeededRandom,
  seededRandom,
  silentLogger,
  type Logger,
  type LogFn,
  sleep,
  type VoterRule,
} from '@clusterinfra/core';
import { type CanaryName, canaries } from '@clusterinfra/core/testing';
import { createMemoryNetwork, type LinkFaults, memory, type MemoryNetwork } from '@clusterinfra/transport-mem';
import { Checker, SUBSYSTEMS, type Violation } from './checker.js';
import { NodeClock, SimClock } from './clock.js';
import { KEY_SERVICES, KeyServiceWorkload } from './keyservices.js';
import { createWorkload, type Workload, type WorkloadCanary, type WorkloadName } from './workloads/index.js';

/**
 * `full`: 30 s of random faults; `ci`: 12 s (the CI gate's). `huge`: scale,
 * not faults: the cluster forms on a clean network, its master crashes, the
 * others must agree on a new master with the crashed node Down and run
 * their nodedown callbacks (docs/testing.md, Scale profile; meant for
 * `--nodes 1000`).
 */
export type Profile = 'ci' | 'full' | 'huge';

export const PROFILES: readonly Profile[] = ['ci', 'full', 'huge'];

/**
 * Bounds of the `huge` profile, in virtual ms: formation, and agreement
 * after the crash; and each node's `historyLimit` (transitions held in
 * memory before a snapshot of the members; the product's default is 1,000).
 */
export const HUGE = { formMs: 180_000, recoverMs: 120_000, checkEveryMs: 100, historyLimit: 256 } as const;

/** The V8 old-space cap the huge profile's 2 GiB bound is measured with (`--max-old-space-size`). */
export const HUGE_HEAP_LIMIT_MIB = 1536;

export interface SimOptions {
  seed: number;
  nodes: number;
  /** `ci`: a shorter fault phase, for the CI gate. @default 'full' */
  profile?: Profile;
  /** Plant a known bug (test-only): a CLMS canary, or one of the workload's. */
  canary?: CanaryName | WorkloadCanary;
  /**
   * Every node's `historyLimit` (min 16): compaction, snapshots and late
   * joiners from bounded histories under the profile's faults.
   * @default 1,000,000 (every transition kept); the huge profile: HUGE.historyLimit
   */
  historyLimit?: number;
  /** Every node's `voters` (ClusterNodeOptions.voters). @default 'members' */
  voters?: VoterRule;
  /** Run a service workload on every node, with its invariants (workloads/). */
  workload?: WorkloadName;
  /** Lines of trace kept for the report. @default 40 */
  tail?: number;
  /** Called for each node object as it starts and on every step (key services go here). */
  hooks?: SimHooks;
}

export interface SimHooks {
  nodeStarted?(node: ClusterNode, world: World): void;
  step?(world: World): void;
  /** Once, after healing and quiescence, when no invariant failed so far: end-of-run checks. */
  final?(world: World): void;
}

export interface SimResult {
  seed: number;
  nodes: number;
  profile: Profile;
  canary: CanaryName | WorkloadCanary | undefined;
  workload: WorkloadName | undefined;
  /** The workload's own counters (operations done), when one ran. */
  workloadStats: Record<string, number> | undefined;
  ok: boolean;
  violation: Violation | undefined;
  /** SHA-256 over the network trace and the simulator's own event log: equal runs, equal hashes. */
  traceHash: string;
  /** Virtual ms simulated and real ms taken. */
  simMs: number;
  realMs: number;
  /** Timers fired plus network trace entries. */
  events: number;
  committed: number;
  calls: number;
  /** Writes the model store took from key-service hosts, and failovers that completed. */
  keyServiceWrites: number;
  failovers: number;
  generations: number;
  tail: string[];
  replay: string;
  /** Profile `huge`: when the cluster formed and when it agreed again after the crash. */
  milestones: Milestone[];
}

/** A phase of the `huge` profile ended: when (virtual and real ms from the start), open links, and this process's memory then. */
export interface Milestone {
  what: string;
  simMs: number;
  realMs: number;
  links: number;
  rssMiB: number;
  heapMiB: number;
}

interface Slot {
  n: number;
  address: string;
  node: ClusterNode | undefined;
  clock: NodeClock | undefined;
  status: 'running' | 'crashed' | 'left';
  starts: number;
  /** Incarnations this slot ever ran (R2 needs the newest). */
  lastIncarnation: number;
  resumedAt: number;
  appIcs: unknown;
}

interface Call {
  caller: ClusterNode;
  callerNum: number;
  target: number;
  targetIncarnation: number | undefined;
  deadline: number;
  settled: boolean;
}

/** Fault rates of one seed: each seed explores its own corner of the space. */
interface Rates {
  meanActionMs: number;
  weights: Record<Action, number>;
  crashMaster: number;
  fastRestart: number;
  noRestart: number;
  longPause: number;
  slowCallback: number;
  slowHandler: number;
  trafficMs: number;
  /** Faults on every link for the whole fault phase (no loss: see `lossy`). */
  base: LinkFaults;
  /** Link-fault windows may drop frames (0–30 %). Loss breaks the reliable-link contract, so it comes in bounded windows and healing resets every link. */
  lossy: boolean;
}

type Action = 'crash' | 'pause' | 'partition' | 'linkFaults' | 'spike' | 'leave' | 'declareDown' | 'kill';

const ACTIONS: Action[] = ['crash', 'pause', 'partition', 'linkFaults', 'spike', 'leave', 'declareDown', 'kill'];
const TIMING = presets.lan;
const APP = { channel: 'default', subservice: 77 } as const;

export function replayCommand(o: { seed: number; nodes: number; profile?: Profile; canary?: string | undefined; workload?: WorkloadName | undefined; historyLimit?: number | undefined; voters?: VoterRule | undefined }): string {
  return `npm run sim -- --seed ${o.seed} --nodes ${o.nodes}${o.profile === 'ci' || o.profile === 'huge' ? ` --profile ${o.profile}` : ''}${o.workload ? ` --workload ${o.workload}` : ''}${o.canary ? ` --canary ${o.canary}` : ''}${o.historyLimit !== undefined ? ` --history-limit ${o.historyLimit}` : ''}${o.voters ? ` --voters ${o.voters}` : ''}`;
}

export class World {
  readonly clock = new SimClock();
  readonly network: MemoryNetwork;
  readonly checker: Checker;
  readonly slots: Slot[] = [];
  readonly candidates: number[];
  readonly rates: Rates;
  readonly keyServices: KeyServiceWorkload;
  private readonly rng: SeededRandom;
  private readonly sched: SeededRandom;
  private readonly cbRandom: SeededRandom;
  private readonly log: string[] = [];
  private readonly hash = createHash('sha256');
  private readonly calls: Call[] = [];
  private callCount = 0;
  private partitioned = false;
  /** Set when healing starts: fault-undo timers still pending do nothing any more. */
  private healing = false;
  private faulting = false;
  private logging = true;
  /** When the `huge` profile's phases ended (virtual and real ms from the start). */
  readonly milestones: Milestone[] = [];

  constructor(
    readonly seed: number,
    readonly size: number,
    private readonly tailLength: number,
    private readonly hooks: SimHooks = {},
    private readonly profile: Profile = 'full',
    /** Every node's historyLimit when set (SimOptions.historyLimit). */
    private readonly historyLimit?: number,
    /** Every node's voters rule when set (SimOptions.voters). */
    private readonly voters?: VoterRule,
  ) {
    this.rng = new SeededRandom(`sim/${seed}`);
    const params = this.rng.fork('params');
    this.sched = this.rng.fork('schedule');
    this.cbRandom = this.rng.fork('callbacks');
    this.network = createMemoryNetwork({ seed: `sim/${seed}/net`, clock: this.clock, traceLimit: 0 });
    // Candidates: 1 to 5 of the nodes, in a random order of preference.
    const order = shuffle(params, range(size));
    const drawn = 1 + params.int(Math.min(size, 5));
    // At scale, five candidates (or all): the master's crash leaves a quorum.
    this.candidates = order.slice(0, profile === 'huge' ? 5 : drawn);
    this.rates = drawRates(params);
    for (let n = 1; n <= size; n++) {
      this.slots.push({ n, address: `n${n}`, node: undefined, clock: undefined, status: 'crashed', starts: 0, lastIncarnation: -1, resumedAt: -Infinity, appIcs: undefined });
    }
    this.checker = new Checker(
      this.candidates,
      () => this.clock.now(),
      (line) => this.note(line),
      () => this.liveNodes(),
      (n) => this.slot(n).clock?.paused ?? false,
    );
    // A node without quorum stops what it hosts at once; two steps of slack for the sampling.
    this.keyServices = new KeyServiceWorkload(this.rng.fork('keyservices'), size, this.checker, () => this.clock.now(), (line) => this.note(line), 200);
  }

  // ------------------------------------------------------------ helpers

  slot(n: number): Slot {
    return this.slots[n - 1]!;
  }

  *liveNodes(): Generator<ClusterNode> {
    for (const s of this.slots) if (s.status === 'running' && s.node) yield s.node;
  }

  /**
   * Every other node's address; at scale, the candidates' only (as a large
   * deployment configures it: each node probes every seed when it joins, so
   * all-to-all seeds would make a million links at 1,000 nodes).
   */
  private seedsOf(n: number): string[] {
    const seeds = this.profile === 'huge' ? this.candidates.map((c) => this.slot(c)) : this.slots;
    return seeds.filter((x) => x.n !== n).map((x) => x.address);
  }

  private running(): Slot[] {
    return this.slots.filter((s) => s.status === 'running');
  }

  note(line: string): void {
    if (!this.logging) return;
    const entry = `${String(this.clock.now()).padStart(7)} ${line}`;
    this.hash.update(entry);
    this.hash.update('\n');
    this.log.push(entry);
    if (this.log.length > this.tailLength * 4) this.log.splice(0, this.log.length - this.tailLength);
  }

  /** A random source of its own for a workload, drawn from the seed and `label` only (it takes nothing from the simulator's streams). */
  random(label: string): SeededRandom {
    return this.rng.fork(label);
  }

  /** True once the fault phase is over: workloads stop starting new work then. */
  get isHealing(): boolean {
    return this.healing;
  }

  /** True during the fault phase (after formation, before healing): when a workload's own faults may strike. */
  get isFaulting(): boolean {
    return this.faulting && !this.healing;
  }

  private pick<T>(xs: readonly T[]): T | undefined {
    return xs.length === 0 ? undefined : xs[this.sched.int(xs.length)];
  }

  private after(ms: number, fn: () => void): void {
    this.clock.setTimeout(fn, ms);
  }

  // ------------------------------------------------------------ nodes

  startNode(n: number): void {
    const s = this.slot(n);
    const clock = new NodeClock(this.clock);
    const node = new ClusterNode({
      nodeNum: n,
      clusterName: 'sim',
      transport: memory({ network: this.network, address: s.address }),
      candidates: this.candidates,
      seeds: this.seedsOf(n),
      preset: 'lan',
      clock,
      random: seededRandom(`sim/${this.seed}/node${n}/${s.starts}`),
      logger: process.env.SIM_LOG ? simLogger(this.clock, `n${n}`) : silentLogger,
      // Every transition kept, so the checker compares all of them; at scale
      // a bound (HUGE.historyLimit): a thousand nodes each holding its own
      // decoded copy of the formation history (two transitions per node)
      // was the bulk of one process's heap, growing with the square of the
      // size, where a deployment holds one copy per process.
      historyLimit: this.historyLimit ?? (this.profile === 'huge' ? HUGE.historyLimit : 1_000_000),
      ...(this.voters ? { voters: this.voters } : {}),
    });
    this.keyServices.register(node);
    s.starts++;
    s.node = node;
    s.clock = clock;
    s.status = 'running';
    s.appIcs = undefined;
    for (const sub of SUBSYSTEMS) {
      node.registerSubsystem({ name: sub.name, band: sub.band, nodedown: (e) => this.nodedownCallback(node, clock, sub.name, e) });
    }
    node.on('transition', (t) => {
      this.checker.onTransition(node, t);
      if (t.kind === 'state' && (t.to === 'GoingDown' || t.to === 'ShuttingDown') && t.node !== n && node.lastTransition === t.number) this.checkR2(node, t.node, t.incarnation);
    });
    node.on('master', (info) => this.checker.onMaster(node, info));
    node.on('evicted', (info) => this.note(`n${n} evicted (incarnation ${info.incarnation % 100000}), rejoining`));
    void node.start().catch((err: unknown) => {
      if (process.env.SIM_LOG) process.stderr.write(`${this.clock.now()} n${n} SIM start failed: ${(err as Error).message}\n`);
    });
    s.lastIncarnation = node.incarnation;
    this.ensureApp(s);
    this.hooks.nodeStarted?.(node, this);
  }

  private async nodedownCallback(node: ClusterNode, clock: NodeClock, name: string, e: NodeEvent): Promise<void> {
    const observer = `${node.nodeNum}:${node.incarnation}`;
    this.checker.callbackStart(node, name, e.node, e.incarnation);
    const r = this.cbRandom.next();
    const ms = r < this.rates.slowCallback ? 200 + this.cbRandom.int(3000) : this.cbRandom.int(3) * 20;
    if (process.env.SIM_LOG) process.stderr.write(`${this.clock.now()} n${node.nodeNum} SIM callback ${name} for n${e.node} takes ${ms} ms\n`);
    try {
      if (ms > 0) await sleep(clock, ms, e.signal);
    } finally {
      // Aborted (the node closed) counts as finished: runCallbacks goes on to the next one.
      this.checker.callbackEnd(observer, e.node, e.incarnation);
    }
  }

  /** Register the application service on the node's current ICS (a new one after each eviction). */
  private ensureApp(s: Slot): void {
    const node = s.node;
    if (!node || s.status !== 'running') return;
    let ics;
    try {
      ics = node.currentCommunication;
    } catch {
      return;
    }
    if (!ics || s.appIcs === ics) return;
    const clock = s.clock!;
    try {
      ics.registerService({
        ...APP,
        name: 'sim.app',
        handlers: {
          echo: (a) => a,
          slow: async (a, ctx) => {
            await sleep(clock, (a as { ms: number }).ms, ctx.signal);
            return 1;
          },
        },
      });
      s.appIcs = ics;
    } catch {
      /* closing or already there */
    }
    s.lastIncarnation = Math.max(s.lastIncarnation, node.incarnation);
  }

  private crash(s: Slot, why: string): void {
    if (!this.stop(s, why)) return;
    const r = this.sched.next();
    if (r < this.rates.noRestart) return;
    const delay = r < this.rates.noRestart + this.rates.fastRestart ? 0 : 200 + this.sched.int(6000);
    this.after(delay, () => this.restart(s));
  }

  /** Crash the node in `s` (nothing drawn: the caller decides about a restart); false when it was not running. */
  private stop(s: Slot, why: string): boolean {
    if (s.status !== 'running' || !s.node) return false;
    this.note(`crash n${s.n}${why}`);
    this.network.crash(s.address);
    s.clock!.kill();
    this.keyServices.forget(s.node);
    void s.node.close().catch(() => {});
    s.status = 'crashed';
    return true;
  }

  /**
   * A workload's own fault (a schedule of its own, e.g. killing a lock holder and sparing its
   * master): crash node `n` now and restart it `restartMs` later. Nothing is drawn from the
   * simulator's streams, so a seed that never calls it keeps its trace. Ignored while healing.
   */
  crashNode(n: number, why: string, restartMs: number): void {
    const s = this.slot(n);
    if (this.healing || !this.stop(s, why)) return;
    this.after(restartMs, () => {
      if (!this.healing) this.restart(s);
    });
  }

  private restart(s: Slot): void {
    if (s.status === 'running') return;
    // A node that stopped while paused left its address paused on the network.
    if (s.clock?.paused) this.network.resume(s.address);
    this.startNode(s.n);
    this.note(`restart n${s.n} as incarnation ${s.node!.incarnation % 100000}`);
  }

  private pause(s: Slot, ms: number): void {
    if (s.status !== 'running' || s.clock!.paused) return;
    this.note(`pause n${s.n} for ${ms} ms`);
    this.network.pause(s.address);
    s.clock!.pause();
    const clock = s.clock!;
    this.after(ms, () => this.resume(s, clock));
  }

  private resume(s: Slot, clock: NodeClock): void {
    if (s.clock !== clock || !clock.paused) return;
    this.note(`resume n${s.n}`);
    this.network.resume(s.address);
    clock.resume();
    s.resumedAt = this.clock.now();
  }

  // ------------------------------------------------------------ faults

  private act(): void {
    const action = weighted(this.sched, this.rates.weights);
    const run = this.running();
    const any = this.pick(run);
    switch (action) {
      case 'crash': {
        const master = run.find((s) => s.node!.isMaster);
        const victim = master && this.sched.next() < this.rates.crashMaster ? master : any;
        if (victim) this.crash(victim, victim === master ? ' (master)' : '');
        break;
      }
      case 'pause': {
        if (!any) break;
        const long = this.sched.next() < this.rates.longPause;
        const ms = long ? TIMING.failureTimeoutMs * 2 + this.sched.int(TIMING.failureTimeoutMs * 8) : 20 + this.sched.int(TIMING.failureTimeoutMs / 2);
        this.pause(any, ms);
        break;
      }
      case 'partition':
        if (!this.partitioned) this.partition();
        break;
      case 'linkFaults': {
        const a = this.pick(this.slots)!;
        const b = this.pick(this.slots.filter((x) => x !== a))!;
        if (!b) break;
        const f: LinkFaults = {
          latencyMs: this.sched.int(100),
          jitterMs: this.sched.int(50),
          ...(this.rates.lossy ? { dropRate: this.sched.next() * 0.3 } : {}),
          duplicateRate: this.sched.next() * 0.5,
          reorderRate: this.sched.next() * 0.3,
        };
        const both = this.sched.next() < 0.5;
        this.note(`faults ${a.address}${both ? '<->' : '->'}${b.address} ${JSON.stringify(f)}`);
        this.network.setLinkFaults(a.address, b.address, f, { bothWays: both });
        this.after(500 + this.sched.int(5000), () => {
          if (this.healing) return;
          this.network.setLinkFaults(a.address, b.address, null, { bothWays: both });
          this.note(`faults ${a.address}${both ? '<->' : '->'}${b.address} cleared`);
        });
        break;
      }
      case 'spike': {
        const latencyMs = 100 + this.sched.int(1500);
        this.note(`latency spike ${latencyMs} ms`);
        this.network.setDefaultFaults({ ...this.rates.base, latencyMs });
        this.after(200 + this.sched.int(3000), () => {
          if (this.healing) return;
          this.network.setDefaultFaults(this.rates.base);
          this.note('latency spike over');
        });
        break;
      }
      case 'leave': {
        if (!any) break;
        this.note(`leave n${any.n}`);
        const node = any.node!;
        void node.leave().then(
          () => this.left(any, node, true),
          () => this.left(any, node, false),
        );
        break;
      }
      case 'declareDown': {
        const target = this.pick(this.slots)!;
        if (!any) break;
        this.note(`n${any.n} declares n${target.n} down`);
        try {
          void any.node!.declareDown(target.n).catch(() => {});
        } catch {
          /* not a member in its view */
        }
        break;
      }
      case 'kill': {
        if (!any) break;
        this.note(`kill links of n${any.n}`);
        this.network.killLinks(any.address);
        break;
      }
    }
  }

  private left(s: Slot, node: ClusterNode, ok: boolean): void {
    if (s.node !== node || s.status !== 'running') return;
    this.note(ok ? `n${s.n} left` : `n${s.n} leave failed: the process exits`);
    // A leave that failed (no master committed it; the node is still a
    // member and running) ends the process all the same, at once, as an
    // application that exits after a failed leave does.
    if (!ok) this.network.crash(s.address);
    void node.close().catch(() => {});
    s.clock!.kill();
    this.keyServices.forget(node);
    s.status = 'left';
    if (this.healing) this.restart(s);
    else if (this.sched.next() < 0.7) this.after(100 + this.sched.int(4000), () => this.restart(s));
  }

  /**
   * A partition blackholes the frames in flight on links that stay open; a
   * reliable link (TCP) never loses frames and carries on, it delivers them
   * late or resets. So links that crossed the cut are reset when it heals.
   */
  private resetCutLinks(): void {
    for (const s of this.slots) this.network.killLinks(s.address);
  }

  private partition(): void {
    const kind = this.sched.int(6);
    const addrs = this.slots.map((s) => s.address);
    const sides = (): [string[], string[]] => {
      const mixed = shuffle(this.sched, addrs);
      const k = 1 + this.sched.int(Math.max(1, Math.floor(addrs.length / 2)));
      return [mixed.slice(0, k), mixed.slice(k)];
    };
    let what = '';
    if (kind === 0) {
      const a = this.pick(addrs)!;
      this.network.isolate(a);
      what = `isolate ${a}`;
    } else if (kind === 1 || kind === 2) {
      const [a, b] = sides();
      for (const x of a) for (const y of b) this.network.partition(x, y);
      what = `split [${a.join(' ')}] | [${b.join(' ')}]`;
    } else if (kind === 3) {
      const [a, b] = sides();
      for (const x of a) for (const y of b) this.network.partition(x, y, { oneWay: true });
      what = `one-way [${a.join(' ')}] -/-> [${b.join(' ')}]`;
    } else if (kind === 4) {
      const [a, b] = sides();
      const bridge = b.pop();
      for (const x of a) for (const y of b) this.network.partition(x, y);
      what = `bridge ${bridge} between [${a.join(' ')}] and [${b.join(' ')}]`;
    } else {
      const a = this.pick(addrs)!;
      const b = this.pick(addrs.filter((x) => x !== a))!;
      const oneWay = this.sched.next() < 0.5;
      if (b) this.network.partition(a, b, { oneWay });
      what = `cut ${a} ${oneWay ? '-/->' : '-/-'} ${b}`;
    }
    this.partitioned = true;
    this.note(`partition: ${what}`);
    this.after(300 + this.sched.int(TIMING.failureTimeoutMs * 8), () => {
      if (this.healing) return;
      this.network.heal();
      this.resetCutLinks();
      this.partitioned = false;
      this.note('partition healed');
    });
  }

  // ------------------------------------------------------------ application traffic (R1, R2)

  private traffic(): void {
    for (const s of this.running()) this.ensureApp(s);
    const caller = this.pick(this.running());
    if (caller && this.sched.next() < 0.3) return this.keyServiceCall(caller);
    const target = this.pick(this.slots);
    if (!caller || !target || caller === target) return;
    const node = caller.node!;
    const slow = this.sched.next() < this.rates.slowHandler;
    const timeoutMs = 100 + this.sched.int(5000);
    const ms = slow ? this.sched.int(10_000) : 0;
    let ics;
    try {
      ics = node.currentCommunication;
    } catch {
      return;
    }
    const call: Call = {
      caller: node,
      callerNum: caller.n,
      target: target.n,
      // Where ICS sends it: the incarnation it talks to. Without a link yet,
      // unknown (whichever incarnation answers next gets it): R2 skips it.
      targetIncarnation: ics.peerIncarnation(target.n),
      deadline: this.clock.now() + timeoutMs,
      settled: false,
    };
    this.calls.push(call);
    this.callCount++;
    const settle = (): void => {
      call.settled = true;
    };
    ics.call(target.n, APP, slow ? 'slow' : 'echo', slow ? { ms } : { i: this.callCount }, { timeoutMs }).then(settle, settle);
  }

  /** A call to a key service by name, from any node: it reaches the current host, through failovers (R1 watches it settle). */
  private keyServiceCall(caller: Slot): void {
    const node = caller.node!;
    const name = this.pick(KEY_SERVICES)!;
    const method = this.sched.next() < 0.5 ? 'write' : 'read';
    const timeoutMs = 100 + this.sched.int(5000);
    const call: Call = { caller: node, callerNum: caller.n, target: 0, targetIncarnation: undefined, deadline: this.clock.now() + timeoutMs, settled: false };
    this.calls.push(call);
    this.callCount++;
    const settle = (): void => {
      call.settled = true;
    };
    node.callKeyService(name, method, {}, { timeoutMs }).then(settle, settle);
  }

  /** R2: calls from `node` to (x, inc) settle as soon as x is down there. */
  private checkR2(node: ClusterNode, x: number, inc: number): void {
    const waiting = this.calls.filter((c) => !c.settled && c.caller === node && c.target === x && c.targetIncarnation === inc);
    if (waiting.length === 0) return;
    setImmediate(() => {
      const late = waiting.filter((c) => !c.settled);
      if (late.length > 0 && !this.checker.violation && this.logging) {
        this.checker.fail('R2', `${late.length} call(s) from node ${node.nodeNum} to node ${x} (incarnation ${inc}) still pending after node ${x} went down there`);
      }
    });
  }

  /** R1: every call from a running, unpaused caller settles by its deadline (plus scheduling slack). */
  private checkCalls(final = false): void {
    const now = this.clock.now();
    const slack = 1000;
    let keep = 0;
    for (const c of this.calls) {
      if (c.settled) continue;
      const s = this.slot(c.callerNum);
      const alive = s.node === c.caller && s.status === 'running';
      if (!alive) continue; // a crashed caller's calls died with it
      if (!s.clock!.paused && now > c.deadline + slack && now > s.resumedAt + slack) {
        this.checker.fail('R1', `a call from node ${c.callerNum} to node ${c.target} is still pending ${now - c.deadline} ms after its deadline${final ? ' (at quiescence)' : ''}`);
        return;
      }
      this.calls[keep++] = c;
    }
    this.calls.length = keep;
  }

  // ------------------------------------------------------------ the run

  private stepChecks(): void {
    this.checker.step();
    this.checkCalls();
    this.keyServices.step(this.running().map((s) => ({ node: s.node!, paused: s.clock!.paused, resumedAt: s.resumedAt })));
    this.hooks.step?.(this);
  }

  /**
   * `converged().ok`, asked after every timer while the simulator waits for
   * convergence: the usual answer (masters or heads still differ) is found
   * without building the report.
   */
  private isConverged(): boolean {
    let master: number | undefined;
    let head = -1;
    for (const s of this.slots) {
      if (s.status !== 'running') continue;
      const n = s.node!;
      if (head === -1) {
        master = n.master;
        head = n.lastTransition;
        if (master === undefined) return false;
      } else if (n.master !== master || n.lastTransition !== head) return false;
    }
    return this.converged().ok;
  }

  private converged(): { ok: boolean; why: 'L1' | 'L3'; detail: string } {
    const live = this.running().map((s) => s.node!);
    if (live.length === 0) return { ok: true, why: 'L1', detail: '' };
    const masters = new Set(live.map((n) => n.master));
    const heads = new Set(live.map((n) => n.lastTransition));
    const master = live[0]!.master;
    if (masters.size !== 1 || master === undefined || heads.size !== 1) {
      return { ok: false, why: 'L1', detail: `masters ${live.map((n) => `n${n.nodeNum}:${n.master ?? '-'}`).join(' ')}; heads ${live.map((n) => n.lastTransition).join(' ')}` };
    }
    const m = live.find((n) => n.nodeNum === master);
    if (!m) return { ok: false, why: 'L1', detail: `master ${master} is not running` };
    const out = live.filter((n) => {
      const info = m.info(n.nodeNum);
      return info?.state !== 'Up' || info.incarnation !== n.incarnation;
    });
    if (out.length > 0) return { ok: false, why: 'L3', detail: `not Up as their current incarnation at master ${master}: ${out.map((n) => `n${n.nodeNum}(${m.info(n.nodeNum)?.state ?? 'unknown'})`).join(' ')}` };
    const ks = this.keyServices.unsettled(m, live);
    if (ks !== undefined) return { ok: false, why: 'L1', detail: `key services: ${ks}` };
    return { ok: true, why: 'L1', detail: '' };
  }

  async run(profile: Profile = this.profile): Promise<void> {
    if (profile === 'huge') return this.runHuge();
    const faultMs = profile === 'ci' ? 12_000 : 30_000;
    this.note(`seed ${this.seed}: ${this.size} nodes, candidates ${this.candidates.join(',')}, rates ${JSON.stringify(this.rates)}`);
    this.network.setDefaultFaults(this.rates.base);
    const checks = every(this.clock, 100, () => this.stepChecks());
    for (let n = 1; n <= this.size; n++) this.startNode(n);
    // Formation.
    const formed = await this.clock.advanceUntil(() => this.checker.violation !== undefined || this.isConverged(), 30_000);
    if (!formed) {
      const c = this.converged();
      this.checker.fail(c.why, `the cluster did not form within 30 s: ${c.detail}`);
    }
    this.note('formed');
    this.faulting = true;
    // Fault phase.
    const end = this.clock.now() + faultMs;
    let nextTraffic = this.clock.now();
    let nextAction = this.clock.now() + exp(this.sched, this.rates.meanActionMs);
    while (this.clock.now() < end && !this.checker.violation) {
      const next = Math.min(nextTraffic, nextAction, end);
      await this.clock.advance(Math.max(0, next - this.clock.now()));
      if (this.checker.violation || this.clock.now() >= end) break;
      if (this.clock.now() >= nextAction) {
        this.act();
        nextAction = this.clock.now() + exp(this.sched, this.rates.meanActionMs);
      }
      if (this.clock.now() >= nextTraffic) {
        this.traffic();
        nextTraffic = this.clock.now() + exp(this.sched, this.rates.trafficMs);
      }
      this.stepChecks();
    }
    if (!this.checker.violation) await this.heal();
    checks.cancel();
    this.shutdown();
  }

  /**
   * The scale profile: form on a clean network, crash the master (no
   * restart), and require that the others converge on a new master with the
   * crashed incarnation Down, then quiescence (R1, C2). Convergence is
   * looked at once per `HUGE.checkEveryMs` of virtual time, not after every
   * timer: at 1,000 nodes one look reads every node.
   */
  private async runHuge(): Promise<void> {
    this.note(`seed ${this.seed}: ${this.size} nodes (profile huge), candidates ${this.candidates.join(',')}`);
    this.network.setDefaultFaults({ latencyMs: 1 });
    const checks = every(this.clock, 100, () => this.stepChecks());
    const t0 = performance.now();
    for (let n = 1; n <= this.size; n++) this.startNode(n);
    const formedAt = await this.settle(HUGE.formMs, 'the cluster did not form');
    if (formedAt !== undefined) {
      this.note(`formed in ${formedAt} ms`);
      this.milestone('formed', t0);
      const master = this.running().find((s) => s.node!.isMaster)!;
      const victim = { n: master.n, incarnation: master.node!.incarnation };
      this.note(`crash n${master.n} (master)`);
      this.network.crash(master.address);
      master.clock!.kill();
      this.keyServices.forget(master.node!);
      void master.node!.close().catch(() => {});
      master.status = 'crashed';
      const recovered = await this.settle(HUGE.recoverMs, `no agreement after the master (node ${victim.n}) crashed`, () => {
        const m = this.running().find((s) => s.node!.isMaster)?.node;
        const info = m?.info(victim.n);
        return info !== undefined && info.incarnation === victim.incarnation && info.state === 'Down';
      });
      if (recovered !== undefined) {
        this.note(`converged ${recovered} ms after the crash, node ${victim.n} Down`);
        this.milestone('recovered', t0);
        await this.clock.advance(11_000);
        this.checkCalls(true);
        if (!this.checker.violation) this.checker.checkCleanupsDone();
      }
    }
    checks.cancel();
    // Every process stops at once (a thousand goodbyes would only cost time and memory).
    for (const s of this.slots) s.clock?.kill();
    this.network.destroy();
  }

  private milestone(what: string, t0: number): void {
    const m = process.memoryUsage();
    const mib = (x: number): number => Math.round(x / 2 ** 20);
    this.milestones.push({ what, simMs: this.clock.now(), realMs: performance.now() - t0, links: this.network.stats().openConnections, rssMiB: mib(m.rss), heapMiB: mib(m.heapUsed) });
  }

  /** Advance until converged (and `more()`) or a violation, looking every HUGE.checkEveryMs; ms taken, or undefined after failing L1/L3. */
  private async settle(bound: number, what: string, more: () => boolean = () => true): Promise<number | undefined> {
    const t0 = this.clock.now();
    let nextLook = t0;
    const done = (): boolean => {
      if (this.checker.violation) return true;
      if (this.clock.now() < nextLook) return false;
      nextLook = this.clock.now() + HUGE.checkEveryMs;
      return this.isConverged() && more();
    };
    const ok = await this.clock.advanceUntil(done, bound);
    if (this.checker.violation) return undefined;
    if (!ok || !this.converged().ok || !more()) {
      const c = this.converged();
      this.checker.fail(c.why, `${what} within ${bound} ms: ${c.ok ? 'the crashed node is not Down at the master' : c.detail}`);
      return undefined;
    }
    return this.clock.now() - t0;
  }

  /** Heal everything, restart every node that is gone, and require convergence (L1, L3), then quiescence (R1, R7, C2). */
  private async heal(): Promise<void> {
    this.healing = true;
    this.note('healing: network healed, faults cleared, everyone resumed and restarted');
    this.network.heal();
    this.network.clearFaults();
    // Lossy links and links across a partition (a broken reliable-link
    // contract) end in a reset, as a real connection would.
    if (this.rates.lossy || this.partitioned) this.resetCutLinks();
    for (const s of this.slots) {
      if (s.status === 'running' && s.clock!.paused) this.resume(s, s.clock!);
      if (s.status !== 'running') this.restart(s);
    }
    const bound = 60_000;
    const t0 = this.clock.now();
    const ok = await this.clock.advanceUntil(() => this.checker.violation !== undefined || this.isConverged(), bound);
    if (this.checker.violation) return;
    if (!ok) {
      const c = this.converged();
      this.checker.fail(c.why, `no convergence ${bound} ms after healing: ${c.detail}`);
      return;
    }
    this.note(`converged after ${this.clock.now() - t0} ms`);
    // Quiescence: every call settles, pending tables empty (R7), cleanups ran (C2).
    await this.clock.advance(11_000);
    this.checkCalls(true);
    if (this.checker.violation) return;
    const minPending = new Map<number, number>();
    for (let i = 0; i < 5; i++) {
      await this.clock.advance(TIMING.heartbeatIntervalMs * 1.37);
      for (const n of this.liveNodes()) {
        const p = n.currentCommunication.stats().pendingCalls;
        minPending.set(n.nodeNum, Math.min(minPending.get(n.nodeNum) ?? Infinity, p));
      }
    }
    for (const [n, p] of minPending) {
      if (p > 0) {
        if (process.env.SIM_LOG) {
          const ics = [...this.liveNodes()].find((x) => x.nodeNum === n)!.currentCommunication as unknown as { peers?: Map<number, { incarnation?: number; pending: Map<number, { method: string; service: number; sent: boolean; startedAt: number; settled: boolean; timer?: unknown }> }> };
          for (const [pn, peer] of ics.peers ?? []) for (const [id, c] of peer.pending) process.stderr.write(`PENDING n${n}->n${pn}/${peer.incarnation} id ${id} ${c.service} ${c.method} sent=${c.sent} settled=${c.settled} started ${c.startedAt}\n`);
        }
        this.checker.fail('R7', `node ${n} keeps ${p} pending call(s) at quiescence`);
        return;
      }
    }
    this.checker.checkCleanupsDone();
    if (!this.checker.violation) this.hooks.final?.(this);
    if (!this.checker.violation && !this.converged().ok) {
      // A request made during the fault phase may land late (declareDown
      // retries its master for ten failure timeouts): the cluster must
      // converge again, within the same bound.
      this.note('fell apart after converging: waiting for it to converge again');
      const again = await this.clock.advanceUntil(() => this.checker.violation !== undefined || this.isConverged(), bound);
      const c = this.converged();
      if (!again && !this.checker.violation) this.checker.fail(c.why, `converged, then fell apart with the network stable, and did not converge again within ${bound} ms: ${c.detail}`);
    }
  }

  private shutdown(): void {
    for (const s of this.slots) {
      s.clock?.kill();
      if (s.node) void s.node.close().catch(() => {});
    }
    this.network.destroy();
  }

  result(profile: Profile, canary: CanaryName | WorkloadCanary | undefined, realMs: number, workload?: Workload): SimResult {
    const v = this.checker.violation;
    // The tail ends at the violation.
    let tail = this.log;
    if (v) {
      const i = tail.findIndex((l) => l.includes('VIOLATION'));
      if (i >= 0) tail = tail.slice(0, i + 1);
    }
    tail = tail.slice(-this.tailLength);
    const h = createHash('sha256');
    h.update(this.hash.copy().digest('hex'));
    h.update(this.network.traceHash());
    return {
      seed: this.seed,
      nodes: this.size,
      profile,
      canary,
      workload: workload?.name,
      workloadStats: workload?.stats(),
      ok: !v,
      violation: v,
      traceHash: h.digest('hex'),
      simMs: this.clock.now(),
      realMs,
      events: this.clock.fired + this.network.traceLength,
      committed: this.checker.committed,
      calls: this.callCount,
      keyServiceWrites: this.keyServices.writes,
      failovers: this.keyServices.failovers,
      generations: this.checker.generations,
      tail,
      milestones: this.milestones,
      replay: replayCommand({ seed: this.seed, nodes: this.size, profile, canary, workload: workload?.name, historyLimit: this.historyLimit, voters: this.voters }),
    };
  }

  /** Stop writing the log once a violation is recorded (the tail ends there). */
  freezeLog(): void {
    this.logging = false;
  }
}

export async function runSeed(options: SimOptions): Promise<SimResult> {
  const profile = options.profile ?? 'full';
  const t0 = performance.now();
  const workload = options.workload ? createWorkload(options.workload) : undefined;
  const core = options.canary !== undefined && options.canary in canaries ? (options.canary as CanaryName) : undefined;
  if (options.canary !== undefined && !core) {
    if (!workload?.canaries.includes(options.canary as WorkloadCanary)) throw new TypeError(`unknown canary ${options.canary}${workload ? ` (workload ${workload.name})` : ''}`);
    workload.plant(options.canary as WorkloadCanary, true);
  }
  if (core) canaries[core] = true;
  // Errors are values here (timeouts, refusals by the thousand): their stack
  // traces cost a tenth of a run and no check reads them.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    const world = new World(options.seed, options.nodes, options.tail ?? 40, workload ? bothHooks(workload.hooks, options.hooks) : options.hooks, profile, options.historyLimit, options.voters);
    await world.run(profile);
    await workload?.close();
    return world.result(profile, options.canary, performance.now() - t0, workload);
  } finally {
    if (core) canaries[core] = false;
    if (options.canary !== undefined && !core) workload?.plant(options.canary as WorkloadCanary, false);
    Error.stackTraceLimit = stackTraceLimit;
  }
}

/** The workload's hooks, then the caller's. */
function bothHooks(a: SimHooks, b: SimHooks | undefined): SimHooks {
  if (!b) return a;
  return {
    nodeStarted: (node, w) => {
      a.nodeStarted?.(node, w);
      b.nodeStarted?.(node, w);
    },
    step: (w) => {
      a.step?.(w);
      b.step?.(w);
    },
    final: (w) => {
      a.final?.(w);
      b.final?.(w);
    },
  };
}

// ------------------------------------------------------------ random helpers

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}

function shuffle<T>(r: SeededRandom, xs: readonly T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = r.int(i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function exp(r: SeededRandom, mean: number): number {
  return Math.max(1, Math.round(-Math.log(1 - r.next()) * mean));
}

function weighted<K extends string>(r: SeededRandom, w: Record<K, number>): K {
  const keys = Object.keys(w) as K[];
  let total = 0;
  for (const k of keys) total += w[k];
  let x = r.next() * total;
  for (const k of keys) {
    x -= w[k];
    if (x < 0) return k;
  }
  return keys[keys.length - 1]!;
}

function drawRates(r: SeededRandom): Rates {
  const weights = {} as Record<Action, number>;
  for (const a of ACTIONS) weights[a] = r.next() < 0.2 ? 0 : r.next();
  weights.crash += 0.1;
  const faulty = r.next() < 0.5;
  const lossy = r.next() < 0.3;
  return {
    meanActionMs: 200 + r.int(2000),
    weights,
    crashMaster: r.next(),
    fastRestart: r.next() * 0.5,
    noRestart: r.next() * 0.3,
    longPause: r.next(),
    slowCallback: r.next() * 0.5,
    slowHandler: r.next() * 0.5,
    trafficMs: 20 + r.int(500),
    base: faulty
      ? {
          latencyMs: r.int(100),
          jitterMs: r.int(30),
          duplicateRate: r.next() < 0.5 ? r.next() * 0.5 : 0,
          reorderRate: r.next() < 0.5 ? r.next() * 0.3 : 0,
        }
      : { latencyMs: r.int(5) },
    lossy,
  };
}

/** Debugging aid (SIM_LOG=1): every node's log lines on stderr, stamped with simulated time. */
function simLogger(clock: { now(): number }, name: string, bindings: Record<string, unknown> = {}): Logger {
  const at =
    (level: string): LogFn =>
    (first: unknown, ...rest: unknown[]) => {
      const [obj, msg] = typeof first === 'string' ? [{}, first] : [first, String(rest[0] ?? '')];
      process.stderr.write(`${clock.now().toFixed(1)} ${name} ${level} ${msg} ${JSON.stringify({ ...bindings, ...(obj as object) })}\n`);
    };
  return {
    fatal: at('FATAL'),
    error: at('ERROR'),
    warn: at('WARN'),
    info: at('INFO'),
    debug: at('DEBUG'),
    trace: at('TRACE'),
    child: (more) => simLogger(clock, name, { ...bindings, ...more }),
  };
}
