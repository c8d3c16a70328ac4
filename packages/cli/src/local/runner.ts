/**
 * One ClusterNode over transport-tcp in its own OS process: the program the
 * local-cluster launcher (launcher.ts) forks for every node. Not run by hand.
 *
 * In the repository it runs from source (`node --import tsx runner.ts`);
 * from the built package it is `dist/local/runner.js` under plain node (see
 * README in this folder).
 *
 * Configuration: JSON in env CLUSTERINFRA_LOCAL_NODE (RunnerConfig); the
 * cluster secret and the admin token in env (never on the command line).
 * It reports what happens (protocol.ts) over IPC and answers commands.
 * It exits when its IPC channel closes, so a parent that dies, however it
 * dies, leaves no node behind.
 */
import { runnerChannel, runnerNode } from './child.js';
import { registerLedger } from './ledger.js';
import { type Command, ENV, type NodeReport, type RunnerConfig } from './protocol.js';

const channel = runnerChannel<RunnerConfig>('runner.ts');
const { config } = channel;
const report = (r: NodeReport): void => channel.report(r);
const token = process.env[ENV.token];

// Ctrl-C reaches the whole process group: the parent decides when we stop.
process.on('SIGINT', () => {});

const node = runnerNode(channel);

node.on('transition', (t) => report({ type: 'transition', transition: t }));
node.on('master', (m) => report({ type: 'master', master: m.master, term: m.term }));
node.on('nodeup', (m) => report({ type: 'nodeup', of: m.node, incarnation: m.incarnation }));
node.on('nodedown', (m) => report({ type: 'nodedown', of: m.node, incarnation: m.incarnation, state: m.state }));
node.on('keyservice', (info) => report({ type: 'keyservice', info }));
node.on('formed', ({ formed }) => report({ type: 'formed', formed }));

// A subsystem with per-node state, so that nodedown has something to clean
// up: the sessions this node opened with each peer (one per nodeup).
const sessions = new Map<number, number>();
node.registerSubsystem({
  name: 'sessions',
  band: 10,
  nodeup: ({ node: peer }) => void sessions.set(peer, (sessions.get(peer) ?? 0) + 1),
  nodedown: ({ node: peer, incarnation }) => {
    const dropped = sessions.get(peer) ?? 0;
    sessions.delete(peer);
    report({ type: 'cleanup', of: peer, incarnation, subsystem: 'sessions', band: 10, detail: `dropped ${dropped} session(s)` });
  },
});

const ledger = config.keyService
  ? registerLedger(node, {
      failover: (e) => report({ type: 'failover', name: 'ledger', ...e }),
      pulled: (e) => report({ type: 'pulled', name: 'ledger', ...e }),
    })
  : undefined;

/** The admin endpoint on 127.0.0.1 (loaded only when asked for: it costs start-up time). */
async function openAdmin(): Promise<{ adminUrl?: string; adminError?: string }> {
  if (!config.admin) return {};
  try {
    if (!token) throw new Error('no admin token given');
    const { serveAdmin } = await import('@clusterinfra/admin');
    const admin = await serveAdmin(node, { host: '127.0.0.1', port: 0, token });
    return { adminUrl: admin.url };
  } catch (err) {
    return { adminError: String((err as Error)?.message ?? err) };
  }
}

async function start(): Promise<void> {
  try {
    await node.start();
  } catch (err) {
    report({ type: 'fatal', error: `start failed: ${String((err as Error)?.stack ?? err)}` });
    return;
  }
  const admin = await openAdmin();
  report({ type: 'ready', address: node.address ?? '', incarnation: node.incarnation, ...admin });
}

async function run(c: Command): Promise<unknown> {
  switch (c.cmd) {
    case 'deposit':
      if (!ledger) throw new Error('this cluster runs no ledger (keyService: false)');
      return ledger.deposit(c.amount);
    case 'call':
      return node.callKeyService(c.name, c.method, c.args, { timeoutMs: c.timeoutMs });
    case 'state':
      return { master: node.master, term: node.currentTerm, membership: node.membership(), keyServices: node.keyServices(), deposited: ledger?.deposited() ?? 0 };
    case 'leave':
      return node.leave().then(() => null);
    case 'close':
      return node.close().then(() => null);
  }
}

channel.serve<Command>(run, (c, outcome) => {
  if (c.cmd === 'deposit' || c.cmd === 'call') report({ type: 'call', id: c.id, method: c.cmd === 'call' ? c.method : 'deposit', ...outcome });
});

report({ type: 'loaded' });
void start();
