/**
 * Test-only switches that plant known bugs, so the tests can show that
 * their checks catch each one (docs/registry.md, Testing). Not exported
 * from the package's entry point; never set outside a test.
 */
export const registryCanaries = {
  /** The sequencer acknowledges a write before the replicas applied it (caught by RG5). */
  ackBeforeReplicated: false,
  /** A replica applies a change as soon as it arrives, gap or not (caught by RG2). */
  applyOutOfOrder: false,
  /** A new sequencer rebuilds from the stalest replica instead of the freshest (caught by staleReplicaRebuild). */
  stalestRebuild: false,
};

export type RegistryCanaryName = keyof typeof registryCanaries;
