/**
 * Test-only switches that plant known bugs, so the tests can show their
 * checkers catch each one (TESTING.md, canaries). Never turn on in
 * production; every switch is off by default.
 */
export const canaries = {
  /** Masters ignore the compatibility matrix. */
  grantIncompatible: false,
  /** Departed nodes' locks are not dropped (nor their value blocks invalidated) by the masters that hold them. */
  skipPrune: false,
  /** A rebuilt master's tokens do not start above round · 2^32. */
  noTokenFloor: false,
  /** Owners accept grants from a former round. */
  acceptStaleGrants: false,
};

export type DlmCanaryName = keyof typeof canaries;

export function resetCanaries(): void {
  for (const k of Object.keys(canaries) as DlmCanaryName[]) canaries[k] = false;
}
