/**
 * The one-command demo (`npm run demo`): a cluster of separate OS processes
 * on 127.0.0.1 over TCP forms, runs a key service, loses the node that hosts
 * it to SIGKILL, and carries on.
 *
 * What it shows, as one timeline merged from every process:
 *   1. formation: each node's nodeup events and the master;
 *   2. the `ledger` key service (registered on every node) placed on one
 *      node, and deposits into it, by name, from every node;
 *   3. SIGKILL of the ledger's host (the lowest node, which is also the
 *      master): the nodedown at every survivor, their cleanup (a subsystem's
 *      nodedown callback), a new master, the failover with the data pulled
 *      from every survivor, and the deposits carrying on at the new host;
 *   4. a check that the rebuilt balance is exactly what the survivors had
 *      deposited (nothing they were told succeeded was lost).
 *
 *   npm run demo                        # 3 nodes, exits by itself (0 on success)
 *   npm run demo -- --nodes 5
 *   npm run demo -- --keep              # stay up with admin endpoints open until Ctrl-C
 *
 * The launcher it uses is `startLocalCluster` (packages/cli/src/local).
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { formatEvent, formatTime, type LedgerAnswer, type LocalCluster, type LocalEvent, startLocalCluster } from '../packages/cli/src/local/index.js';

export interface DemoOptions {
  /** @default 3 */
  nodes?: number;
  /** After the scenario, stay up (admin endpoints open) until `signal` aborts. @default false */
  keep?: boolean;
  /** Where lines go. @default console.log */
  print?: (line: string) => void;
  /** Aborts the demo (Ctrl-C): every process is killed. */
  signal?: AbortSignal;
  /** Ceiling for the scenario once every node is ready (a loaded machine is slow; a normal run takes a few seconds). @default 60000 */
  timeoutMs?: number;
}

export interface DemoResult {
  ok: boolean;
  /** What did not happen, when !ok. */
  failure?: string;
  /** Every process the demo started. */
  pids: number[];
  victim?: number;
  newHost?: number;
}

const LEDGER = 'ledger';
const DEPOSIT = 10;
/** Deposits in flight at once (traffic is bounded too). */
const MAX_IN_FLIGHT = 4;

class DemoFailure extends Error {}

export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const n = options.nodes ?? 3;
  const print = options.print ?? ((line: string) => console.log(line));
  if (!Number.isInteger(n) || n < 3 || n > 9) return { ok: false, failure: `--nodes must be 3..9 (a majority must survive the kill); got ${n}`, pids: [] };
  // The scenario's ceiling counts from the moment every node is ready (start has its own).
  let deadline = Number.POSITIVE_INFINITY;
  const remaining = (): number => Math.max(1, deadline - Date.now());
  let cluster: LocalCluster | undefined;
  const pids: number[] = [];
  const say = (text: string): void => print(`${formatTime(cluster ? performance.timeOrigin + performance.now() - cluster.startedAt : 0)}  ==      ${text}`);

  print(`Starting ${n} nodes, each its own process, over TCP on 127.0.0.1 (pre-shared secret, 'local' timers)`);
  const onEvent = (e: LocalEvent): void => {
    if (e.type === 'spawned') pids.push(e.pid);
    const line = formatEvent(e);
    if (line) print(line);
  };
  let stop = false;
  // Rejects when the demo is interrupted (Ctrl-C), so no wait outlives it.
  const interrupted = new Promise<never>((_, reject) => {
    const fail = (): void => reject(new DemoFailure('interrupted'));
    if (options.signal?.aborted) fail();
    else options.signal?.addEventListener('abort', fail, { once: true });
  });
  interrupted.catch(() => {});
  try {
    cluster = await startLocalCluster({ nodes: n, keyService: true, preset: 'local', onEvent, signal: options.signal, admin: options.keep ?? false });
    const c = cluster;
    deadline = Date.now() + (options.timeoutMs ?? 60_000);
    const nums = c.nodes.map((x) => x.node);
    /** Resolves once `cond` holds (checked on every event), or fails the demo with `what`. */
    const until = async (cond: () => boolean, what: string): Promise<void> => {
      try {
        await Promise.race([c.waitFor(() => cond(), { timeoutMs: remaining(), what }), interrupted]);
      } catch (err) {
        throw err instanceof DemoFailure ? err : new DemoFailure(`${what} did not happen within ${options.timeoutMs ?? 60_000} ms of the nodes being ready`);
      }
    };
    const reported = (node: number, pred: (e: LocalEvent) => boolean): boolean => c.events.some((e) => e.node === node && pred(e));
    /** The ledger's newest ready placement anyone reported (it may move before the kill: a master that flaps under load re-places it). */
    const current = (): { host: number; epoch: number } => {
      let best = { host: -1, epoch: -1 };
      for (const e of c.events) if (e.type === 'keyservice' && e.info.name === LEDGER && e.info.ready && e.info.epoch > best.epoch) best = { host: e.info.host!, epoch: e.info.epoch };
      return best;
    };
    const ledgerReady = (node: number, pred: (k: { host?: number; epoch: number }) => boolean): boolean =>
      reported(node, (e) => e.type === 'keyservice' && e.info.name === LEDGER && e.info.ready && pred(e.info));

    // 1. Formation: the ledger (critical) has a ready host, as every node sees it.
    await until(() => nums.every((k) => reported(k, (e) => e.type === 'formed' && e.formed) && ledgerReady(k, () => true)), 'formation (every node formed, ledger ready)');
    // Every node Up at every node too: the survivors of the kill must be a majority of the voters.
    await Promise.race([c.allUp({ timeoutMs: remaining() }), interrupted]).catch((err: unknown) => {
      throw err instanceof DemoFailure ? err : new DemoFailure('not every node saw every node Up in time');
    });
    say(`every node sees every node Up`);
    say(`cluster formed: ${n} nodes, ledger on node ${current().host} (epoch ${current().epoch}); deposits of ${DEPOSIT} from every node, by name`);

    // 2. Traffic: deposits by name from every live node in turn, a few in flight at once.
    let inFlight = 0;
    let turn = 0;
    let killed = false;
    const settled: Promise<unknown>[] = [];
    const traffic = (async () => {
      while (!stop) {
        const alive = c.nodes.filter((x) => x.alive && x.node !== (killed ? victim : -1));
        if (inFlight < MAX_IN_FLIGHT && alive.length > 0) {
          const from = alive[turn++ % alive.length]!.node;
          inFlight++;
          const p = c.deposit(from, DEPOSIT).catch(() => undefined); // failures are in the timeline
          settled.push(p.finally(() => inFlight--));
        }
        await new Promise((r) => setTimeout(r, 150));
      }
    })();
    const okCalls = (pred: (r: LedgerAnswer) => boolean): number =>
      c.events.filter((e) => e.type === 'call' && e.ok && pred(e.result as LedgerAnswer)).length;
    await until(() => okCalls((r) => r.epoch === current().epoch) >= 2 * n, `${2 * n} deposits`);

    // 3. The kill, of wherever the ledger is now.
    const { host: victim, epoch: oldEpoch } = current();
    const pid = c.nodes[victim - 1]!.pid;
    const role = c.events.findLast((e) => e.type === 'master' && e.node !== victim);
    const master = role?.type === 'master' && role.master === victim ? ' and is the master' : '';
    say(`killing node ${victim} (pid ${pid}) with SIGKILL: it hosts the ledger (epoch ${oldEpoch})${master}`);
    killed = true;
    c.kill(victim, 'SIGKILL');
    const survivors = nums.filter((k) => k !== victim);
    await until(() => survivors.every((k) => reported(k, (e) => e.type === 'nodedown' && e.of === victim)), `nodedown of node ${victim} at every survivor`);
    await until(() => survivors.every((k) => reported(k, (e) => e.type === 'cleanup' && e.of === victim)), `cleanup for node ${victim} at every survivor`);
    await until(() => c.events.some((e) => e.type === 'pulled' && e.epoch > oldEpoch), 'failover with pulled data');
    await until(() => survivors.every((k) => ledgerReady(k, (i) => i.epoch > oldEpoch && i.host !== victim)), 'the ledger ready on a new host at every survivor');
    const { host: newHost, epoch: newEpoch } = current();
    say(`ledger failed over to node ${newHost} (epoch ${newEpoch}); calls go on`);
    const before = okCalls((r) => r.epoch === newEpoch);
    await until(() => okCalls((r) => r.epoch === newEpoch && r.host === newHost) >= before + n, `${n} deposits answered by the new host`);

    // 4. Stop the traffic and check the rebuilt state.
    stop = true;
    await traffic;
    let ceiling: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(settled), new Promise((r) => (ceiling = setTimeout(r, remaining())))]);
    clearTimeout(ceiling);
    const views = (await Promise.all(survivors.map((k) => c.state(k)))) as { deposited: number }[];
    const balance = (await c.callKeyService(survivors[0]!, LEDGER, 'balance')) as LedgerAnswer;
    const mine = survivors.map((k, i) => `node ${k}: ${views[i]!.deposited}`).join(', ');
    const sum = views.reduce((s, v) => s + v.deposited, 0);
    if (balance.balance !== sum) throw new DemoFailure(`the ledger says ${balance.balance}, but the survivors deposited ${sum} (${mine})`);
    say(`balance ${balance.balance} = what the survivors deposited (${mine}); node ${victim}'s own deposits died with it`);
    say(`demo OK: formation, SIGKILL, nodedown and cleanup at every survivor, failover with pulled data, calls after failover`);

    if (options.keep) await keepUp(c, print, options.signal);
    return { ok: true, pids, victim, newHost };
  } catch (err) {
    const failure = String((err as Error)?.message ?? err);
    // The processes' last words help find out why (the launcher's own errors carry them already).
    return { ok: false, failure: err instanceof DemoFailure && cluster ? `${failure}\n${cluster.describe()}` : failure, pids };
  } finally {
    stop = true;
    await cluster?.close();
    if (cluster) say(`all ${pids.length} processes exited`);
  }
}

/** --keep: print how to look at the cluster, then wait for Ctrl-C. */
async function keepUp(c: LocalCluster, print: (l: string) => void, signal?: AbortSignal): Promise<void> {
  print('');
  print('The cluster stays up until Ctrl-C. Admin endpoints (127.0.0.1 only):');
  for (const x of c.nodes.filter((y) => y.alive)) print(`  node ${x.node}  ${x.adminUrl ?? '(no admin endpoint: @clusterinfra/admin has no serveAdmin yet)'}`);
  print(`  token: ${c.token}`);
  const url = c.nodes.find((y) => y.alive && y.adminUrl)?.adminUrl;
  if (url) print(`Try:  npm run cluster -- status --url ${url} --token ${c.token}`);
  if (!signal) return;
  await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { nodes: { type: 'string', default: '3' }, keep: { type: 'boolean', default: false } } });
  const abort = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (abort.signal.aborted) return;
      console.log(`\n${sig}: stopping every node`);
      abort.abort();
    });
  }
  runDemo({ nodes: Number(values.nodes), keep: values.keep, signal: abort.signal }).then(
    (r) => {
      if (!r.ok) {
        console.error(`\ndemo ${abort.signal.aborted ? 'interrupted' : `FAILED: ${r.failure}`}`);
        process.exit(abort.signal.aborted ? 130 : 1);
      }
      process.exit(0);
    },
    (err: unknown) => {
      console.error('demo FAILED:', err);
      process.exit(1);
    },
  );
}
