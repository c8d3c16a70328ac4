/**
 * One node process of the DLM recovery bench (bench/dlm.ts, `--processes`):
 * a ClusterNode over transport-tcp on 127.0.0.1 (the shared process
 * launcher's runner conventions) with a lock manager. Reports `ready` once
 * its lock manager is in a complete round with every node, `granted` when a
 * lock it waits for is granted, and `nodedown` for every nodedown it sees,
 * each stamped on the machine-wide clock.
 */
import { runnerChannel, runnerNode, type NodeRunnerConfig } from '@clusterinfra/cli/process';
import { silentLogger } from '@clusterinfra/core';
import { createDlm, type Lock } from '@clusterinfra/dlm';

const channel = runnerChannel<NodeRunnerConfig & { size: number }>('bench/dlm-node.ts');
const node = runnerNode(channel, { logger: silentLogger });
const dlm = createDlm({ node, deadlockTimeoutMs: 0 });
const held: Lock[] = [];
node.on('nodedown', (info) => channel.report({ type: 'nodedown', node: info.node }));

channel.serve<{ id: number; cmd: string; resource?: string }>(async (c) => {
  switch (c.cmd) {
    case 'masterOf':
      return dlm.masterOf(c.resource!);
    case 'lock':
      held.push(await dlm.lock(c.resource!, 'EX'));
      return true;
    case 'wait':
      void dlm.lock(c.resource!, 'EX').then((l) => {
        held.push(l);
        channel.report({ type: 'granted', resource: c.resource });
      });
      return true;
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
});

await node.start();
const ready = setInterval(() => {
  const s = dlm.stats();
  if (s.members.length === channel.config.size && s.completedRound === s.round) {
    clearInterval(ready);
    channel.report({ type: 'ready' });
  }
}, 20);
