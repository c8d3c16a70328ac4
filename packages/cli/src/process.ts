// @clusterinfra/cli/process: the process launcher under startLocalCluster, for
// programs that run their own node program (the process tests, the CLMS bench):
// the parent side (ProcessCluster) and the child side (runnerChannel).
export { freePorts, hrNow, NodeProcess, ProcessCluster, RUNNER_ENV, type ProcessClusterOptions, type RunnerCommand, type RunnerProgram, type RunnerReply } from './local/process.js';
export { runnerChannel, runnerNode, type NodeRunnerConfig, type RunnerChannel } from './local/child.js';
