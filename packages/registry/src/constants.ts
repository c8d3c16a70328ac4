/** Defaults of `RegistryOptions`, in one place. */
export const REGISTRY_DEFAULTS = {
  maxEntries: 10_000,
  maxBytes: 8 * 1024 * 1024,
  maxEntryBytes: 64 * 1024,
  maxKeyBytes: 512,
  maxDepth: 32,
  maxWatchers: 256,
  maxWatchQueue: 10_000,
  maxBuffered: 4096,
  pushTimeoutMs: 5000,
  checkIntervalMs: 1000,
  channel: 'default',
  critical: false,
} as const;
