/**
 * Five hosts with real sockets: five network namespaces joined by a bridge
 * (./netns.ts), one ClusterNode over transport-tcp per namespace, each a
 * separate OS process listening on its own address (./netns-runner.ts).
 * Nodes 4 and 5 are cut off (their links moved to another bridge: packets
 * dropped, not refused); the majority {1, 2, 3} must carry on and declare
 * them Down, the minority must lose quorum and commit nothing; after healing,
 * all five must converge on one master and one history, 4 and 5 as new
 * incarnations.
 *
 * Linux and root only: without them (or without CAP_SYS_ADMIN, as in many
 * containers) the test prints why and skips. It makes and deletes its own
 * namespaces, removes those of crashed earlier runs, sends traffic only
 * inside them, and ends by itself (each phase has a ceiling; the children
 * exit when their stdin closes or after a maximum life).
 *
 * Timing is not asserted (a shared, loaded machine): only outcomes, with
 * generous ceilings.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Transition } from '../../src/index.js';
import { cannotRun, NetnsNetwork, removeLeftovers } from './netns.js';
import type { NodeState, RunnerConfig } from './netns-runner.js';

const RUNNER = fileURLToPath(new URL('./netns-runner.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const SIZE = 5;
const PORT = 7000; // every namespace has its own ports
const CANDIDATES = [1, 2, 3];
const MAJORITY = [1, 2, 3];
const MINORITY = [4, 5];
const ALL = [1, 2, 3, 4, 5];

// Ceilings, not measurements (the whole test stays under TEST_TIMEOUT).
const FORM_MS = 40_000;
const CUT_MS = 20_000;
const HEAL_MS = 25_000;
const TEST_TIMEOUT = 100_000;

/** NETNS_VERBOSE=1 prints where every node stands after each phase. */
const verbose = (c: NetnsCluster, phase: string): void => {
  if (process.env.NETNS_VERBOSE) console.log(`--- ${phase}\n${c.describe()}`);
};

/** One node process in its namespace, as the parent sees it. */
class NetnsNode {
  state: NodeState | undefined;
  readonly events: { event: string; state: NodeState }[] = [];
  readonly fatal: string[] = [];
  readonly output: string[] = [];
  exited: string | undefined;
  readonly exit: Promise<void>;
  private nextId = 1;
  private readonly replies = new Map<number, (r: { ok: boolean; result?: unknown; error?: string }) => void>();

  constructor(
    readonly nodeNum: number,
    readonly child: ChildProcess,
    changed: () => void,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{"netns":')) return this.keep(line);
      const m = JSON.parse(line) as { netns: string; event?: string; state?: NodeState; id?: number; ok?: boolean; result?: unknown; error?: string };
      if (m.netns === 'state') {
        this.state = m.state!;
        this.events.push({ event: m.event!, state: m.state! });
      } else if (m.netns === 'reply') {
        this.replies.get(m.id!)?.({ ok: m.ok!, result: m.result, error: m.error });
        this.replies.delete(m.id!);
      } else if (m.netns === 'fatal') this.fatal.push(m.error!);
      changed();
    });
    createInterface({ input: child.stderr! }).on('line', (line) => this.keep(line));
    child.stdin!.on('error', () => {}); // the child may be gone when we write or close
    this.exit = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exited = String(signal ?? code);
        for (const r of this.replies.values()) r({ ok: false, error: 'exited' });
        this.replies.clear();
        changed();
        resolve();
      });
    });
  }

  private keep(line: string): void {
    this.output.push(line);
    if (this.output.length > 50) this.output.shift();
  }

  /** The state of `of` at this node, as of its last report. */
  stateOf(of: number): string | undefined {
    return this.state?.members.find(([n]) => n === of)?.[1];
  }

  incarnationOf(of: number): number | undefined {
    return this.state?.members.find(([n]) => n === of)?.[2];
  }

  command<T>(cmd: 'state' | 'history', timeoutMs = 15_000): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.replies.delete(id);
        reject(new Error(`node ${this.nodeNum}: no reply to ${cmd} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.replies.set(id, (r) => {
        clearTimeout(timer);
        if (r.ok) resolve(r.result as T);
        else reject(new Error(`node ${this.nodeNum}: ${r.error}`));
      });
      this.child.stdin!.write(`${JSON.stringify({ id, cmd })}\n`);
    });
  }
}

/** The five node processes and the waits the test needs. */
class NetnsCluster {
  readonly nodes = new Map<number, NetnsNode>();
  private readonly events = new EventEmitter();
  private readonly secret = randomBytes(32).toString('hex');

  constructor(private readonly net: NetnsNetwork) {
    this.events.setMaxListeners(0);
  }

  start(n: number): NetnsNode {
    const config: RunnerConfig = {
      nodeNum: n,
      clusterName: 'netns',
      host: this.net.addressOf(n),
      port: PORT,
      candidates: CANDIDATES,
      seeds: ALL.filter((m) => m !== n).map((m) => `${this.net.addressOf(m)}:${PORT}`),
      preset: 'lan',
      maxLifeMs: 2 * TEST_TIMEOUT,
    };
    const child = spawn('ip', ['netns', 'exec', this.net.namespaceOf(n), process.execPath, '--import', 'tsx', RUNNER], {
      cwd: ROOT,
      env: { ...process.env, NETNS_RUNNER: JSON.stringify(config), NETNS_SECRET: this.secret },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const node = new NetnsNode(n, child, () => this.events.emit('change'));
    this.nodes.set(n, node);
    return node;
  }

  node(n: number): NetnsNode {
    return this.nodes.get(n)!;
  }

  /** Resolve when `pred` holds (checked on every report), or reject after `timeoutMs` saying where every node stands. */
  until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!pred()) return;
        finish();
        resolve();
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

  /** Every node in `ns` sees every node in `states` in one of `allowed`. */
  see(ns: number[], of: number[], allowed: string[]): boolean {
    return ns.every((n) => of.every((m) => allowed.includes(this.node(n).stateOf(m) ?? '')));
  }

  /** Same master and history head on every node in `ns`. */
  converged(ns: number[]): boolean {
    const states = ns.map((n) => this.node(n).state);
    if (states.some((s) => s === undefined)) return false;
    const [first] = states as NodeState[];
    return states.every((s) => s!.head === first!.head && s!.master !== null && s!.master === first!.master);
  }

  describe(): string {
    return [...this.nodes.values()]
      .map((p) => {
        const s = p.state;
        const view = s ? s.members.map(([n, st, inc]) => `${n}:${st}/${inc}`).join(' ') : '-';
        return (
          `  node ${p.nodeNum}${p.exited ? ` exited(${p.exited})` : ''} master=${s?.master ?? '-'} term=${s?.term ?? '-'} head=${s?.head ?? '-'} ` +
          `quorum=${s?.hasQuorum ?? '-'} [${view}]` +
          (p.fatal.length ? ` FATAL: ${p.fatal.join(' | ')}` : '') +
          (p.output.length ? `\n    output: ${p.output.slice(-5).join('\n    ')}` : '')
        );
      })
      .join('\n');
  }

  /** Close every child's stdin (it exits by itself), then SIGKILL what is left. */
  async close(): Promise<void> {
    for (const p of this.nodes.values()) p.child.stdin?.end();
    const all = Promise.all([...this.nodes.values()].map((p) => p.exit));
    await Promise.race([all, new Promise((r) => setTimeout(r, 3000))]);
    for (const p of this.nodes.values()) if (p.exited === undefined) p.child.kill('SIGKILL');
    await Promise.race([all, new Promise((r) => setTimeout(r, 3000))]);
  }
}

/** M1/M2 on committed histories: numbers go up by one; two nodes agree on every number both hold. */
function checkHistories(histories: Transition[][]): void {
  const byNumber = new Map<number, Transition>();
  for (const h of histories) {
    h.forEach((t, i) => i > 0 && expect(t.number).toBe(h[i - 1]!.number + 1));
    for (const t of h) {
      const seen = byNumber.get(t.number);
      if (seen) expect(t).toEqual(seen);
      else byNumber.set(t.number, t);
    }
  }
}

let reason: string | undefined;
let net: NetnsNetwork | undefined;
let cluster: NetnsCluster | undefined;

async function teardown(): Promise<void> {
  await cluster?.close();
  cluster = undefined;
  await net?.destroy();
}

beforeAll(async () => {
  reason = cannotRun();
  if (reason) {
    console.warn(`netns test skipped: ${reason}`);
    return;
  }
  const removed = await removeLeftovers();
  if (removed.length > 0) console.warn(`netns test: removed namespaces left by crashed runs: ${removed.join(', ')}`);
}, 60_000);

afterAll(teardown, 30_000);

describe('five hosts in network namespaces, over transport-tcp', () => {
  it(
    'a cut-off minority stops deciding while the majority carries on; after healing all five converge',
    async (ctx) => {
      if (reason) {
        ctx.skip(reason);
        return;
      }
      try {
        net = await NetnsNetwork.create(SIZE);
        const c = (cluster = new NetnsCluster(net));
        for (const n of ALL) c.start(n);

        // Formation: five Up everywhere, one master among the candidates, one head.
        await c.until(() => c.see(ALL, ALL, ['Up']) && c.converged(ALL), FORM_MS, 'formation of five');
        verbose(c, 'formed');
        const master = c.node(1).state!.master!;
        expect(CANDIDATES).toContain(master);
        const before = new Map(MINORITY.map((m) => [m, { head: c.node(m).state!.head, incarnation: c.node(1).incarnationOf(m)!, events: c.node(m).events.length }]));

        // Cut 4 and 5 off.
        await net.partition(MINORITY);
        await c.until(
          () =>
            c.see(MAJORITY, MINORITY, ['Down']) &&
            c.converged(MAJORITY) &&
            MAJORITY.every((n) => c.node(n).state!.hasQuorum) &&
            MINORITY.every((m) => c.node(m).state!.hasQuorum === false),
          CUT_MS,
          'the majority to declare 4 and 5 Down and the minority to lose quorum',
        );
        verbose(c, 'cut');
        // The majority carried on: a master among its candidates, decisions committed.
        expect(CANDIDATES).toContain(c.node(1).state!.master);
        expect(c.node(1).state!.head).toBeGreaterThan(before.get(4)!.head);
        // The minority decided nothing: its head stayed, no transition event since the cut (M4).
        for (const m of MINORITY) {
          const b = before.get(m)!;
          expect(c.node(m).state!.head).toBe(b.head);
          expect(c.node(m).events.slice(b.events).filter((e) => e.event === 'transition')).toEqual([]);
        }

        // Heal: all five converge, 4 and 5 back as new incarnations.
        await net.heal();
        await c.until(
          () => c.see(ALL, ALL, ['Up']) && c.converged(ALL) && MINORITY.every((m) => c.node(1).incarnationOf(m) !== before.get(m)!.incarnation),
          HEAL_MS,
          'all five Up everywhere with one master and one head after healing',
        );
        verbose(c, 'healed');
        for (const m of MINORITY) expect(c.node(m).state!.incarnation).toBe(c.node(1).incarnationOf(m));
        checkHistories(await Promise.all(ALL.map((n) => c.node(n).command<Transition[]>('history'))));
        for (const n of ALL) expect(c.node(n).fatal).toEqual([]);
      } finally {
        await teardown();
      }
      // Nothing of this run is left behind.
      expect(await net!.existing()).toEqual([]);
    },
    TEST_TIMEOUT,
  );
});
