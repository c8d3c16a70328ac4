/**
 * CLMS (membership) benchmark: failure detection, cleanup, failover and
 * formation with every node a separate OS process over transport-tcp on
 * 127.0.0.1, formation of 256 in-process nodes on transport-mem (real
 * clock), and ICS frames per membership transition. See bench/README.md.
 *
 * Called by run.ts (`npm run bench`, or alone: `npm run bench -- --only=clms`),
 * which writes the rows into bench/results.json with the ICS rows.
 * `npx tsx bench/clms.ts` runs it alone and prints the rows as JSON.
 *
 * Times are taken in each process as performance.timeOrigin + performance.now()
 * (one clock for every process of the machine), from just before the
 * parent's kill('SIGKILL') to the moment the node applied the transition.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { ClusterNode, presets, silentLogger, type Timing, VirtualClock, type VoterRule } from '../packages/core/src/index.js';
import { ProcCluster } from '../packages/core/test/process/cluster.js';
import { createMemoryNetwork, memory, type MemoryNetwork } from '../packages/transport-mem/src/index.js';
import { bundleLikePublished, median } from './common.js';

export interface ClmsRow {
  suite: 'clms';
  name: string;
  unit: string;
  better: 'lower' | 'higher';
  /** null: not measured (the scenario did not complete; see the notes). */
  value: number | null;
  baseline: number;
  ratio: number | null;
  /** How it was measured when that matters for reading it (e.g. the machine's load). */
  note?: string;
}

export interface ClmsResult {
  rows: ClmsRow[];
  /** What the rows do not say: per-repetition values, what did not complete. */
  notes: string[];
}

type Preset = 'lan' | 'local';

const hr = (): number => performance.timeOrigin + performance.now();
const r1 = (v: number): number => Math.round(v * 10) / 10;
const log = (s: string): void => void process.stderr.write(s + '\n');
const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const RUNNER_BUNDLE = `${BENCH_DIR}.build/clms-runner.mjs`;

/**
 * The node runner bundled like the published build (esbuild, ESM, no tsx):
 * 32 processes loading the sources under tsx would take ~25 s of CPU on
 * two cores before the first one listens.
 */
export async function buildRunner(): Promise<{ file: string; execArgv: string[] }> {
  await bundleLikePublished(fileURLToPath(new URL('../packages/core/test/process/node-runner.ts', import.meta.url)), RUNNER_BUNDLE);
  return { file: RUNNER_BUNDLE, execArgv: [] };
}

function row(name: string, unit: string, value: number | null, baseline: number, better: 'lower' | 'higher' = 'lower'): ClmsRow {
  const v = value === null || !Number.isFinite(value) ? null : Math.round(value * 1000) / 1000;
  return { suite: 'clms', name, unit, better, value: v, baseline: Math.round(baseline * 1000) / 1000, ratio: v === null ? null : Math.round((v / baseline) * 1000) / 1000 };
}

// ------------------------------------------------------------------ OS processes: kill, cleanup, failover

interface KillFigures {
  detect: number[];
  /** Per kill, from SIGKILL: the master's first suspicion / its verification / its commit of GoingDown / the last survivor applying it. */
  phases: string[];
  callbacks: number[];
  failover: number[];
  /** SIGSTOP -> GoingDown at the last survivor. */
  silent: number[];
  /** Per SIGSTOP of half the failure timeout: true when nobody declared the node down. */
  shortPauses: boolean[];
  failures: string[];
}

/**
 * `size` processes; `reps` times SIGKILL a non-master (then restart it on its
 * address), then `failoverReps` times SIGKILL the master (then restart it),
 * then `stopReps` times SIGSTOP a non-master briefly and then for good.
 */
async function killBench(runner: { file: string; execArgv: string[] }, size: number, preset: Preset, reps: number, failoverReps: number, stopReps: number): Promise<KillFigures> {
  const f: KillFigures = { detect: [], phases: [], callbacks: [], failover: [], silent: [], shortPauses: [], failures: [] };
  const c = await ProcCluster.start({ size, preset, runner, seeds: 'candidates', spare: 0, clusterName: `bench-${size}-${preset}` });
  const all = Array.from({ length: size }, (_, i) => i + 1);
  try {
    const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 1000));
    await c.formed(all, 60_000);
    await settle();
    // The i-th victim: a non-master, and not a candidate when there are others (rotating over them).
    const pick = (i: number): { master: number; victim: number; survivors: number[]; incarnation: number | undefined } => {
      const master = c.node(1).master!;
      const pool = all.filter((n) => n !== master && (size <= 3 || !c.candidates.includes(n)));
      const victim = pool[i % pool.length]!;
      return { master, victim, survivors: all.filter((n) => n !== victim), incarnation: c.node(master).incarnationOf(victim) };
    };
    for (let i = 0; i < reps; i++) {
      const { master, victim, survivors, incarnation } = pick(i);
      const killedAt = c.kill(victim);
      try {
        await c.until(() => survivors.every((n) => c.node(n).stateOf(victim) === 'Down'), 15_000, `node ${victim} Down at every survivor`);
      } catch (err) {
        f.failures.push(`${size}p ${preset}: kill ${victim}: ${(err as Error).message.split('\n')[0]}`);
        log(`  ${(err as Error).message}`);
        return f;
      }
      const seen = survivors.map((n) => c.node(n).seen((t) => t.node === victim && t.incarnation === incarnation && t.to === 'GoingDown'));
      if (seen.some((s) => s === undefined)) {
        f.failures.push(`${size}p ${preset}: kill ${victim}: a survivor never applied GoingDown (${survivors.filter((_, j) => !seen[j]).join(', ')})`);
      } else {
        const last = Math.max(...seen.map((s) => s!.at)) - killedAt;
        f.detect.push(last);
        const decided = survivors.flatMap((n) => c.node(n).decisions).find((d) => d.value.kind === 'down' && d.value.node === victim && d.at >= killedAt);
        if (decided) {
          const suspected = decided.at - (decided.value.tookMs ?? 0) - killedAt;
          f.phases.push(`${r1(suspected)}/${r1(suspected + (decided.value.timings?.verified ?? 0))}/${r1(decided.at - killedAt)}/${r1(last)}`);
        }
        const committed = c.node(c.node(survivors[0]!).master ?? master).seen((t) => t.node === victim && t.incarnation === incarnation && t.to === 'GoingDown');
        const ends = survivors.map((n) => c.node(n).cleanups.find((x) => x.node === victim && x.incarnation === incarnation)?.end);
        if (committed && ends.every((e) => e !== undefined)) f.callbacks.push(Math.max(...(ends as number[])) - committed.at);
      }
      c.spawn(victim);
      await c.formed(all, 30_000);
      // Measure a cluster at rest: the rejoined process warms up (JIT, first
      // GCs) for a moment after it is Up everywhere.
      await settle();
    }
    for (let i = 0; i < failoverReps; i++) {
      const old = c.node(1).master!;
      const survivors = all.filter((n) => n !== old);
      const oldTerm = c.node(old).masters.at(-1)?.value.term ?? 0;
      const killedAt = c.kill(old);
      const taken = (n: number) => c.node(n).seen((t) => t.kind === 'master' && t.term > oldTerm && t.node !== old);
      try {
        await c.until(() => survivors.every((n) => taken(n) !== undefined), 15_000, `a new master's transition at every survivor`);
      } catch (err) {
        f.failures.push(`${size}p ${preset}: failover from ${old}: ${(err as Error).message.split('\n')[0]}`);
        log(`  ${(err as Error).message}`);
        return f;
      }
      f.failover.push(Math.max(...survivors.map((n) => taken(n)!.at)) - killedAt);
      c.spawn(old);
      await c.formed(all, 30_000);
      await settle();
    }
    // Silent failures: SIGSTOP leaves the sockets open, so only heartbeats
    // notice. A pause of half the failure timeout first (it must be kept),
    // then one that lasts until the node is down at every survivor.
    const timeout = presets[preset].failureTimeoutMs;
    for (let i = 0; i < stopReps; i++) {
      const { master, victim, survivors, incarnation } = pick(i);
      const downOf = (n: number) => c.node(n).seen((t) => t.node === victim && t.incarnation === incarnation && t.to === 'GoingDown');
      c.pause(victim);
      await new Promise((r) => setTimeout(r, timeout / 2));
      c.resume(victim);
      await new Promise((r) => setTimeout(r, timeout * 2));
      f.shortPauses.push(survivors.every((n) => downOf(n) === undefined));
      await c.formed(all, 30_000);
      await settle();
      const again = c.node(master).incarnationOf(victim);
      const downAgain = (n: number) => c.node(n).seen((t) => t.node === victim && t.incarnation === again && t.to === 'GoingDown');
      const stoppedAt = c.pause(victim);
      try {
        await c.until(() => survivors.every((n) => downAgain(n) !== undefined), 15_000, `paused node ${victim} GoingDown at every survivor`);
      } finally {
        c.resume(victim);
      }
      f.silent.push(Math.max(...survivors.map((n) => downAgain(n)!.at)) - stoppedAt);
      // It wakes, finds itself declared down and rejoins as a new incarnation.
      await c.formed(all, 30_000);
      await settle();
    }
  } catch (err) {
    f.failures.push(`${size}p ${preset}: ${(err as Error).message}`);
  } finally {
    await c.close();
  }
  return f;
}

/**
 * SIGKILL of the master (issue 16, fault 5): `reps` times kill the master
 * and take the time until every survivor applied the old master's
 * GoingDown (the new master has to be elected first), then restart it on
 * its address. The notes give, per kill, the new master's decision record
 * (its rule names the evidence: `link lost` when the survivors' links to
 * the old master broke) and when the new master's `master` transition
 * reached the last survivor.
 */
async function masterKillBench(runner: { file: string; execArgv: string[] }, size: number, preset: Preset, reps: number): Promise<{ downs: number[]; notes: string[] }> {
  const downs: number[] = [];
  const notes: string[] = [];
  const c = await ProcCluster.start({ size, preset, runner, seeds: 'candidates', spare: 0, clusterName: `bench-mkill-${size}-${preset}` });
  const all = Array.from({ length: size }, (_, i) => i + 1);
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 1000));
  try {
    await c.formed(all, 60_000);
    await settle();
    for (let i = 0; i < reps; i++) {
      const old = c.node(1).master!;
      const survivors = all.filter((n) => n !== old);
      const incarnation = c.node(survivors[0]!).incarnationOf(old);
      const oldTerm = c.node(old).masters.at(-1)?.value.term ?? 0;
      const downOf = (n: number) => c.node(n).seen((t) => t.node === old && t.incarnation === incarnation && t.to === 'GoingDown');
      const killedAt = c.kill(old);
      try {
        await c.until(() => survivors.every((n) => downOf(n) !== undefined), 15_000, `the killed master's GoingDown at every survivor`);
      } catch (err) {
        notes.push(`${size}p ${preset}: master ${old} killed: ${(err as Error).message.split('\n')[0]}`);
        break;
      }
      const last = Math.max(...survivors.map((n) => downOf(n)!.at)) - killedAt;
      downs.push(last);
      const taken = survivors.map((n) => c.node(n).seen((t) => t.kind === 'master' && t.term > oldTerm && t.node !== old)?.at);
      const elected = taken.every((t) => t !== undefined) ? r1(Math.max(...(taken as number[])) - killedAt) : 'not seen';
      const record = survivors.flatMap((n) => c.node(n).decisions).find((d) => d.value.kind === 'down' && d.value.node === old && d.at >= killedAt);
      notes.push(`${size}p ${preset}: master ${old} killed -> GoingDown at the last survivor ${r1(last)} ms (new master's transition everywhere ${elected} ms; record: ${record ? `"${record.value.rule}" by node ${survivors.find((n) => c.node(n).decisions.includes(record))}` : 'none'})`);
      c.spawn(old);
      await c.formed(all, 30_000);
      await settle();
    }
  } catch (err) {
    notes.push(`${size}p ${preset}: ${(err as Error).message.split('\n')[0]}`);
  } finally {
    await c.close();
  }
  return { downs, notes };
}

// ------------------------------------------------------------------ OS processes: key-service failover

/**
 * Key services (issue 5): 3 processes each able to host a counter key
 * service; `reps` times SIGKILL its host and take the time until the new
 * host applied `ready` (after fencing, cleanup, failover, pullData on every
 * survivor and failoverData). Baseline, measured in the same repetitions:
 * SIGKILL until the old host is Down at every survivor (the membership step
 * a failover must wait for). Also whether the new host got pulled data from
 * every survivor. Node 1 is the only candidate (the master) and a client;
 * nodes 2 and 3 may host the key service, so the figure is the key
 * service's own failover, not a master election's (a host that is also the
 * master adds one: see master-failover-*). `runner` undefined: the sources under tsx.
 */
export async function keyServiceBench(
  runner: { file: string; execArgv: string[] } | undefined,
  preset: Preset,
  reps: number,
  /** keyServiceFenceWaitMs for the nodes; undefined: the default (the failure timeout). */
  fenceWaitMs?: number,
): Promise<{ rows: ClmsRow[]; notes: string[] }> {
  // Row names: the default fence wait, or `-wait<ms>` (0: what a deployment with a fence hook gets).
  const suffix = fenceWaitMs === undefined ? '' : `-wait${fenceWaitMs}`;
  const wait = fenceWaitMs ?? presets[preset].failureTimeoutMs;
  const ready: number[] = [];
  const down: number[] = [];
  let complete = 0;
  const failures: string[] = [];
  const c = await ProcCluster.start({
    size: 3,
    preset,
    candidates: [1],
    ...(runner ? { runner } : {}),
    spare: 0,
    clusterName: `bench-ks-${preset}`,
    config: { keyService: { name: 'counter', critical: true, hosts: [2, 3] }, ...(fenceWaitMs !== undefined ? { keyServiceFenceWaitMs: fenceWaitMs } : {}) },
  });
  const all = [1, 2, 3];
  const info = (n: number) => {
    const r = c.node(n).keyService.filter((s) => s.value.event === 'info').at(-1);
    return r && r.value.event === 'info' ? { ...r.value.info, at: r.at } : undefined;
  };
  try {
    await c.until(() => c.allUp(all) && all.every((n) => info(n)?.ready === true), 60_000, 'the key service ready everywhere');
    for (let i = 0; i < reps; i++) {
      const old = info(1)!;
      const host = old.host!;
      const survivors = all.filter((n) => n !== host);
      // Something to pull: the other eligible node adds to the counter before the kill.
      for (const n of survivors) if (n !== 1) await c.node(n).call('counter', 'add', 1, 10_000);
      const incarnation = c.node(survivors[0]!).incarnationOf(host);
      const killedAt = c.kill(host);
      try {
        await c.until(() => survivors.every((n) => { const v = info(n); return v?.ready === true && v.epoch > old.epoch; }), 20_000, 'the key service ready on a new host');
      } catch (err) {
        failures.push(`keyservice ${preset}: kill ${host}: ${(err as Error).message.split('\n')[0]}`);
        break;
      }
      const now = info(survivors[0]!)!;
      const readyAt = c.node(now.host!).keyService.find((s) => s.value.event === 'info' && s.value.info.ready && s.value.info.epoch === now.epoch)!.at;
      ready.push(readyAt - killedAt);
      const downs = survivors.map((n) => c.node(n).seen((t) => t.node === host && t.incarnation === incarnation && t.to === 'Down')?.at);
      if (downs.every((d) => d !== undefined)) down.push(Math.max(...(downs as number[])) - killedAt);
      const data = c.node(now.host!).keyService.find((s) => s.value.event === 'data' && s.value.epoch === now.epoch);
      if (data && data.value.event === 'data' && survivors.every((n) => n === 1 || (data.value as { from: number[] }).from.includes(n))) complete++;
      c.spawn(host);
      await c.formed(all, 30_000);
    }
  } catch (err) {
    failures.push(`keyservice ${preset}: ${(err as Error).message.split('\n')[0]}`);
  } finally {
    await c.close();
  }
  // Baseline: Down at every survivor plus the fence wait (a failover may not start before both).
  const base = (down.length ? median(down) : presets[preset].failureTimeoutMs) + wait;
  return {
    rows: [
      row(`keyservice-ready-after-sigkill-3p-${preset}${suffix}`, 'ms', ready.length ? median(ready) : null, base),
      row(`keyservice-pulled-complete-3p-${preset}${suffix}`, 'fraction', ready.length ? complete / ready.length : null, 1, 'higher'),
    ],
    notes: [
      `keyservice ${preset} (fence wait ${wait} ms): SIGKILL of the host -> ready on the new host (ms): ${ready.map(r1).join(', ')}; baseline SIGKILL -> Down at every survivor (+ the fence wait): ${down.map(r1).join(', ')}; pulled data complete in ${complete} of ${ready.length}`,
      ...failures,
    ],
  };
}

// ------------------------------------------------------------------ OS processes: formation

async function procFormation(runner: { file: string; execArgv: string[] }, size: number, preset: Preset, timeoutMs: number): Promise<{ ms: number | null; up: number; note: string }> {
  const c = await ProcCluster.start({ size, preset, runner, hold: true, seeds: 'candidates', spare: 0, clusterName: `bench-form-${size}` });
  const all = Array.from({ length: size }, (_, i) => i + 1);
  try {
    const t0 = await c.go(all);
    try {
      await c.formed(all, timeoutMs);
    } catch {
      const up = Math.min(...all.map((n) => all.filter((m) => c.node(n).stateOf(m) === 'Up').length));
      const stuck = all.filter((m) => c.node(c.node(1).master ?? 1).stateOf(m) !== 'Up');
      return { ms: null, up, note: `${size} processes (${preset}) not formed within ${timeoutMs / 1000} s: every node sees at least ${up} Up; not Up at the master: ${stuck.join(', ') || '-'}` };
    }
    // The moment the last node applied the transition that completed the cluster.
    const head = c.node(1).lastNumber;
    const at = Math.max(...all.map((n) => c.node(n).seen((t) => t.number === head)?.at ?? hr()));
    return { ms: at - t0, up: size, note: '' };
  } finally {
    await c.close();
  }
}

// ------------------------------------------------------------------ transport-mem: formation (real clock)

/**
 * `size` nodes in this process, started at once; done when every node sees
 * all `size` Up, names the same master and has the same history head.
 * `timing` overrides the preset's timers (see the call).
 */
async function memFormation(size: number, preset: Preset, timeoutMs: number, timing: Partial<Timing> = {}, voters: VoterRule = 'members'): Promise<{ ms: number | null; up: number; head: number; msgs: number; lagMs: number }> {
  // Nothing here compares runs by trace hash: no hashing, no kept entries.
  const network = createMemoryNetwork({ seed: 1, traceHash: false, traceLimit: 0 });
  const candidates = [1, 2, 3].filter((n) => n <= size);
  const nodes: ClusterNode[] = [];
  for (let n = 1; n <= size; n++) {
    nodes.push(
      new ClusterNode({
        nodeNum: n,
        clusterName: 'bench-mem',
        transport: memory({ network, address: `node-${n}` }),
        candidates,
        seeds: candidates.filter((m) => m !== n).map((m) => `node-${m}`),
        preset,
        timing,
        voters,
        logger: silentLogger,
      }),
    );
  }
  const upAt = new Map<number, number>();
  const t0 = performance.now();
  // The longest the event loop was late (all nodes share it): what a timeout has to survive.
  let lagMs = 0;
  let tick = t0;
  const lag = setInterval(() => {
    const now = performance.now();
    lagMs = Math.max(lagMs, now - tick - 20);
    tick = now;
  }, 20);
  for (const node of nodes) void node.start().catch(() => {});
  const agreed = (): boolean => new Set(nodes.map((n) => n.lastTransition)).size === 1 && new Set(nodes.map((n) => n.master)).size === 1 && nodes[0]!.master !== undefined;
  try {
    const allUp = (node: ClusterNode): boolean => {
      const ms = node.membership().members;
      return ms.length === size && ms.every((m) => m.state === 'Up');
    };
    while (performance.now() - t0 < timeoutMs) {
      await new Promise((r) => setTimeout(r, 25));
      // No member sees every node Up before the master that committed the last Up does, so
      // the others are looked at only once a candidate does: the measurement then takes
      // almost nothing from the formation it measures (looking at 256 views of 256 members
      // every 100 ms took 4 % of a formation's CPU in a profile; this looked every 25 ms).
      if (!nodes.some((n) => candidates.includes(n.nodeNum) && allUp(n))) continue;
      for (const node of nodes) {
        if (!upAt.has(node.nodeNum) && allUp(node)) upAt.set(node.nodeNum, performance.now() - t0);
      }
      if (upAt.size === size && agreed()) break;
    }
    const up = Math.min(...nodes.map((n) => n.membership().members.filter((m) => m.state === 'Up').length));
    const msgs = nodes.reduce((a, n) => a + n.communication.stats().messagesSent, 0);
    const head = Math.max(...nodes.map((n) => n.lastTransition));
    return { ms: upAt.size === size && agreed() ? Math.max(...upAt.values()) : null, up, head, msgs, lagMs };
  } finally {
    clearInterval(lag);
    await Promise.all(nodes.map((n) => n.close().catch(() => {})));
    network.destroy();
  }
}

// ------------------------------------------------------------------ transport-mem: frames per transition (virtual clock)

/**
 * Form `size` nodes on a virtual clock, then `cycles` times crash a
 * non-master and start it again (GoingDown, Down, ComingUp, Up: four
 * transitions each), counting every ICS frame every node sent meanwhile
 * (heartbeats of the virtual time that passed included).
 */
async function framesPerTransition(size: number, cycles: number, wallLimitMs: number, voters: VoterRule = 'members'): Promise<{ value: number | null; note: string }> {
  const clock = new VirtualClock();
  const network: MemoryNetwork = createMemoryNetwork({ seed: 1, clock });
  const candidates = [1, 2, 3].filter((n) => n <= size);
  const current = new Map<number, ClusterNode>();
  const ever: ClusterNode[] = [];
  const startNode = (n: number): ClusterNode => {
    const node = new ClusterNode({
      nodeNum: n,
      clusterName: 'bench-frames',
      transport: memory({ network, address: `node-${n}` }),
      candidates,
      seeds: candidates.filter((m) => m !== n).map((m) => `node-${m}`),
      preset: 'local',
      voters,
      clock,
      logger: silentLogger,
    });
    current.set(n, node);
    ever.push(node);
    void node.start().catch(() => {});
    return node;
  };
  const wallStart = performance.now();
  const until = async (pred: () => boolean, what: string): Promise<void> => {
    const ok = await clock.advanceUntil(() => pred() || performance.now() - wallStart > wallLimitMs, 120_000);
    if (!ok || !pred()) throw new Error(`${size} nodes: ${what} did not happen (virtual ${Math.round(clock.now())} ms, wall ${Math.round(performance.now() - wallStart)} ms)`);
  };
  const all = Array.from({ length: size }, (_, i) => i + 1);
  const formed = (): boolean => {
    const heads = new Set<number>();
    const masters = new Set<number | undefined>();
    for (const node of current.values()) {
      const ms = node.membership().members;
      if (ms.length !== size || ms.some((m) => m.state !== 'Up')) return false;
      heads.add(node.lastTransition);
      masters.add(node.master);
    }
    return heads.size === 1 && masters.size === 1 && !masters.has(undefined);
  };
  const frames = (): number => ever.reduce((a, n) => a + (n.communication?.stats().messagesSent ?? 0), 0);
  try {
    for (const n of all) startNode(n);
    await until(formed, 'formation');
    await clock.advance(presets.local.failureTimeoutMs);
    const f0 = frames();
    const h0 = current.get(1)!.lastTransition;
    const v0 = clock.now();
    for (let i = 0; i < cycles; i++) {
      const master = current.get(1)!.master!;
      const victim = size - (i % Math.max(1, size - 3));
      const target = victim === master ? all.find((n) => n !== master)! : victim;
      network.crash(`node-${target}`);
      void current.get(target)!.close();
      await until(() => all.every((n) => n === target || current.get(n)!.info(target)?.state === 'Down'), `Down of node ${target}`);
      startNode(target);
      await until(formed, `rejoin of node ${target}`);
    }
    const transitions = current.get(1)!.lastTransition - h0;
    const sent = frames() - f0;
    return {
      value: sent / transitions,
      note: `${size} nodes${voters === 'members' ? '' : `, voters '${voters}'`}: ${sent} frames for ${transitions} transitions over ${Math.round(clock.now() - v0)} virtual ms (${cycles} crash-and-rejoin cycles; heartbeats included)`,
    };
  } catch (err) {
    return { value: null, note: (err as Error).message };
  } finally {
    for (const n of ever) void n.close().catch(() => {});
    await clock.advance(10_000).catch(() => {});
    network.destroy();
  }
}

// ------------------------------------------------------------------ the suite

/** The parts of the suite, by id (`--clms=<id prefix>,...` runs those only). */
export const CLMS_PARTS = ['kill-3p-lan', 'kill-3p-local', 'kill-16p-lan', 'kill-16p-local', 'keyservice-lan', 'keyservice-local', 'formation-32p', 'formation-256', 'formation-256-candidates', 'frames-3', 'frames-16', 'frames-256', 'starvation', 'master-kill-3p-lan', 'master-kill-16p-lan'] as const;

/**
 * Starvation (issue 16, fault 6): 3 processes, `local`, for `minutes` while
 * `burners` busy-loop processes (each ends by itself) keep every core busy
 * on top of whatever else the machine runs. Counts GoingDown transitions
 * (every one a false down: nothing failed) and master changes, then SIGKILLs
 * a non-master under the same load and measures SIGKILL -> GoingDown at the
 * last survivor.
 */
export async function starvationBench(runner: { file: string; execArgv: string[] }, minutes: number, burners: number, localHealthMax?: number): Promise<{ falseDowns: number; masters: number; detect: number | null; note: string }> {
  const runMs = minutes * 60_000;
  const config = localHealthMax === undefined ? {} : { localHealthMax };
  const c = await ProcCluster.start({ size: 3, preset: 'local', runner, seeds: 'candidates', spare: 0, clusterName: 'bench-starved', config });
  const burning: ChildProcess[] = [];
  try {
    await c.formed([1, 2, 3], 60_000);
    const from = c.node(1).transitions.length;
    const masters0 = [...c.nodes.values()].reduce((n: number, p) => n + p.masters.length, 0);
    const loadEnd = Date.now() + runMs + 60_000;
    for (let i = 0; i < burners; i++) burning.push(spawn(process.execPath, ['-e', `const end = ${loadEnd}; while (Date.now() < end) {}`], { stdio: 'ignore' }));
    await new Promise((r) => setTimeout(r, runMs));
    const downs = c.node(1).transitions.slice(from).filter((t) => t.value.kind === 'state' && t.value.to === 'GoingDown');
    const masters = [...c.nodes.values()].reduce((n: number, p) => n + p.masters.length, 0) - masters0;
    // The evidence of each false down, from the deciding master's record (what each observer saw, how long it took).
    const evidence = downs.map((d) => {
      const r = [1, 2, 3].flatMap((n) => c.node(n).decisions).find((x) => x.value.kind === 'down' && x.value.node === d.value.node && x.value.term === d.value.term);
      return r ? `${d.value.node}: observers ${JSON.stringify(r.value.observers ?? {})}, took ${r.value.tookMs ?? '?'} ms, timings ${JSON.stringify(r.value.timings ?? {})}` : `${d.value.node}: no record`;
    });
    const master = c.node(1).master ?? 1;
    const victim = [1, 2, 3].find((n) => n !== master)!;
    const survivors = [1, 2, 3].filter((n) => n !== victim);
    const incarnation = c.node(master).incarnationOf(victim);
    const killedAt = c.kill(victim);
    let detect: number | null = null;
    try {
      await c.until(() => survivors.every((n) => c.node(n).seen((t) => t.node === victim && t.incarnation === incarnation && t.to === 'GoingDown')), 15_000, 'GoingDown of the killed node');
      detect = Math.max(...survivors.map((n) => c.node(n).seen((t) => t.node === victim && t.incarnation === incarnation && t.to === 'GoingDown')!.at)) - killedAt;
    } catch (err) {
      log(`  ${(err as Error).message}`);
    }
    const note = `starvation (3 processes, local${localHealthMax === undefined ? '' : `, localHealthMax ${localHealthMax}`}, ${minutes} min, ${burners} busy-loop processes besides the machine's own load, loadavg ${loadavg().map((x) => x.toFixed(1)).join(' ')} at the end): false downs ${downs.length} (${downs.map((d) => `${d.value.node}: ${d.value.cause}`).join('; ') || 'none'}${evidence.length ? `; evidence: ${evidence.join('; ')}` : ''}); master events seen ${masters}; SIGKILL of node ${victim} -> GoingDown at the last survivor ${detect === null ? 'not seen' : `${r1(detect)} ms`}`;
    return { falseDowns: downs.length, masters, detect, note };
  } finally {
    for (const b of burning) b.kill('SIGKILL');
    await c.close();
  }
}

/** Runs the parts of CLMS_PARTS that `only` names (by id prefix; all by default). */
export async function runClmsBench(options: { only?: readonly string[] } = {}): Promise<ClmsResult> {
  const rows: ClmsRow[] = [];
  const notes: string[] = [];
  const t0 = performance.now();
  const want = (id: string): boolean => !options.only || options.only.some((p) => id.startsWith(p));
  const runner = await buildRunner();

  // Master failovers: 5 and 7, so the median holds against a slow one.
  // At 16 processes with the local preset on 2 shared cores, 4 of 10
  // failovers used to run two elections (a candidate whose pre-vote was
  // refused stood again 20 ms later and won the term after the one another
  // candidate had just won) and about one in four took 250-580 ms; a
  // median of 3 once came out at 519 ms. Since a vote given counts as a
  // master heard for other candidates' pre-votes (docs/membership.md, M6),
  // 0 of 10 did.
  for (const [size, preset, reps, failoverReps, stopReps] of [
    [3, 'lan', 4, 5, 3],
    [3, 'local', 4, 5, 3],
    [16, 'lan', 8, 7, 2],
    [16, 'local', 8, 7, 2],
  ] as const) {
    if (!want(`kill-${size}p-${preset}`)) continue;
    log(`clms: ${size} processes, ${preset}: SIGKILL of a non-master x${reps}, of the master x${failoverReps}; SIGSTOP x${stopReps}`);
    const s0 = performance.now();
    const f = await killBench(runner, size, preset, reps, failoverReps, stopReps);
    log(`  (${Math.round((performance.now() - s0) / 1000)} s)`);
    const timeout = presets[preset].failureTimeoutMs;
    const fmt = (xs: number[]): string => xs.map((x) => r1(x)).join(', ');
    rows.push(row(`sigkill-nodedown-all-${size}p-${preset}`, 'ms', f.detect.length ? median(f.detect) : null, timeout));
    rows.push(row(`nodedown-callbacks-done-${size}p-${preset}`, 'ms', f.callbacks.length ? median(f.callbacks) : null, timeout));
    rows.push(row(`master-failover-${size}p-${preset}`, 'ms', f.failover.length ? median(f.failover) : null, timeout));
    rows.push(row(`sigstop-nodedown-all-${size}p-${preset}`, 'ms', f.silent.length ? Math.max(...f.silent) : null, timeout));
    rows.push(row(`short-pause-kept-${size}p-${preset}`, 'pauses', f.shortPauses.filter(Boolean).length, f.shortPauses.length || 1, 'higher'));
    notes.push(`${size}p ${preset}: SIGKILL -> GoingDown at the last survivor (ms): ${fmt(f.detect)} (the master suspected/verified/committed, the last survivor applied: ${f.phases.join(', ')}); GoingDown at master -> last callback done: ${fmt(f.callbacks)}; failover: ${fmt(f.failover)}; SIGSTOP -> GoingDown at the last survivor: ${fmt(f.silent)}; pauses of half the timeout kept: ${f.shortPauses.filter(Boolean).length}/${f.shortPauses.length}`);
    notes.push(...f.failures);
    log(`  ${notes.at(-1 - f.failures.length)}`);
    for (const x of f.failures) log(`  FAILED ${x}`);
  }

  for (const [size, reps] of [
    [3, 5],
    [16, 4],
  ] as const) {
    if (!want(`master-kill-${size}p-lan`)) continue;
    log(`clms: ${size} processes, lan: SIGKILL of the master x${reps} -> its GoingDown at every survivor`);
    const mk = await masterKillBench(runner, size, 'lan', reps);
    const load = `loadavg ${loadavg().map((x) => x.toFixed(1)).join(' ')} on ${availableParallelism()} cores`;
    rows.push({ ...row(`sigkill-master-nodedown-all-${size}p-lan`, 'ms', mk.downs.length ? median(mk.downs) : null, presets.lan.failureTimeoutMs), note: `median of ${mk.downs.length} kills (ms: ${mk.downs.map(r1).join(', ')}), measured under load: ${load}` });
    notes.push(`${size}p lan, SIGKILL of the master -> its GoingDown at the last survivor (ms): ${mk.downs.map(r1).join(', ')}; ${load}`, ...mk.notes);
    for (const x of mk.notes) log(`  ${x}`);
  }

  for (const preset of ['lan', 'local'] as const) {
    if (!want(`keyservice-${preset}`)) continue;
    // The default fence wait (the failure timeout), and none (what a fence hook allows).
    for (const wait of [undefined, 0]) {
      log(`clms: key service, 3 processes, ${preset}, fence wait ${wait ?? 'default'}: SIGKILL of its host x3`);
      const ks = await keyServiceBench(runner, preset, 3, wait);
      rows.push(...ks.rows);
      notes.push(...ks.notes);
      for (const x of ks.notes) log(`  ${x}`);
    }
  }

  // Minutes long: only when asked for by name (--clms=starvation).
  if (options.only?.includes('starvation') === true) {
    const minutes = Number(process.env.CLMS_STARVATION_MINUTES ?? 5);
    log(`clms: starvation, 3 processes, local, ${minutes} min under CPU load, then SIGKILL of a member`);
    const st = await starvationBench(runner, minutes, availableParallelism());
    rows.push(row('starvation-false-downs-3p-local', 'downs', st.falseDowns, 1));
    rows.push(row('starvation-sigkill-nodedown-all-3p-local', 'ms', st.detect, presets.local.failureTimeoutMs));
    notes.push(st.note);
    log(`  ${st.note}`);
    if (process.env.CLMS_STARVATION_COMPARE) {
      // The same with local health off, for comparison (notes only).
      const off = await starvationBench(runner, minutes, availableParallelism(), 0);
      notes.push(off.note);
      log(`  ${off.note}`);
    }
  }

  if (want('formation-32p')) {
    log('clms: formation of 32 OS processes (lan), baseline 3 processes');
    const base3 = await procFormation(runner, 3, 'lan', 10_000);
    const form32 = await procFormation(runner, 32, 'lan', 20_000);
    rows.push(row('formation-32p-lan', 'ms', form32.ms, base3.ms ?? 1));
    rows.push(row('formation-32p-lan-up', 'nodes', form32.up, 32, 'higher'));
    notes.push(`formation (processes, lan, from the start command to the last node applying the last Up): 3 -> ${base3.ms === null ? 'not formed' : r1(base3.ms)} ms, 32 -> ${form32.ms === null ? 'not formed' : r1(form32.ms)} ms`);
    if (form32.note) notes.push(form32.note);
    if (base3.note) notes.push(base3.note);
    log(`  ${notes.at(-1)}`);
  }

  if (want('formation-256')) {
    // 256 nodes share one event loop: the ~300k frames of a formation keep
    // it busy for tens of seconds, and it stalls for 300 ms and more at
    // times (GC, bursts), which the local preset's 300 ms failure timeout
    // takes for failures: masters lose quorum and the formation collapses.
    // So the local timers with the failure and RPC timeouts of lan.
    const timing = { failureTimeoutMs: presets.lan.failureTimeoutMs, rpcTimeoutMs: presets.lan.rpcTimeoutMs };
    const limit = 90_000;
    log(`clms: formation of 256 in-process nodes on transport-mem (local timers, lan timeouts, real clock), baseline 3`);
    const m3 = await memFormation(3, 'local', 5_000, timing);
    const m256 = await memFormation(256, 'local', limit, timing);
    // No 3-node figure (see notes): the 256-node time is then reported against 1 ms (ratio = ms).
    rows.push(row('formation-256-mem-local', 'ms', m256.ms, m3.ms ?? 1));
    rows.push(row('formation-256-mem-local-up', 'nodes', m256.up, 256, 'higher'));
    notes.push(
      `formation (transport-mem, local timers with failure timeout ${timing.failureTimeoutMs} ms and RPC timeout ${timing.rpcTimeoutMs} ms, real clock): 3 -> ${m3.ms === null ? 'not formed' : r1(m3.ms)} ms; 256 -> ` +
        (m256.ms === null ? `not formed within ${limit / 1000} s: every node sees at least ${m256.up} Up, highest head ${m256.head}` : `${r1(m256.ms)} ms, head ${m256.head}`) +
        `, ${m256.msgs} frames sent; longest event-loop stall ${Math.round(m256.lagMs)} ms; memory network without trace hash`,
    );
    log(`  ${notes.at(-1)}`);
  }

  if (want('formation-256-candidates')) {
    // The same formation with voters: 'candidates' (docs/membership.md, "Voters"): the
    // Ups of non-candidates change no voter, so several go in one append round.
    const timing = { failureTimeoutMs: presets.lan.failureTimeoutMs, rpcTimeoutMs: presets.lan.rpcTimeoutMs };
    const limit = 90_000;
    log(`clms: formation of 256 in-process nodes with voters 'candidates' (local timers, lan timeouts, real clock), baseline the same with every member voting`);
    const members = await memFormation(256, 'local', limit, timing);
    const cands = await memFormation(256, 'local', limit, timing, 'candidates');
    rows.push(row('formation-256-mem-local-voters-candidates', 'ms', cands.ms, members.ms ?? 1));
    rows.push(row('formation-256-mem-local-voters-candidates-up', 'nodes', cands.up, 256, 'higher'));
    const said = (m: typeof cands): string => (m.ms === null ? `not formed within ${limit / 1000} s (every node sees at least ${m.up} Up)` : `${r1(m.ms)} ms, head ${m.head}, ${m.msgs} frames`);
    notes.push(`formation of 256 with voters 'candidates' (transport-mem, local timers, lan timeouts, real clock, back to back): ${said(cands)}; every member voting: ${said(members)}`);
    log(`  ${notes.at(-1)}`);
  }

  for (const size of [3, 16, 256]) {
    if (!want(`frames-${size}`)) continue;
    log(`clms: ICS frames per membership transition, ${size} nodes (transport-mem, virtual clock, local)`);
    // Wall limits: 256 nodes on one event loop take ~20 s to form even on the virtual clock.
    const limit = size > 16 ? 90_000 : 10_000;
    const r = await framesPerTransition(size, 2, limit);
    rows.push(row(`frames-per-transition-${size}`, 'frames', r.value, 3 * (size - 1)));
    notes.push(r.note);
    log(`  ${r.note}`);
    if (size < 16) continue;
    // The learners' path (docs/protocol.md, "Reports in the append's answer"): the baseline is 2(N-1).
    const c = await framesPerTransition(size, 2, limit, 'candidates');
    rows.push(row(`frames-per-transition-${size}-voters-candidates`, 'frames', c.value, 2 * (size - 1)));
    notes.push(c.note);
    log(`  ${c.note}`);
  }
  notes.push(`clms suite took ${Math.round((performance.now() - t0) / 1000)} s`);
  return { rows, notes };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.argv.includes('--help')) {
  process.stdout.write(`npx tsx bench/clms.ts [--clms=<part id prefix>,...]\nPrints the CLMS rows and notes as JSON (see bench/README.md). Parts: ${CLMS_PARTS.join(', ')}\n`);
} else if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const only = process.argv.find((a) => a.startsWith('--clms='))?.slice('--clms='.length).split(',').filter(Boolean);
  runClmsBench(only ? { only } : {}).then(
    (r) => {
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
