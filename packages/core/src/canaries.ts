/**
 * Test-only switches that plant known bugs, so the simulator can show that
 * its invariant checks catch them (TESTING.md "Canaries"). All off by
 * default; nothing but tests may turn them on. Process-wide on purpose: the
 * simulator runs a whole cluster in one process.
 */
const defaults = {
  /** CLMS: open the cleanup barrier at once (a node may rejoin before everyone cleaned up). */
  skipCleanupBarrier: false,
  /** CLMS: accept membership messages from a lower term. */
  acceptStaleTerm: false,
  /** CLMS: rejoin with the same incarnation after being declared down. */
  reuseIncarnation: false,
  /** ICS: leave pending calls to a downed node unsettled (and its links open, whose loss would fail them), and keep their entries (never abandoned). */
  keepPendingOnNodedown: false,
  /** Key services: fail over as soon as the host is GoingDown, without waiting for its fence and cleanup (its Down). */
  moveKeyServiceEarly: false,
};

export type CanaryName = keyof typeof defaults;

/**
 * One switchboard per process, kept on `globalThis` under a `Symbol.for` key:
 * the `./testing` entry that turns canaries on and the main entry whose code
 * reads them may be separate bundles (the CommonJS build has no shared chunks).
 */
const SWITCHBOARD = Symbol.for('@clusterinfra/core.canaries');
const holder = globalThis as { [SWITCHBOARD]?: Record<CanaryName, boolean> };
export const canaries: Record<CanaryName, boolean> = (holder[SWITCHBOARD] ??= { ...defaults });

/** Turn every canary off (tests call this in afterEach). */
export function resetCanaries(): void {
  for (const k of Object.keys(canaries) as CanaryName[]) canaries[k] = false;
}
