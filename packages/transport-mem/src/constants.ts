/** Every default of the memory transport and network, in one place. */

/** Seed of the network's random source when none is given. */
export const DEFAULT_SEED = 0;

/** Largest frame `send` accepts unless `maxFrameSize` says otherwise: 1 MiB. */
export const DEFAULT_MAX_FRAME_SIZE = 1024 * 1024;

/** Upper bound for the `maxFrameSize` option: 64 MiB. */
export const MAX_FRAME_SIZE_LIMIT = 64 * 1024 * 1024;

/** Unconsumed bytes per link after which `send` returns false: 1 MiB. */
export const DEFAULT_HIGH_WATER_MARK = 1024 * 1024;

/** Upper bound for the `highWaterMark` option: 1 GiB. */
export const HIGH_WATER_MARK_LIMIT = 1024 * 1024 * 1024;

/** How long `connect` waits for the simulated handshake, in milliseconds. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 3000;

/** Largest timer a Node.js timer can hold (2^31 − 1 ms), the bound for every time option. */
export const MAX_TIMER_MS = 2_147_483_647;

/** Trace entries kept in memory (older ones survive only in the running hash). */
export const DEFAULT_TRACE_LIMIT = 1000;

/** Upper bound for the `traceLimit` option. */
export const TRACE_LIMIT_MAX = 1_000_000;

/** The kind every memory transport reports. */
export const MEMORY_KIND = 'memory';
