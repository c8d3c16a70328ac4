/**
 * The `cluster` command, as a function: `runCli(argv, io)` parses the
 * arguments, talks to the admin endpoint and resolves with the exit code,
 * writing only to the streams it is given, so tests run it in-process.
 *
 * Exit codes: 0 done and healthy; 2 the cluster answered but is not healthy
 * (a member suspected or GoingDown/ShuttingDown, not formed, no quorum, no
 * master); 1 any error (unreachable, refused token, bad arguments), with a
 * one-line message on stderr.
 */
import { assessHealth } from '@clusterinfra/admin';
import { isClusterInfraError } from '@clusterinfra/core';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { AdminClient } from './client.js';
import { formatEvent, formatHistory, formatKeys, formatStatus, makeStyle, useColor } from './format.js';
import { runSim } from './sim.js';

export const DEFAULT_URL = 'http://127.0.0.1:7800';

export const EXIT = { ok: 0, error: 1, unhealthy: 2 } as const;

export interface CliIo {
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: { write(s: string): unknown };
  /** Where CLUSTER_URL, CLUSTER_TOKEN and NO_COLOR are read. */
  env: Record<string, string | undefined>;
  /** Ends `watch` and `sim --keep` (the bin aborts it on SIGINT and SIGTERM). */
  signal?: AbortSignal;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
}

interface GlobalOptions {
  url?: string;
  token?: string;
  timeout: number;
}

/** A message for stderr and the exit code to go with it. */
class CliFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.error,
  ) {
    super(message);
  }
}

function positiveInt(what: string) {
  return (raw: string): number => {
    if (!/^\d{1,9}$/.test(raw) || Number(raw) < 1) throw new InvalidArgumentError(`${what} must be a positive integer`);
    return Number(raw);
  };
}

function nonNegativeInt(what: string) {
  return (raw: string): number => {
    if (!/^\d{1,15}$/.test(raw)) throw new InvalidArgumentError(`${what} must be a non-negative integer`);
    return Number(raw);
  };
}

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const style = makeStyle(useColor(io.stdout.isTTY, io.env));
  const out = (s: string): void => void io.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
  const json = (v: unknown): void => out(JSON.stringify(v, null, 2));
  let exitCode: number = EXIT.ok;

  const program = new Command('cluster')
    .description('Look at and manage a running ClusterInfra cluster through a node\'s admin endpoint.')
    .addOption(new Option('--url <url>', `the node's admin endpoint (env CLUSTER_URL, default ${DEFAULT_URL})`))
    .addOption(new Option('--token <token>', 'the admin token (env CLUSTER_TOKEN)'))
    .addOption(new Option('--timeout <ms>', 'per-request timeout in milliseconds').argParser(positiveInt('--timeout')).default(15_000))
    .allowExcessArguments(false)
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
      // Commander's own errors (unknown option, missing argument): one line.
      outputError: (s, write) => write(`${s.trim().split('\n')[0]}\n`),
    });

  const client = (): AdminClient => {
    const g = program.opts<GlobalOptions>();
    const url = g.url ?? io.env.CLUSTER_URL ?? DEFAULT_URL;
    const token = g.token ?? io.env.CLUSTER_TOKEN;
    if (!token) throw new CliFailure('no admin token: pass --token or set CLUSTER_TOKEN');
    return new AdminClient({ url, token, timeoutMs: g.timeout, ...(io.fetch ? { fetch: io.fetch } : {}) });
  };

  program
    .command('status')
    .description('the members, master, quorum and health, as the node sees them (exit 2 when unhealthy)')
    .option('--json', 'print the JSON answer')
    .action(async (o: { json?: boolean }) => {
      const s = await client().status();
      // Recomputed here from the members, so an older endpoint gets the same rule.
      const health = assessHealth(s);
      if (o.json) json(s);
      else out(formatStatus({ ...s, health }, style));
      exitCode = health.ok ? EXIT.ok : EXIT.unhealthy;
    });

  program
    .command('history')
    .description('committed membership transitions, oldest first, one bounded page')
    .option('--since <n>', 'first transition number to show', nonNegativeInt('--since'))
    .option('--limit <n>', 'transitions per page (at most 1000)', positiveInt('--limit'))
    .option('--json', 'print the JSON answer')
    .action(async (o: { since?: number; limit?: number; json?: boolean }) => {
      const h = await client().history({ since: o.since, limit: o.limit });
      if (o.json) json(h);
      else out(formatHistory(h, style));
    });

  program
    .command('keys')
    .description('key services: host, epoch, ready (exit 2 when the cluster is not formed)')
    .option('--json', 'print the JSON answer')
    .action(async (o: { json?: boolean }) => {
      const k = await client().keys();
      if (o.json) json(k);
      else out(formatKeys(k, style));
      exitCode = k.formed && !k.keyServices.some((x) => x.halted) ? EXIT.ok : EXIT.unhealthy;
    });

  program
    .command('watch')
    .description('follow transitions, master, quorum and key-service changes live until Ctrl-C')
    .option('--since <n>', 'replay from this transition number first', nonNegativeInt('--since'))
    .option('--json', 'one JSON object per line: {"type", "data"}')
    .action(async (o: { since?: number; json?: boolean }) => {
      for await (const e of client().watch({ since: o.since, signal: io.signal })) {
        out(o.json ? JSON.stringify(e) : formatEvent(e.type, e.data, style));
      }
      if (!io.signal?.aborted) throw new CliFailure('the event stream ended (the node closed?)');
    });

  program
    .command('down')
    .description('declare a node down (the master commits GoingDown, cleanup runs everywhere)')
    .argument('<node>', 'node number', positiveInt('node'))
    .option('--reason <text>', 'recorded as the transition\'s cause')
    .option('--json', 'print the JSON answer')
    .action(async (node: number, o: { reason?: string; json?: boolean }) => {
      const r = await client().down(node, o.reason);
      if (o.json) json(r);
      else out(`node ${r.node} declared down`);
    });

  program
    .command('leave')
    .description('make the node behind --url leave the cluster cleanly (it closes)')
    .option('--json', 'print the JSON answer')
    .action(async (o: { json?: boolean }) => {
      const r = await client().leave();
      if (o.json) json(r);
      else out(`node ${r.node} left the cluster`);
    });

  program
    .command('sim')
    .description('start a local cluster of <n> OS-process nodes on 127.0.0.1 over TCP, each with an admin endpoint')
    .argument('<n>', 'number of nodes (1-32)', positiveInt('<n>'))
    .option('--keep', 'keep the cluster running until Ctrl-C (without it: stop once it has formed)')
    .option('--base-port <port>', 'node 1 listens here, node k on base+k-1 (default: free ports)', positiveInt('--base-port'))
    .option('--preset <name>', 'membership timings: local or lan', 'local')
    .option('--key-service', 'register the demo ledger key service on every node')
    .option('--json', 'print the nodes as JSON once ready')
    .action(async (n: number, o: { keep?: boolean; basePort?: number; preset: string; keyService?: boolean; json?: boolean }) => {
      if (o.preset !== 'local' && o.preset !== 'lan') throw new CliFailure(`--preset must be local or lan, got ${JSON.stringify(o.preset)}`);
      exitCode = await runSim({ nodes: n, keep: o.keep ?? false, basePort: o.basePort, preset: o.preset, keyService: o.keyService ?? false, json: o.json ?? false, token: program.opts<GlobalOptions>().token ?? io.env.CLUSTER_TOKEN }, { out, style, signal: io.signal });
    });

  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (err) {
    return failed(err, io);
  }
}

function failed(err: unknown, io: CliIo): number {
  if (err instanceof CommanderError) {
    // Help and version are not failures; Commander has printed its message already.
    // (`cluster` alone prints the help as an error: exit 1.)
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT.ok;
    return err.code === 'commander.help' ? err.exitCode : EXIT.error;
  }
  const message = err instanceof Error ? err.message : String(err);
  const code = isClusterInfraError(err) ? `${err.code}: ` : '';
  io.stderr.write(`cluster: ${code}${message.split('\n')[0]}\n`);
  return err instanceof CliFailure ? err.exitCode : EXIT.error;
}
