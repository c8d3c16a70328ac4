/**
 * Finding the master: a joining node asks the seeds, the addresses the
 * configured discovery returns, and the members its history names, who the
 * master is (`clms.probe` `whoIsMaster`), a few first and the others only
 * when those few name no master, and trusts the answer of the highest term.
 * What each round found goes to the join tracker (progress.ts), which turns
 * it into the reasons of the `joining` event.
 */
import type { Ics } from '../../ics/ics.js';
import type { Logger } from '../../logging/index.js';
import type { ResolvedClusterNodeOptions, Timing } from '../options.js';
import type { JoinTracker } from '../progress.js';
import type { Core } from '../protocol/core.js';
import { PROBE } from './serve.js';

/** What finding the master needs of its node. */
export interface SeedsPort {
  readonly nodeNum: number;
  readonly candidates: readonly number[];
  readonly core: Core;
  readonly log: Logger;
  readonly timing: Pick<Timing, 'rpcTimeoutMs'>;
  readonly opts: Pick<ResolvedClusterNodeOptions, 'seeds' | 'discovery' | 'maxNodes'>;
  readonly progress: JoinTracker;
  /** The endpoint of the current incarnation. */
  ics(): Ics;
}

/** What a node answers to `whoIsMaster`. */
interface MasterAnswer {
  master: number | null;
  term: number;
  address: string | null;
}

/** Addresses from the configured discovery, bounded; a failing source counts as none. */
async function discovered(port: SeedsPort): Promise<string[]> {
  const { discovery, maxNodes } = port.opts;
  if (!discovery) return [];
  try {
    const found = await discovery.addresses();
    return Array.isArray(found) ? found.filter((a) => typeof a === 'string' && a.length > 0).slice(0, maxNodes) : [];
  } catch (err) {
    port.log.warn({ err: (err as Error).message }, 'discovery failed; probing the static seeds only');
    return [];
  }
}

/**
 * How many addresses a round asks first: the members of the history that
 * stand for master (they know it best, and one of them is it), then others;
 * the rest are asked only when none of these named a master.
 */
export const FIRST_WAVE = 4;

/**
 * Ask who the master is, connected to it when found. A round asks the
 * addresses most likely to know first (the candidates this node's history
 * names, then others, from an offset that moves on with `round`), at most
 * FIRST_WAVE of them; only when none of them names a master does it ask
 * every other address too, in the same round. `wide`: ask every address at
 * once (the master found last round did not take the join, so answers from
 * a few may be stale).
 */
export async function findMaster(port: SeedsPort, round = 0, wide = false): Promise<number | undefined> {
  const { nodeNum, timing } = port;
  const addresses = new Set(port.opts.seeds);
  for (const a of await discovered(port)) addresses.add(a);
  const likely: string[] = [];
  for (const m of port.core.history.members()) {
    if (!m.address || m.node === nodeNum) continue;
    addresses.add(m.address);
    if (port.candidates.includes(m.node)) likely.push(m.address);
  }
  // Seeds often list every node, this one too: it has nothing to say to itself.
  const own = port.ics().address;
  if (own) addresses.delete(own);
  const first = wide ? [...addresses] : firstWave(addresses, likely, nodeNum + round * FIRST_WAVE);
  const failures = new Map<string, unknown>();
  let answered = 0;
  const ask = (list: readonly string[]): Promise<(MasterAnswer | undefined)[]> =>
    Promise.all(
      list.map(async (address) => {
        try {
          const node = await port.ics().connectAddress(address, { timeoutMs: timing.rpcTimeoutMs });
          if (node === nodeNum) return undefined;
          const r = (await port.ics().call(node, PROBE, 'whoIsMaster', null, { timeoutMs: timing.rpcTimeoutMs })) as MasterAnswer;
          answered++;
          return r.master === null ? undefined : r;
        } catch (err) {
          failures.set(address, err);
          return undefined;
        }
      }),
    );
  let answers = await ask(first);
  if (!answers.some((a) => a !== undefined) && first.length < addresses.size) {
    const asked = new Set(first);
    answers = await ask([...addresses].filter((a) => !asked.has(a)));
  }
  let best: MasterAnswer | undefined;
  for (const a of answers) if (a && (!best || a.term > best.term)) best = a;
  port.progress.probed({ tried: addresses.size, answered, failures, master: best?.master ?? undefined }, port.candidates.includes(nodeNum), port.candidates);
  if (!best || best.master === null || best.master === nodeNum) return undefined;
  if (best.address) {
    try {
      await port.ics().connectAddress(best.address, { timeoutMs: timing.rpcTimeoutMs });
    } catch {
      return undefined;
    }
  }
  return best.master;
}

/** The first wave of a round: FIRST_WAVE addresses, `likely` ones first, then others from `offset` on. */
function firstWave(addresses: ReadonlySet<string>, likely: readonly string[], offset: number): string[] {
  const out: string[] = [];
  for (const a of likely) if (addresses.has(a) && !out.includes(a) && out.length < FIRST_WAVE) out.push(a);
  const rest = [...addresses].filter((a) => !out.includes(a));
  for (let i = 0; i < rest.length && out.length < FIRST_WAVE; i++) out.push(rest[(offset + i) % rest.length]!);
  return out;
}
