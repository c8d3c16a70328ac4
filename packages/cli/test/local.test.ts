/**
 * The one-command demo end to end (`npm run demo`, examples/demo.ts): run as
 * its own process, it starts 3 node processes over TCP through the
 * local-cluster launcher, kills the ledger's host with SIGKILL and must show,
 * in its timeline, every step of the failover, then exit 0 by itself and
 * leave no process behind. No timing is asserted (a shared 2-core machine):
 * only what happened, and in which order.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { exists } from './pids.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string[];
  stderr: string;
}

function runDemo(args: string[], timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/demo.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    // A ceiling, not a measurement: the demo ends by itself long before.
    const timer = setTimeout(() => child.kill('SIGINT'), timeoutMs);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: out.split('\n').filter(Boolean), stderr: err });
    });
  });
}

/** Index of the first line matching `re` at or after `from` (-1 if none). */
const find = (lines: string[], re: RegExp, from = 0): number => {
  for (let i = from; i < lines.length; i++) if (re.test(lines[i]!)) return i;
  return -1;
};

it(
  'npm run demo: 3 processes form, the key service host is SIGKILLed, survivors see nodedown and clean up, the ledger fails over with pulled data, calls go on, no process is left',
  async () => {
    const r = await runDemo(['--nodes', '3'], 170_000);
    const lines = r.stdout;
    const context = `exit ${r.signal ?? r.code}\n${lines.join('\n')}\n${r.stderr}`;
    expect(r.code, context).toBe(0);

    // Three processes, each with its pid in the timeline.
    const pids = lines.map((l) => /node (\d+)\s+process started \(pid (\d+)\)/.exec(l)).filter((m) => m !== null).map((m) => Number(m[2]));
    expect(pids, context).toHaveLength(3);

    // The kill, of the ledger's host at that time (the demo says which, with its epoch).
    const kill = find(lines, /==\s+killing node (\d+) \(pid (\d+)\) with SIGKILL: it hosts the ledger \(epoch (\d+)\)/);
    expect(kill, context).toBeGreaterThan(0);
    const [, h, p, e] = /killing node (\d+) \(pid (\d+)\) with SIGKILL: it hosts the ledger \(epoch (\d+)\)/.exec(lines[kill]!)!;
    const host = Number(h);
    const epoch1 = Number(e);
    expect(Number(p)).toBe(pids[host - 1]);
    const survivors = [1, 2, 3].filter((k) => k !== host);

    // Formation, before the kill: every node formed and saw the ledger ready there.
    for (const k of [1, 2, 3]) {
      expect(find(lines, new RegExp(`node ${k}\\s+cluster formed`)), context).toBeGreaterThanOrEqual(0);
      const ready = find(lines, new RegExp(`node ${k}\\s+key service ledger ready on node ${host} \\(epoch ${epoch1}\\)`));
      expect(ready, context).toBeGreaterThanOrEqual(0);
      expect(ready, context).toBeLessThan(kill);
    }
    // Calls before the kill, answered by that host; then the signal and the process's death.
    expect(lines.slice(0, kill).filter((l) => l.includes(`call deposit ok → balance`) && l.includes(`host node ${host}, epoch ${epoch1}`)).length, context).toBeGreaterThan(0);
    const signalled = find(lines, new RegExp(`node ${host}\\s+SIGKILL sent to pid ${pids[host - 1]}`), kill);
    expect(signalled, context).toBeGreaterThan(kill);
    expect(find(lines, new RegExp(`node ${host}\\s+process exited \\(SIGKILL\\)`), signalled), context).toBeGreaterThan(signalled);

    // After the kill, at every survivor: nodedown of the host, then its cleanup.
    for (const k of survivors) {
      const down = find(lines, new RegExp(`node ${k}\\s+nodedown node ${host} `), kill);
      expect(down, `nodedown at node ${k}\n${context}`).toBeGreaterThan(kill);
      expect(find(lines, new RegExp(`node ${k}\\s+cleanup for node ${host} done`), down), `cleanup at node ${k}\n${context}`).toBeGreaterThan(down);
    }

    // Failover: a survivor pulled data from every survivor, then the ledger is ready there with a newer epoch.
    const pulled = find(lines, /pulled ledger data from survivors \[(.*)\] → balance (\d+)/, kill);
    expect(pulled, context).toBeGreaterThan(kill);
    const pulledLine = lines[pulled]!;
    const newHost = Number(/^\+\s*[\d.]+s\s+node (\d+)\s+pulled/.exec(pulledLine)![1]);
    expect(survivors).toContain(newHost);
    for (const k of survivors) expect(pulledLine, context).toContain(`node ${k}: {"deposited":`);
    expect(pulledLine).not.toContain(`node ${host}: {`);
    const moved = find(lines, new RegExp(`key service ledger ready on node ${newHost} \\(epoch (\\d+)\\)`), pulled);
    expect(moved, context).toBeGreaterThan(pulled);
    const epoch2 = Number(/epoch (\d+)/.exec(lines[moved]!)![1]);
    expect(epoch2).toBeGreaterThan(epoch1);

    // Calls succeed after the failover, at the new host and epoch.
    const after = lines.slice(moved).filter((l) => l.includes('call deposit ok') && l.includes(`host node ${newHost}, epoch ${epoch2}`));
    expect(after.length, context).toBeGreaterThanOrEqual(3);
    // The rebuilt balance is what the survivors deposited (the demo checks it; its words say so).
    expect(find(lines, /balance \d+ = what the survivors deposited/, moved), context).toBeGreaterThan(moved);

    // Every process ended: the demo waited for each one to exit.
    expect(find(lines, /all 3 processes exited/), context).toBeGreaterThan(moved);
    for (const pid of pids) expect(exists(pid), `pid ${pid} still exists`).toBe(false);
  },
  180_000,
);

it(
  'the demo refuses a cluster where no majority survives the kill, with a clear message and exit 1',
  async () => {
    const r = await runDemo(['--nodes', '2'], 60_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--nodes must be 3..9');
  },
  60_000,
);
