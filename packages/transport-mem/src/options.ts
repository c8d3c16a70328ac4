/**
 * The options of the memory network and its fault settings, validated with
 * zod at the edge (a bad option throws InvalidOptionError naming its path).
 * The transport's own options live next to `memory()`, which needs the
 * network class to check them.
 */
import { type Clock, parseOptions } from '@clusterinfra/core';
import { z } from 'zod';
import { MAX_TIMER_MS, TRACE_LIMIT_MAX } from './constants.js';

/**
 * Faults applied to the frames of one direction (`from` → `to`), or to every
 * direction as the network default.
 *
 * `dropRate`, `duplicateRate` and `reorderRate` deliberately break the
 * reliable-link contract (no loss, no duplicates, in order): they exist so
 * that the layers above can be tested against a hostile network. They apply
 * to data frames only; the simulated handshake and the close/reset signals
 * get latency and jitter but are never dropped, duplicated or reordered
 * (TCP would retransmit them).
 */
export interface LinkFaults {
  /** Fixed one-way delay added to every frame and signal, in ms. @default 0 */
  latencyMs?: number;
  /**
   * Extra delay drawn uniformly from [0, jitterMs) per frame. Jitter never
   * reorders a link: a frame is never due before the one sent ahead of it.
   * @default 0
   */
  jitterMs?: number;
  /** Probability in [0, 1] that a frame is lost. @default 0 */
  dropRate?: number;
  /** Probability in [0, 1] that a frame is delivered twice. @default 0 */
  duplicateRate?: number;
  /**
   * Probability in [0, 1] that a frame overtakes the frame sent just before
   * it on the same link direction (when that one is still in flight and was
   * not itself just swapped: a frame moves by at most one place).
   * @default 0
   */
  reorderRate?: number;
}

/** LinkFaults with every field filled in. */
export type ResolvedFaults = Readonly<Required<LinkFaults>>;

export const NO_FAULTS: ResolvedFaults = Object.freeze({
  latencyMs: 0,
  jitterMs: 0,
  dropRate: 0,
  duplicateRate: 0,
  reorderRate: 0,
});

const ms = z.number().min(0).max(MAX_TIMER_MS);
const rate = z.number().min(0).max(1);

export const faultsSchema = z.strictObject({
  latencyMs: ms.optional(),
  jitterMs: ms.optional(),
  dropRate: rate.optional(),
  duplicateRate: rate.optional(),
  reorderRate: rate.optional(),
});

/** Validate `faults` and fill in zeros for what is left out. */
export function resolveFaults(component: string, faults: unknown): ResolvedFaults {
  const f = parseOptions(component, faultsSchema, faults);
  return Object.freeze({ ...NO_FAULTS, ...stripUndefined(f) });
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** Options of `createMemoryNetwork`. */
export interface MemoryNetworkOptions {
  /**
   * Seed of the network's only random source (a SeededRandom), which draws
   * every drop, duplicate, reorder and jitter. The same seed, clock and
   * program give the same trace.
   * @default 0
   */
  seed?: number | string;
  /**
   * The clock that drives delivery, latency and connect timeouts. Pass a
   * VirtualClock for deterministic tests.
   * @default realClock (from @clusterinfra/core)
   */
  clock?: Clock;
  /** Faults for every direction that has none of its own (see `setLinkFaults`). @default no faults */
  faults?: LinkFaults;
  /** Trace entries kept in memory; the running hash covers all of them. @default 1000 */
  traceLimit?: number;
  /**
   * Keep the running SHA-256 over the whole trace (`traceHash()`), which
   * costs a string and a hash update per frame: about 7 % of the CPU of a
   * busy in-process cluster. `false` for tests and benchmarks that never
   * compare runs by hash; `traceHash()` then throws InvalidOptionError.
   * Entries, counters and the `trace` event are the same either way.
   * @default true
   */
  traceHash?: boolean;
}

const clockSchema = z.custom<Clock>(
  (v) =>
    typeof v === 'object' &&
    v !== null &&
    typeof (v as Clock).now === 'function' &&
    typeof (v as Clock).setTimeout === 'function',
  { message: 'expected a Clock (with now, wallNow and setTimeout methods)' },
);

export const networkSchema = z.strictObject({
  seed: z.union([z.number().finite(), z.string()]).optional(),
  clock: clockSchema.optional(),
  faults: faultsSchema.optional(),
  traceLimit: z.number().int().min(0).max(TRACE_LIMIT_MAX).optional(),
  traceHash: z.boolean().optional(),
});
