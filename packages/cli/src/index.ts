// The public API of @clusterinfra/cli, chosen name by name: the `cluster`
// command as a function, and the client it uses.
export { runCli, DEFAULT_URL, EXIT, type CliIo } from './run.js';
export { AdminClient, type AdminClientOptions, type AdminEvent } from './client.js';
export { startLocalCluster, type LocalCluster, type LocalClusterOptions, type LocalEvent, type LocalNode } from './local/index.js';
