/** Every default of the multipath transport, in one place. */

/** The kind every multipath transport reports. */
export const MULTIPATH_KIND = 'multipath';

/** Version of the multipath layer's own frames (HELLO carries it; a peer with another is refused). */
export const WIRE_VERSION = 1;

/** Most paths one transport may have (path numbers travel in one byte; more would be no redundancy anyone runs). */
export const MAX_PATHS = 8;

/** Largest time option: what a Node.js timer can hold (2^31 − 1 ms). */
export const MAX_TIMER_MS = 2_147_483_647;

/** Defaults of `MultipathOptions`. */
export const MULTIPATH_DEFAULTS = Object.freeze({
  /** Which paths carry data frames. */
  policy: 'active-standby' as const,
  /** A path that sent nothing for this long sends a PING. */
  heartbeatIntervalMs: 250,
  /** A path on which nothing arrived for this long is declared failed (its frames move to another path). */
  pathTimeoutMs: 1500,
  /** The logical link closes (`reset`) once no path has been up for this long. */
  linkTimeoutMs: 10_000,
  /** First delay before the dialling side redials a failed path; doubles per failure, with jitter. */
  redialMinMs: 50,
  /** Longest delay between redials of one path. */
  redialMaxMs: 2000,
  /** The multipath HELLO/WELCOME exchange on a new path connection must finish within this. */
  handshakeTimeoutMs: 5000,
  /** A graceful close waits this long for the peer to confirm every frame, then resets. */
  closeTimeoutMs: 5000,
  /** Bytes a receiver holds for a link before the application consumed them: the sender stops transmitting past it. */
  receiveWindow: 8 * 1024 * 1024,
  /** Unacknowledged bytes per logical link after which `send` returns false. */
  highWaterMark: 2 * 1024 * 1024,
  /** Path connections that passed the path transport's handshake and have not yet said HELLO. */
  maxPendingPaths: 64,
  /** Closed sessions remembered, so that a late path connection cannot reopen one. */
  closedSessionMemory: 4096,
});

/**
 * Timer presets: `local` for one machine or a test (failover well under
 * 100 ms), `lan` is the default.
 */
export const MULTIPATH_PRESETS = Object.freeze({
  lan: Object.freeze({ heartbeatIntervalMs: 250, pathTimeoutMs: 1500, linkTimeoutMs: 10_000 }),
  local: Object.freeze({ heartbeatIntervalMs: 15, pathTimeoutMs: 60, linkTimeoutMs: 2000, redialMinMs: 10, redialMaxMs: 200 }),
});
