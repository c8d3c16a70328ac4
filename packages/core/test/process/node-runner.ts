/**
 * One ClusterNode over transport-tcp in its own OS process, driven over IPC.
 * Started by ./cluster.ts with `node --import tsx node-runner.ts` (fork);
 * never run by hand.
 *
 * Configuration (RunnerConfig) and the shared secret come from env through
 * `runnerChannel` of @clusterinfra/cli/process, the child side of the one
 * process launcher; so do the replies, the fatal reports and the exit when
 * the IPC channel closes (the parent died).
 *
 * Reports (child → parent, all times are `performance.timeOrigin +
 * performance.now()` in ms, comparable between processes on one machine):
 *   { type: 'loaded', at }                  modules loaded (before start when `hold`)
 *   { type: 'ready', address, incarnation, at }
 *   { type: 'transition', transition, at, members }  every committed transition event, with
 *                                          the membership ([node, state, incarnation]) after it
 *   { type: 'master', master, term, at }
 *   { type: 'cleanup', node, incarnation, start, end }   the nodedown callback of subsystem `probe`
 *   { type: 'reply', id, ok, result?, error?, code? }   (runnerChannel)
 *   { type: 'fatal', error }
 *   { type: 'ks', event: 'info' | 'failover' | 'data', ... , at }   with `keyService` configured:
 *                                          every keyservice event (info), and on the new host the
 *                                          start of `failover` and of `failoverData` (from: nodes pulled)
 * Commands (parent → child): { id, cmd } with cmd one of
 *   start (when held), leave, declareDown { node, reason }, close, stats, state, history,
 *   call { name, method, args, timeoutMs } (callKeyService).
 *
 * With `keyService` configured the node registers a counter key service of
 * that name: `add(n)` (not idempotent), `get()` (idempotent), both answering
 * { value, epoch, node }. Each node remembers what it added through `call`
 * (as a lock manager's clients know their locks); failover rebuilds the value
 * as the sum every survivor pulled, or takes what the old host handed over.
 */
import { hrNow as hr, type NodeRunnerConfig, runnerChannel, runnerNode } from '@clusterinfra/cli/process';

export interface RunnerConfig extends NodeRunnerConfig {
  /** Load everything, then wait for the `start` command before listening. */
  hold?: boolean;
  /** Register a counter key service of this name (see above); only on the nodes in `hosts` when given. */
  keyService?: { name: string; critical?: boolean; hosts?: number[] };
  /** ClusterNode's keyServiceFenceWaitMs (default: the failure timeout). */
  keyServiceFenceWaitMs?: number;
  /** ClusterNode's localHealthMax (default 8; 0 turns local health off). */
  localHealthMax?: number;
}

const channel = runnerChannel<RunnerConfig>('node-runner.ts');
const { config } = channel;
const send = <R extends { type: string }>(msg: R): void => channel.report(msg);

const node = runnerNode(channel, {
  ...(config.keyServiceFenceWaitMs !== undefined ? { keyServiceFenceWaitMs: config.keyServiceFenceWaitMs } : {}),
  ...(config.localHealthMax !== undefined ? { localHealthMax: config.localHealthMax } : {}),
});

let transitions = 0;
node.on('transition', (t) => {
  const at = hr();
  transitions++;
  // The membership after t: a joiner can install a snapshot without a
  // transition event for what it holds, so states are reported with each one.
  const members = node.membership().members.map((m) => [m.node, m.state, m.incarnation] as const);
  send({ type: 'transition', transition: t, at, members });
});
node.on('master', (m) => send({ type: 'master', master: m.master, term: m.term, at: hr() }));
node.on('decision', (record) => send({ type: 'decision', record, at: hr() }));
node.registerSubsystem({
  name: 'probe',
  nodedown: (e) => {
    const start = hr();
    // The callback's work is nothing: its end is what the cleanup barrier waits for.
    send({ type: 'cleanup', node: e.node, incarnation: e.incarnation, start, end: hr() });
  },
});

/** What this node added to the counter through `call` (its pullData). */
let contributed = 0;
if (config.keyService && (config.keyService.hosts?.includes(config.nodeNum) ?? true)) registerCounter(config.keyService.name, config.keyService.critical ?? true);
// Every node reports where the key service lives (a client that hosts nothing too).
if (config.keyService) node.on('keyservice', (info) => send({ type: 'ks', event: 'info', info, at: hr() }));

/** The counter key service: its value survives a failover through pullData, and a hand-over. */
function registerCounter(name: string, critical: boolean): void {
  let value = 0;
  const answer = (epoch: number): { value: number; epoch: number; node: number } => ({ value, epoch, node: config.nodeNum });
  node.registerKeyService({
    name,
    critical,
    subservice: 1,
    idempotent: ['get'],
    handlers: {
      add: (n, ctx) => {
        value += Number(n);
        return answer(ctx.epoch);
      },
      get: (_, ctx) => answer(ctx.epoch),
    },
    failover: (ctx) => send({ type: 'ks', event: 'failover', epoch: ctx.epoch, at: hr() }),
    pullData: () => contributed,
    failoverData: ({ pulled, handover }, ctx) => {
      const handed = handover?.data as { value?: unknown } | null | undefined;
      value = typeof handed?.value === 'number' ? handed.value : [...pulled.values()].reduce((s: number, v) => s + (typeof v === 'number' ? v : 0), 0);
      send({ type: 'ks', event: 'data', epoch: ctx.epoch, from: [...(handover ? [handover.from] : []), ...pulled.keys()], at: hr() });
    },
    handover: () => ({ value }),
  });
}

let started: Promise<unknown> | undefined;
const start = (): Promise<unknown> => {
  started ??= node.start().then(
    () => send({ type: 'ready', address: node.address, incarnation: node.incarnation, at: hr() }),
    (err: unknown) => send({ type: 'fatal', error: `start failed: ${String((err as Error)?.stack ?? err)}` }),
  );
  return started;
};

interface Command {
  id: number;
  cmd: 'start' | 'leave' | 'declareDown' | 'close' | 'stats' | 'state' | 'history' | 'call';
  node?: number;
  reason?: string;
  name?: string;
  method?: string;
  args?: unknown;
  timeoutMs?: number;
}

channel.serve<Command>(async (m) => {
  switch (m.cmd) {
    case 'start':
      return start().then(() => null);
    case 'leave':
      return node.leave().then(() => null);
    case 'declareDown':
      return node.declareDown(m.node!, m.reason).then(() => null);
    case 'close':
      return node.close().then(() => null);
    case 'stats':
      return { messagesSent: node.communication?.stats().messagesSent ?? 0, transitions };
    case 'state':
      return { master: node.master, term: node.currentTerm, last: node.lastTransition, membership: node.membership() };
    case 'history':
      return node.transitions();
    case 'call': {
      const r = await node.callKeyService(m.name!, m.method!, m.args ?? null, { timeoutMs: m.timeoutMs ?? 10_000 });
      if (m.method === 'add') contributed += Number(m.args);
      return r;
    }
    default:
      throw new Error(`unknown command ${(m as Command).cmd}`);
  }
});

send({ type: 'loaded', at: hr() });
if (!config.hold) void start();
