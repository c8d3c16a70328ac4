/** Defaults of `ServicesOptions`, in one place. */
export const SERVICES_DEFAULTS = {
  channel: 'default',
  policy: 'round-robin',
  maxAttempts: 3,
  maxServed: 256,
  maxSubscriptions: 1024,
  maxQueue: 1024,
  maxPending: 10_000,
  announceIntervalMs: 1000,
  poolMax: 16,
  poolQueue: 4096,
} as const;

/** Registry key prefixes: `svc/<name>/<node>` and `evt/<topic>/<node>`, owned by the announcing incarnation. */
export const SERVICE_PREFIX = 'svc/';
export const TOPIC_PREFIX = 'evt/';
/** Longest service name or topic, in UTF-8 bytes (the registry key adds the prefix and the node number). */
export const MAX_NAME_BYTES = 200;
/** Longest role name, and most roles per node. */
export const MAX_ROLE_BYTES = 64;
export const MAX_ROLES = 32;
/** Most groups one node announces for one topic. */
export const MAX_GROUPS = 64;
/** Most nodes one by-name call may try (`maxAttempts`, a call's `attempts`). */
export const MAX_ATTEMPTS = 100;
/** Rotation counters (round-robin per service name, per topic and group) kept at once. */
export const MAX_CURSORS = 10_000;
