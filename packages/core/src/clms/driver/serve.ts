/**
 * What a CLMS node serves over ICS (docs/protocol.md, "CLMS messages"):
 * `clms.probe` (who is the master, asked by joiners) and `clms` (the
 * membership requests). Each handler validates what arrives with the
 * schemas of protocol/messages.ts and hands it on: to the protocol core
 * (vote, append, commit, heartbeat, report), to admission (join), or
 * answers from the history (fetch) and by a call of its own (probe).
 */
import type { Clock } from '../../clock/index.js';
import type { Ics } from '../../ics/ics.js';
import { IcsStatusError } from '../../ics/status.js';
import type { HandlerContext } from '../../ics/types.js';
import type { Timing } from '../options.js';
import type { LocalHealth } from '../protocol/awareness.js';
import type { Core } from '../protocol/core.js';
import type { HistorySnapshot } from '../protocol/history.js';
import { appendSchema, fetchSchema, heartbeatSchema, joinSchema, type JoinRequest, parseMessage as parse, probeTargetSchema, type Report, reportSchema, reportsSchema, voteSchema } from '../protocol/messages.js';
import type { Transition } from '../types.js';
import type { JoinReply } from './admission.js';
import type { EffectLoop } from './loop.js';
import { sharedEntries, sharedSnapshot } from './wire.js';

/** The membership service (channel 8). */
export const CLMS = { channel: 'clms', subservice: 1 } as const;
/** Who is the master, asked by joiners (channel 9). */
export const PROBE = { channel: 'clms-probe', subservice: 1 } as const;

/** What serving needs of its node. */
export interface ServePort {
  readonly nodeNum: number;
  readonly core: Core;
  readonly loop: EffectLoop;
  readonly clock: Clock;
  readonly timing: Pick<Timing, 'failureTimeoutMs' | 'rpcTimeoutMs'>;
  readonly health: LocalHealth;
  readonly maxNodes: number;
  /** The endpoint of the current incarnation. */
  ics(): Ics;
  /** A report received, answered by the core later (see NodeRuntime.answer). */
  reportReceived(from: number, report: Report): Promise<unknown>;
  /** The master's join handler (driver/admission.ts). */
  onJoin(j: JoinRequest, caller: HandlerContext['caller']): Promise<JoinReply>;
  /** A join of this incarnation of `node` is under way here. */
  isJoining(node: number, incarnation: number): boolean;
  /** As master: `node` (that incarnation) may hold a key-service lease now. */
  grantsLease(node: number, incarnation: number): boolean;
}

/** Register the CLMS services on `ics`, the endpoint of a new incarnation. */
export function registerServices(port: ServePort, ics: Ics): void {
  const { core, loop } = port;
  ics.registerService({
    ...PROBE,
    name: 'clms.probe',
    handlers: {
      whoIsMaster: () => {
        // Only a master we heard lately, as a member, is worth naming: a stale
        // name sends joiners knocking on a door that no longer opens.
        const fresh = core.isMaster || (core.phase === 'member' && port.clock.now() - core.lastHeardMaster <= port.timing.failureTimeoutMs);
        const master = fresh ? core.master : undefined;
        return {
          master: master ?? null,
          term: core.term,
          address: master !== undefined ? (core.history.member(master)?.address ?? (master === port.nodeNum ? (port.ics().address ?? null) : null)) : null,
        };
      },
    },
  });
  // An append's answer gets `health`, as a heartbeat's does: the master counts it as the heartbeat's.
  const withHealth = (v: object): object => ({ ...v, health: port.health.multiplier });
  ics.registerService({
    ...CLMS,
    name: 'clms',
    // A join waits for its commit (bounded, see driver/admission.ts): up to
    // one handler per joining node, so room for every node and the reports besides.
    pool: { max: Math.max(256, port.maxNodes + 64), queue: 4096, priorityReserve: 64 },
    handlers: {
      vote: (a, ctx) => loop.request({ type: 'vote', id: loop.id(), from: ctx.caller.nodeNum, req: parse(voteSchema, a) }),
      append: (a, ctx) => {
        const req = parse(appendSchema, a);
        const input = { type: 'append', id: loop.id(), from: ctx.caller.nodeNum, req } as const;
        // Only a learner's append (`reports`) may be answered later (protocol/reports.ts, holdAnswer).
        if (!req.reports) return withHealth(loop.request(input) as object);
        const r = loop.requestOrLater(input) as object | Promise<object>;
        return r instanceof Promise ? r.then(withHealth) : withHealth(r);
      },
      commit: (a, ctx) => {
        loop.step({ type: 'commit', from: ctx.caller.nodeNum, req: parse(heartbeatSchema, a) });
        return null;
      },
      heartbeat: (a, ctx) => {
        const r = loop.request({ type: 'heartbeat', id: loop.id(), from: ctx.caller.nodeNum, req: parse(heartbeatSchema, a) }) as { term: number; last: number };
        // `health`: our local-health multiplier, so the master gives a starved member as much longer to answer.
        return { ...r, incarnation: port.ics().incarnation, health: port.health.multiplier };
      },
      join: (a, ctx) => port.onJoin(parse(joinSchema, a), ctx.caller),
      report: (a, ctx) => port.reportReceived(ctx.caller.nodeNum, parse(reportSchema, a)),
      reports: (a, ctx) => loop.request({ type: 'reports', id: loop.id(), from: ctx.caller.nodeNum, reports: parse(reportsSchema, a).reports }),
      fetch: (a, ctx) => {
        allowOnly('fetch', isMemberOrJoiner(port, ctx.caller), ctx);
        const r = onFetch(core, parse(fetchSchema, a));
        return { transitions: sharedEntries(r.transitions), snapshot: r.snapshot && sharedSnapshot(r.snapshot) };
      },
      alive: () => ({ incarnation: port.ics().incarnation }),
      lease: (_a, ctx) => ({ granted: port.grantsLease(ctx.caller.nodeNum, ctx.caller.incarnation) }),
      probe: (a, ctx) => {
        allowOnly('probe', isCurrentMaster(port, ctx.caller), ctx);
        return onProbe(port, parse(probeTargetSchema, a));
      },
    },
  });
}

// ---- who may ask what

/**
 * Any peer that knows the secret can call these services; a membership
 * request that makes this node work or wait on someone's behalf (probe:
 * a call to a third node, held up to a failure timeout; fetch: the whole
 * history) is served only to those the protocol sends it: refused at once
 * otherwise, so a rogue or confused peer holds no handler slot.
 */
function allowOnly(what: string, allowed: boolean, ctx: HandlerContext): void {
  if (allowed) return;
  throw new IcsStatusError('PERMISSION_DENIED', `clms.${what} is not served to node ${ctx.caller.nodeNum} (incarnation ${ctx.caller.incarnation})`);
}

/** The master of the current term, as this node knows it (probes are its verification). */
function isCurrentMaster(port: ServePort, caller: HandlerContext['caller']): boolean {
  const { core } = port;
  return caller.nodeNum === core.master && caller.nodeNum !== port.nodeNum && core.history.member(caller.nodeNum)?.incarnation === caller.incarnation;
}

/** A member of this history (any state but Down), or a node whose join is under way here. */
function isMemberOrJoiner(port: ServePort, caller: HandlerContext['caller']): boolean {
  const m = port.core.history.member(caller.nodeNum);
  if (m && m.incarnation === caller.incarnation && m.state !== 'Down') return true;
  return port.isJoining(caller.nodeNum, caller.incarnation);
}

// ---- answers

function onFetch(core: Core, f: { after: number }): { transitions: Transition[]; snapshot: HistorySnapshot | null } {
  const history = core.history;
  if (f.after < history.first - 1) return { transitions: [], snapshot: history.snapshot() };
  return { transitions: history.since(f.after, 10_000), snapshot: null };
}

/** Can this node reach `p.node`? Asked by the master verifying a suspicion (protocol/verification.ts). */
async function onProbe(port: ServePort, p: { node: number; timeoutMs?: number | undefined }): Promise<{ reachable: boolean }> {
  const timeoutMs = Math.min(p.timeoutMs ?? port.timing.rpcTimeoutMs, port.timing.failureTimeoutMs);
  const dueAt = port.clock.now() + timeoutMs;
  try {
    await port.ics().call(p.node, CLMS, 'alive', null, { timeoutMs });
    return { reachable: true };
  } catch (err) {
    // Our timeout fired late: our own loop was slow, and the answer may be
    // waiting unread. That is no evidence against the node (the master
    // counts a failed probe as none).
    if (port.health.lateBy(port.clock.now() - dueAt)) throw err;
    return { reachable: false };
  }
}
