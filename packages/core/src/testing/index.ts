export {
  transportComplianceSuite,
  type ComplianceHarness,
  type ComplianceOptions,
  type HarnessNodeOptions,
} from './compliance.js';
// Planted bugs for the simulator's canaries (TESTING.md "Canaries"). Never turn on in production.
export { canaries, resetCanaries, type CanaryName } from '../canaries.js';
// The stepping loops of the virtual clocks, shared with the simulator's clock.
export { advanceSteps, advanceStepsUntil, type SteppedClock } from '../clock/index.js';
