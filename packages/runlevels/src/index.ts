// The public API of @clusterinfra/runlevels, chosen name by name.
export { createRunLevels, nextStep, NODE_PREFIX, RunLevels, TARGET_KEY, type RunLevelsEvents, type RunLevelsOptions } from './runlevels.js';
