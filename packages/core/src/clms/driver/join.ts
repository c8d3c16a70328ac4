/**
 * Joining, the joiner's side (docs/membership.md, "Forming a cluster" and
 * "Joining: progress and timeouts"): the loop that looks for a master and
 * asks it to join, or, as a candidate nobody answers, stands for election
 * to form the cluster; and installing the history the master answers with
 * (then this node's own nodeup begins: driver/callbacks.ts). One loop per
 * incarnation.
 */
import type { Clock } from '../../clock/index.js';
import type { RandomSource } from '../../random/index.js';
import type { Timing } from '../options.js';
import type { Message as CoreInput } from '../protocol/core.js';
import type { HistorySnapshot } from '../protocol/history.js';
import { type HostedKeyService, parseMessage as parse, type Report, snapshotSchema } from '../protocol/messages.js';
import type { MemberInfo, Transition } from '../types.js';
import { syntheticTransition } from './callbacks.js';
import { findMaster, type SeedsPort } from './seeds.js';
import { CLMS } from './serve.js';

/** What joining needs of its node. */
export interface JoinPort extends SeedsPort {
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly timing: Pick<Timing, 'rpcTimeoutMs' | 'joinRetryMs' | 'failureTimeoutMs'>;
  readonly opts: SeedsPort['opts'] & { readonly meta: Record<string, unknown> };
  /** The key services this node may host, announced with the join; the view rebuilt from an installed history. */
  readonly keys: { hosted(): HostedKeyService[]; rebuild(base: readonly Transition[], tail: readonly Transition[], appliedUpTo?: number): void };
  step(input: CoreInput): void;
  /** Stand for election (see NodeRuntime.elect). */
  elect(bootstrap: boolean): Promise<'refused' | undefined>;
  /** Start again as a new incarnation. */
  restart(): Promise<void>;
  /** Wait; a restart or close cuts it short. */
  sleep(ms: number): Promise<void>;
  /** The `transition` event (and watchers); `replayed` for history received with the join. */
  notify(t: Transition, replayed: boolean): void;
  /** This node owes the master `r`. */
  report(r: Report): void;
  // The subsystem callbacks (driver/callbacks.ts), each at most once per (node, incarnation) in this incarnation.
  ranNodeup(node: number, incarnation: number): boolean;
  markCleaned(node: number, incarnation: number): boolean;
  cleanup(t: Transition): Promise<void>;
  /** This node's own nodeup: callbacks for every member it found, then its reports. */
  runOwnNodeup(me: MemberInfo): Promise<void>;
}

/** What a master answers to `join` (driver/admission.ts). */
interface Reply {
  ok: boolean;
  reason?: string;
  evicted?: boolean;
  queued?: boolean;
  snapshot?: unknown;
}

export class Joiner {
  constructor(private readonly port: JoinPort) {}

  /** Probe seeds until a master admits us, or (as a candidate) form the cluster. */
  async loop(): Promise<void> {
    const { port } = this;
    const { core, clock, timing, nodeNum } = port;
    const index = port.candidates.indexOf(nodeNum);
    const began = clock.now();
    const ics = port.ics();
    let attempts = 0;
    // Rounds in a row in which no master answered: a node that cannot stand
    // for election probes less and less often (up to the failure timeout),
    // so hundreds of nodes started at once do not drown the candidates in
    // probes while they elect the first master.
    let unanswered = 0;
    // A master that queued our join: asked again directly, without probing.
    let queuedAt: number | undefined;
    // The master found last round did not take our join: ask every address this round.
    let wide = false;
    // When this incarnation last asked a master to join, and since when no master answers.
    let asked = false;
    let lastFound = began;
    const joining = (): boolean => core.phase === 'joining' || core.phase === 'rejoining';
    // One loop per incarnation: a former incarnation's loop (woken by the restart) ends.
    while (joining() && port.ics() === ics) {
      attempts++;
      let wait = timing.joinRetryMs;
      const master = queuedAt ?? (await findMaster(port, attempts, wide));
      queuedAt = undefined;
      wide = false;
      unanswered = master === undefined && index < 0 ? unanswered + 1 : 0;
      if (unanswered > 1) wait = Math.min(timing.failureTimeoutMs, timing.joinRetryMs * 2 ** Math.min(unanswered - 1, 16));
      if (master !== undefined) lastFound = clock.now();
      if (master === undefined && asked && clock.now() - lastFound > timing.failureTimeoutMs * 10) {
        // We asked a master to join, then nobody answers any more: the join
        // may have been committed and this incarnation declared down since,
        // and the others refuse its links, so they cannot even tell us.
        port.log.warn({ silentMs: clock.now() - lastFound }, 'no master answers since we asked to join: starting again as a new incarnation');
        void port.restart();
        return;
      }
      if (master !== undefined && master !== nodeNum) {
        asked = true;
        const r = await this.tryJoin(master);
        if (r === 'joined') return;
        if (r === 'queued') queuedAt = master;
        if (r === 'failed') wide = true;
      } else if ((core.history.last > 0 || core.pending !== undefined) && clock.now() - Math.max(began, core.lastHeardMaster) > timing.failureTimeoutMs * 6) {
        // We acknowledged the first transitions of a cluster as a candidate
        // (committed or not), then its master went before we joined, and
        // nobody we can reach holds that history: start again as a new
        // incarnation, empty (a pending founding entry would otherwise refuse
        // every other founding for ever).
        port.log.warn({ last: core.history.last }, 'the cluster we were joining has no master left: starting again');
        void port.restart();
        return;
      } else if (index >= 0 && core.history.last === 0 && core.pending === undefined && attempts > 1 + index) {
        // Nobody answers as master: stand for election with the other candidates.
        await port.elect(true);
        if (core.isMaster || core.phase === 'member') return;
      }
      if (!joining()) return;
      port.progress.publish();
      await port.sleep(wait + port.random.int(wait));
    }
  }

  /** 'queued': the master has our join in its queue; ask it again. */
  private async tryJoin(master: number): Promise<'joined' | 'queued' | 'failed'> {
    const { port } = this;
    let r: Reply;
    try {
      r = (await port.ics().call(
        master,
        CLMS,
        'join',
        { incarnation: port.ics().incarnation, address: port.ics().address ?? '', meta: port.opts.meta, keyServices: port.keys.hosted() },
        { timeoutMs: port.timing.rpcTimeoutMs * 4 },
      )) as Reply;
    } catch (err) {
      port.log.debug({ master, err: (err as Error).message }, 'join failed');
      port.progress.joinAnswer(master, `no answer (${(err as Error).message})`);
      return 'failed';
    }
    port.progress.joinAnswer(master, r.ok || r.queued === true ? undefined : r.reason ?? 'no reason given');
    if (!r.ok && r.evicted === true) {
      port.log.warn({ master, reason: r.reason }, 'this incarnation was declared down: starting again as a new one');
      void port.restart();
      return 'joined';
    }
    if (!r.ok && r.queued === true) return 'queued';
    if (!r.ok || !r.snapshot) {
      port.log.info({ master, reason: r.reason }, 'join refused for now');
      return 'failed';
    }
    return this.install(master, parse(snapshotSchema, r.snapshot) as HistorySnapshot);
  }

  /** The master admitted us with `snapshot`: take it as our history, and begin as a member. */
  private install(master: number, snapshot: HistorySnapshot): 'joined' {
    const { port } = this;
    const { core, nodeNum } = port;
    const had = core.history.last;
    if (had > 0) {
      // What we applied before (e.g. bootstrap appends) must be the master's
      // history too; a node holding another history cannot be reconciled and
      // starts again as a new incarnation.
      for (const t of snapshot.tail) {
        if (t.number > had) break;
        const mine = core.history.get(t.number);
        if (mine && (mine.term !== t.term || mine.node !== t.node || mine.kind !== t.kind || mine.to !== t.to || mine.incarnation !== t.incarnation)) {
          port.log.warn({ number: t.number }, 'my history differs from the master\'s: starting again as a new incarnation');
          void port.restart();
          return 'joined';
        }
      }
    }
    // A late joiner starts from the master's snapshot plus its tail; it is
    // told about every transition it had not applied yet, in order. An
    // answer that comes after this node, as a follower, applied beyond its
    // snapshot (the join answer was slow) would take its history back in
    // time, and the transitions it already applied would come again: it
    // keeps what it has (the entries both hold were compared above).
    const last = snapshot.tail.at(-1)?.number ?? snapshot.number;
    if (last > had || core.history.id !== snapshot.id) {
      // What this node applied counts only if it was of this history.
      const applied = core.history.id === snapshot.id ? had : 0;
      core.history.install(snapshot);
      // An entry left pending by another history (or master) is not this one's.
      core.pending = undefined;
      const news = joinedAt(snapshot.tail, nodeNum, port.ics().incarnation);
      for (const t of snapshot.tail) if (t.number > applied) port.notify(t, t.number < news);
      // The key-service view is rebuilt from what the snapshot says of key services, then the tail.
      port.keys.rebuild(core.history.keyServiceBase(), snapshot.tail, applied);
    }
    core.phase = 'member';
    core.everJoined = true;
    core.lastHeardMaster = port.clock.now();
    port.step({ type: 'master', master, term: Math.max(core.term, snapshot.tail.at(-1)?.term ?? snapshot.term) });
    // Our ComingUp is in the history: run nodeup for every member, then report.
    const me = core.history.member(nodeNum);
    if (me?.state === 'ComingUp' && me.incarnation === port.ics().incarnation) void port.runOwnNodeup(me);
    // Members already on their way down when we joined wait for every member's
    // cleanup, ours included. Those we never saw up have nothing to call
    // back, but their links are refused and the master hears we are done;
    // those we ran nodeup for (we applied their ComingUp as a follower before
    // our join was answered) get their nodedown callbacks like anywhere else.
    for (const m of core.history.members()) {
      if (m.node === nodeNum || (m.state !== 'GoingDown' && m.state !== 'ShuttingDown')) continue;
      if (!port.ranNodeup(m.node, m.incarnation)) port.markCleaned(m.node, m.incarnation);
      void port.cleanup(core.history.get(m.since) ?? syntheticTransition(m, core.term));
    }
    return 'joined';
  }
}

/** Number of this incarnation's ComingUp in a join snapshot's tail (what came before it is history to the joiner). */
function joinedAt(tail: readonly Transition[], node: number, incarnation: number): number {
  return tail.find((t) => t.node === node && t.incarnation === incarnation && t.to === 'ComingUp')?.number ?? Number.POSITIVE_INFINITY;
}
