export {
  transportComplianceSuite,
  type ComplianceHarness,
  type ComplianceOptions,
  type HarnessNodeOptions,
} from './compliance.js';
