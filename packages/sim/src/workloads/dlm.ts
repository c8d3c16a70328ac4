/**
 * The lock manager (`@clusterinfra/dlm`) as a simulator workload: a Dlm on
 * every node object, two workers per node locking random resources in
 * random modes, converting up and down, writing value blocks and
 * unlocking, through every fault the seed draws. Checked after every step
 * and at the end:
 *
 * - D1 never two incompatible grants on one resource at once, judged by
 *   fencing-token order: tokens carry the recovery round they were granted
 *   in (`round · 2^32` and up), and a grant of a later round fences every
 *   grant of an earlier one (a cut-off holder, or a paused master that
 *   wakes and grants once more in its old round: a store that refuses a
 *   token below the highest it saw refuses those). Two incompatible grants
 *   of the same round (of one history) held at once by live owners break
 *   it. What a lock is held in is its owner's view (`dlm.locks()`): from
 *   its grant until the owner asks to release it, or loses it; under a
 *   conversion, the weaker of its two modes. For that judgement to hold,
 *   every grant carries its round: an owner takes a grant only in the
 *   round its token is of (the `granted` event names the owner's round).
 * - D2 a departed node's lock is released exactly once: a master never
 *   drops one twice, and at the end no master still grants a lock that no
 *   live owner holds.
 * - D3 no request lost or granted twice: no token is granted twice on one
 *   resource of one history; every request of a live, running owner
 *   settles (granted, or a typed DLM error) by its timeout; at the end
 *   every lock an owner holds is granted at its master and nothing waits.
 * - D4 value blocks never go back in time: a valid value block a grant
 *   sees is no older than a valid one seen by a grant with a lower token
 *   (version 0: a resource that started again empty), and never from a
 *   later grant; and once a holder died holding PW or EX (it may have been
 *   changing the value), no later grant of a recovery round without it
 *   sees a valid block older than that holder's grant (the cluster marked
 *   it invalid). A grant of a round it is still a member of is exempt: no
 *   master knows it died yet, and a compatible mode (NL, say) is granted
 *   beside it with the block as it stands.
 */
import type { ClusterNode } from '@clusterinfra/core';
import {
  __dlmCanaries,
  compatible,
  createDlm,
  type Dlm,
  type DlmCanaryName,
  isDlmError,
  isDownConversion,
  LOCK_MODES,
  type Lock,
  type LockMode,
  TOKEN_ROUND_SPAN,
  type ValueBlock,
  writesValue,
} from '@clusterinfra/dlm';
import type { World } from '../sim.js';
import type { Workload } from './index.js';

export type DlmWorkloadCanary = DlmCanaryName;
export const DLM_CANARIES: readonly DlmWorkloadCanary[] = ['grantIncompatible', 'noTokenFloor', 'acceptStaleGrants'];
/**
 * The `dlm-kill-holder` variant adds `skipPrune`: only there does a schedule kill a PW/EX holder
 * while its master lives, and a master that keeps the departed lock keeps its value block valid (D4).
 */
export const DLM_KILL_HOLDER_CANARIES: readonly DlmWorkloadCanary[] = [...DLM_CANARIES, 'skipPrune'];

/**
 * Which DLM workload: `dlm` runs under the simulator's faults only; `dlm-kill-holder` adds a
 * schedule of its own: 0.8–2.3 s into the fault phase, and as long after each kill, at the first
 * step that finds one, it kills a node holding PW or EX on a resource whose written, valid value
 * block another running node masters (granting it that lock now), sparing that master, and
 * restarts it 0.2–2.2 s later. The simulator's own faults may still hit the master; often they
 * do not.
 */
export type DlmVariant = 'dlm' | 'dlm-kill-holder';

const RESOURCES = ['a', 'b', 'c'];
const WORKERS = 2;
/** Scheduling slack before a request past its timeout counts as lost (as R1's). */
const SLACK_MS = 1000;

interface Request {
  node: ClusterNode;
  what: string;
  deadline: number;
  settled: boolean;
}

/** The weakest mode both convert down to: what a lock under conversion may be used for. */
function weaker(a: LockMode, b: LockMode): LockMode {
  for (const m of [...LOCK_MODES].reverse()) if (isDownConversion(a, m) && isDownConversion(b, m)) return m;
  return 'NL';
}

export function dlmWorkload(variant: DlmVariant = 'dlm'): Workload {
  const dlms = new Map<ClusterNode, Dlm>();
  /** Per `<history>/<resource>`: token → the value block its grant saw. */
  const seen = new Map<string, Map<number, ValueBlock>>();
  const departed = new Set<string>();
  /** Each live node's PW/EX locks at the last step (`who`: node:incarnation), and per `<history>/<resource>` those whose owner died with them. */
  const writers = new Map<ClusterNode, Array<{ r: string; token: number; who: string }>>();
  const spoiled = new Map<string, Array<{ token: number; who: string }>>();
  /** Per `<history>/<round>`: its members (node:incarnation), as a node that finished it reported. */
  const rounds = new Map<string, Set<string>>();
  const requests = new Set<Request>();
  const counts = { requests: 0, grants: 0, conversions: 0, refusals: 0, departed: 0, holdersKilled: 0 };
  let world: World | undefined;
  /** dlm-kill-holder: when the next holder is killed, and the schedule's own random source. */
  let nextKill = 0;
  let killRng: ReturnType<World['random']> | undefined;

  const fail = (id: 'D1' | 'D2' | 'D3' | 'D4', detail: string): void => world?.checker.fail(id, detail);
  const live = (node: ClusterNode): boolean => {
    const s = world!.slot(node.nodeNum);
    return s.node === node && s.status === 'running';
  };

  function granted(node: ClusterNode, dlm: Dlm, e: { resource: string; id: number; mode: LockMode; token: number; value: ValueBlock; round: number }): void {
    counts.grants++;
    // D1 judges grants by the round their token carries: an owner takes only a grant of its
    // current round, and a token of round r lies in [r · 2^32, (r + 1) · 2^32).
    if (Math.floor(e.token / TOKEN_ROUND_SPAN) !== e.round) {
      fail('D1', `node ${node.nodeNum} took a grant on ${e.resource} in round ${e.round} whose token ${e.token} is of round ${Math.floor(e.token / TOKEN_ROUND_SPAN)}`);
    }
    const history = node.historyId ?? 'none';
    const r = `${history}/${e.resource}`;
    const tokens = seen.get(r) ?? new Map<number, ValueBlock>();
    seen.set(r, tokens);
    if (tokens.has(e.token)) fail('D3', `token ${e.token} granted twice on ${e.resource} (node ${node.nodeNum})`);
    const vb = e.value;
    if (vb.valid && vb.version > e.token) fail('D4', `grant ${e.token} on ${e.resource} sees a value written under the later token ${vb.version}`);
    if (vb.valid && vb.version !== 0) {
      for (const [t, other] of tokens) {
        if (!other.valid || other.version === 0) continue;
        if (t < e.token ? other.version > vb.version : other.version < vb.version) {
          fail('D4', `value block of ${e.resource} went back in time: grant ${e.token} sees version ${vb.version}, grant ${t} saw ${other.version}`);
        }
      }
    }
    const round = Math.floor(e.token / TOKEN_ROUND_SPAN);
    // Only a grant of a round without the dead holder owes it an invalid block: until its
    // round, no master can know it died (a compatible grant beside it may still see its block).
    const members = rounds.get(`${history}/${round}`);
    for (const dead of spoiled.get(r) ?? []) {
      if (dead.token >= e.token || members === undefined || members.has(dead.who)) continue;
      if (vb.valid && vb.version !== 0 && vb.version < dead.token) {
        fail('D4', `grant ${e.token} on ${e.resource} sees a valid value block of version ${vb.version}, though a holder that died in PW/EX (node ${dead.who}, not a member of round ${round}) held it under token ${dead.token}`);
      }
    }
    tokens.set(e.token, vb);
    // A grant its owner no longer holds (released at once: it crossed a cancel; the event can
    // come after later ones when the master is the node itself) is history, not a holding.
    const own = dlm.locks().find((l) => l.id === e.id);
    if (!own || own.token !== e.token || own.phase === 'releasing') return;
    for (const [other, d] of dlms) {
      if (!live(other) || (other.historyId ?? 'none') !== history) continue;
      for (const l of d.locks()) {
        // What the owner may use the lock for: nothing once it asked to release it; under a
        // conversion, the weaker of its two modes.
        if (l.granted === null || l.phase === 'releasing' || l.resource !== e.resource || (d === dlm && l.id === e.id)) continue;
        const mode = l.requested === null ? l.granted : weaker(l.granted, l.requested);
        if (compatible(mode, e.mode) || Math.floor(l.token / TOKEN_ROUND_SPAN) !== round) continue;
        fail('D1', `node ${node.nodeNum} granted ${e.mode} (token ${e.token}) on ${e.resource} while node ${other.nodeNum} holds ${mode} (token ${l.token}), both in round ${round}`);
      }
    }
  }

  /** One request: counted, watched until it settles, and what it gives back. */
  async function ask<T>(node: ClusterNode, what: string, timeoutMs: number, op: () => Promise<T>): Promise<T | undefined> {
    counts.requests++;
    const req: Request = { node, what, deadline: world!.clock.now() + timeoutMs, settled: false };
    requests.add(req);
    try {
      return await op();
    } catch (err) {
      if (!isDlmError(err)) fail('D3', `${what} on node ${node.nodeNum} failed with something other than a DLM error: ${String(err)}`);
      counts.refusals++;
      return undefined;
    } finally {
      req.settled = true;
      requests.delete(req);
    }
  }

  async function worker(w: World, node: ClusterNode, dlm: Dlm, k: number): Promise<void> {
    const clock = w.slot(node.nodeNum).clock!;
    const rng = w.random(`dlm/${node.nodeNum}/${node.incarnation}/${k}`);
    const sleep = (ms: number): Promise<void> => new Promise((resolve) => void clock.setTimeout(resolve, ms));
    while (!w.isHealing && live(node)) {
      const resource = RESOURCES[rng.int(RESOURCES.length)]!;
      const mode = LOCK_MODES[rng.int(LOCK_MODES.length)]!;
      const timeoutMs = 200 + rng.int(3_000);
      const lock: Lock | undefined = await ask(node, `lock ${resource} ${mode}`, timeoutMs, () => dlm.lock(resource, mode, { timeoutMs }));
      if (lock) {
        await sleep(rng.int(200));
        if (lock.mode !== null && rng.next() < 0.3) {
          const to = LOCK_MODES[rng.int(LOCK_MODES.length)]!;
          counts.conversions++;
          const t = 200 + rng.int(2_000);
          // Down from PW or EX always writes the value (so a value block is only ever as old as its last writer's grant).
          const value = writesValue(lock.mode) && !writesValue(to) ? { value: new Uint8Array([node.nodeNum, rng.int(256)]) } : {};
          await ask(node, `convert ${resource} ${lock.mode}->${to}`, t, () => lock.convert(to, { timeoutMs: t, ...value }));
          await sleep(rng.int(100));
        }
        const m = lock.mode;
        if (m !== null) await lock.unlock(writesValue(m) ? { value: new Uint8Array([node.nodeNum, rng.int(256)]) } : {}).catch((err: unknown) => {
          if (!isDlmError(err)) fail('D3', `unlock on node ${node.nodeNum} failed with something other than a DLM error: ${String(err)}`);
        });
      }
      await sleep(50 + rng.int(300));
    }
  }

  /** `node` is gone: the PW/EX locks it held at the last step owe an invalid value block (D4). */
  function died(node: ClusterNode): void {
    for (const { r, token, who } of writers.get(node) ?? []) spoiled.set(r, [...(spoiled.get(r) ?? []), { token, who }]);
    writers.delete(node);
  }

  /**
   * dlm-kill-holder: kill a running node that holds PW or EX (not releasing it) on a resource
   * whose master is another running node that grants it that lock now; the master is spared.
   */
  function killHolder(w: World): boolean {
    const running = (node: ClusterNode): boolean => live(node) && !w.slot(node.nodeNum).clock!.paused;
    const byNum = new Map([...dlms].filter(([node]) => running(node)).map(([node, dlm]) => [node.nodeNum, { node, dlm }]));
    const victims: Array<{ node: ClusterNode; master: number; resource: string }> = [];
    for (const { node, dlm } of byNum.values()) {
      for (const l of dlm.locks()) {
        if (l.granted === null || l.phase !== 'idle' || !writesValue(l.granted)) continue;
        const master = dlm.masterOf(l.resource);
        const m = master === undefined || master === node.nodeNum ? undefined : byNum.get(master);
        // A written, valid value block: what the master must mark invalid when the holder dies.
        const res = m?.dlm.mastered().find((r) => r.resource === l.resource);
        if (!res || res.valueVersion === 0 || !res.valueValid) continue;
        if (res.granted.some(([n, mode]) => n === node.nodeNum && mode === l.granted)) victims.push({ node, master: master!, resource: l.resource });
      }
    }
    if (victims.length === 0) return false;
    const v = victims[killRng!.int(victims.length)]!;
    counts.holdersKilled++;
    w.crashNode(v.node.nodeNum, ` (holds PW/EX on ${v.resource}, its master n${v.master} spared)`, 200 + killRng!.int(2_000));
    died(v.node);
    return true;
  }

  /** D3: requests of live, running owners settle by their timeout (plus slack; a pause holds the owner's timers). */
  function step(w: World): void {
    const now = w.clock.now();
    // D4: a holder that dies in PW or EX may have been changing the value: the cluster must mark it invalid.
    // One releasing its lock is not holding it: its master may have taken the release already (with
    // the last value, or none when a grant that crossed a cancel goes back), and then rightly keeps
    // the block valid.
    for (const [node, dlm] of dlms) {
      if (!writers.has(node)) continue;
      if (!live(node)) {
        died(node);
        continue;
      }
      const history = node.historyId ?? 'none';
      writers.set(
        node,
        dlm.locks().flatMap((l) => (l.granted !== null && l.phase !== 'releasing' && writesValue(l.granted) ? [{ r: `${history}/${l.resource}`, token: l.token, who: `${node.nodeNum}:${node.incarnation}` }] : [])),
      );
    }
    for (const r of requests) {
      if (!live(r.node)) {
        requests.delete(r);
        continue;
      }
      const s = w.slot(r.node.nodeNum);
      if (!s.clock!.paused && now > r.deadline + SLACK_MS && now > s.resumedAt + SLACK_MS) {
        fail('D3', `${r.what} on node ${r.node.nodeNum} still pending ${now - r.deadline} ms after its timeout`);
        return;
      }
    }
    // Last, so that the holder's locks were just recorded above (D4 needs them when it is gone).
    if (variant === 'dlm-kill-holder' && w.isFaulting) {
      killRng ??= w.random('dlm/kill-holder');
      // Until a holder is found, tried again at every step.
      if (nextKill === 0) nextKill = now + 800 + killRng.int(1_500);
      else if (now >= nextKill && killHolder(w)) nextKill = now + 800 + killRng.int(1_500);
    }
  }

  /** At quiescence (workers stopped, every request settled): masters and owners agree, nothing waits (D2, D3). */
  function final(): void {
    const current = [...dlms].filter(([node]) => live(node));
    const atMasters: string[] = [];
    const atOwners: string[] = [];
    for (const [node, dlm] of current) {
      for (const r of dlm.mastered()) {
        for (const [n, m] of r.granted) atMasters.push(`${r.resource} node ${n} ${m}`);
        if (r.waiting + r.converting > 0) fail('D3', `at quiescence ${r.resource} still has ${r.waiting} waiting and ${r.converting} converting at its master, node ${node.nodeNum}`);
      }
      for (const l of dlm.locks()) if (l.granted !== null) atOwners.push(`${l.resource} node ${node.nodeNum} ${l.granted}`);
    }
    const missing = (a: string[], b: string[]): string[] => {
      const left = [...b];
      return a.filter((x) => {
        const i = left.indexOf(x);
        if (i < 0) return true;
        left.splice(i, 1);
        return false;
      });
    };
    const orphans = missing(atMasters, atOwners);
    if (orphans.length > 0) fail('D2', `at quiescence masters still grant locks no live owner holds: ${orphans.slice(0, 4).join('; ')}`);
    const lost = missing(atOwners, atMasters);
    if (lost.length > 0) fail('D3', `at quiescence owners hold locks their masters do not grant: ${lost.slice(0, 4).join('; ')}`);
  }

  return {
    name: variant,
    canaries: variant === 'dlm' ? DLM_CANARIES : DLM_KILL_HOLDER_CANARIES,
    plant: (c, on) => void (__dlmCanaries[c as DlmCanaryName] = on),
    stats: () => ({ ...counts }),
    hooks: {
      nodeStarted(node, w) {
        world = w;
        const dlm = createDlm({ node, deadlockTimeoutMs: 5_000 });
        dlms.set(node, dlm);
        writers.set(node, []);
        dlm.on('granted', (e) => granted(node, dlm, e));
        dlm.on('recovered', (e) => rounds.set(`${node.historyId ?? 'none'}/${e.round}`, new Set(e.members.map((m) => `${m.node}:${m.incarnation}`))));
        dlm.on('departed', (e) => {
          counts.departed++;
          const k = `${e.node}:${e.incarnation}:${e.id}`;
          if (departed.has(k)) fail('D2', `the departed lock ${k} on ${e.resource} was released twice (again by node ${node.nodeNum})`);
          departed.add(k);
        });
        for (let k = 0; k < WORKERS; k++) void worker(w, node, dlm, k);
      },
      step,
      final,
    },
    close: async () => {
      for (const d of dlms.values()) await d.close();
    },
  };
}
