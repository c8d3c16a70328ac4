/**
 * Finding the master: a joining node asks every seed, every address the
 * configured discovery returns, and every member its history names, who the
 * master is (`clms.probe` `whoIsMaster`), and trusts the answer of the
 * highest term. What each round found goes to the join tracker (progress.ts),
 * which turns it into the reasons of the `joining` event.
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

/** Ask every seed (and known member) who the master is; connected to it when it returns one. */
export async function findMaster(port: SeedsPort): Promise<number | undefined> {
  const { nodeNum, timing } = port;
  const addresses = new Set(port.opts.seeds);
  for (const a of await discovered(port)) addresses.add(a);
  for (const m of port.core.history.members()) if (m.address && m.node !== nodeNum) addresses.add(m.address);
  // Seeds often list every node, this one too: it has nothing to say to itself.
  const own = port.ics().address;
  if (own) addresses.delete(own);
  const failures = new Map<string, unknown>();
  let answered = 0;
  const answers = await Promise.all(
    [...addresses].map(async (address) => {
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
