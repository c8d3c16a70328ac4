/**
 * The process launcher (@clusterinfra/cli/process) with the smallest runner
 * (fixtures/echo-runner.ts): configuration in, reports, commands and their
 * errors, signals, a node spawned again, close. startLocalCluster, the
 * process tests of core and the CLMS bench all run on it; they test the
 * nodes, this tests the launcher. No timing is asserted.
 */
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { isClusterInfraError } from '@clusterinfra/core';
import { freePorts, ProcessCluster, runnerChannel } from '@clusterinfra/cli/process';
import { exists } from './pids.js';

const RUNNER = { file: fileURLToPath(new URL('./fixtures/echo-runner.ts', import.meta.url)), execArgv: ['--import', 'tsx'] };
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

type Hello = { type: 'hello'; tag: string; at: number };
let cluster: ProcessCluster<Hello> | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

function start(): { c: ProcessCluster<Hello>; hellos: Map<number, Hello[]> } {
  const hellos = new Map<number, Hello[]>();
  const c = new ProcessCluster<Hello>({
    runner: RUNNER,
    cwd: ROOT,
    onMessage: (p, m) => hellos.set(p.node, [...(hellos.get(p.node) ?? []), m]),
  });
  cluster = c;
  return { c, hellos };
}

it('passes each node its configuration, routes reports and replies, rejects a failed command with its code', async () => {
  const { c, hellos } = start();
  c.spawn(1, { tag: 'one' });
  c.spawn(2, { tag: 'two' });
  await c.until(() => hellos.has(1) && hellos.has(2), 60_000, 'both hello');
  expect(hellos.get(1)![0]!.tag).toBe('one');
  expect(typeof hellos.get(2)![0]!.at).toBe('number');
  const r = await c.node(2).command<{ value: unknown; tag: string; pid: number }>('echo', { value: [1, 'x'] });
  expect(r).toEqual({ value: [1, 'x'], tag: 'two', pid: c.node(2).pid });
  await expect(c.node(1).command('fail')).rejects.toMatchObject({ code: 'TEST_ERR_ASKED', message: 'node 1: asked to fail' });
  expect(() => c.spawn(1, { tag: 'again' })).toThrow(/runs already/);
});

it('SIGSTOP and SIGCONT pause and resume a node; SIGKILL ends it, rejects what it owed, and the node can be spawned again', async () => {
  const { c, hellos } = start();
  const first = c.spawn(1, { tag: 'first' });
  await c.until(() => hellos.has(1), 60_000, 'hello');
  c.kill(1, 'SIGSTOP');
  c.kill(1, 'SIGCONT');
  expect(first.running).toBe(true);
  expect(await first.command('echo', { value: 'awake' })).toMatchObject({ value: 'awake' });
  const owed = first.command('hang', {}, 60_000);
  const killedAt = c.kill(1);
  expect(first.killedAt).toBe(killedAt);
  expect(first.running).toBe(false);
  await expect(owed).rejects.toThrow(/node 1 exited \(SIGKILL\)/);
  await expect(first.command('echo')).rejects.toThrow(/not running/);
  const second = c.spawn(1, { tag: 'second' });
  await c.until(() => hellos.get(1)!.length === 2, 60_000, 'second hello');
  expect(hellos.get(1)![1]!.tag).toBe('second');
  expect(second.pid).not.toBe(first.pid);
  expect(c.node(1)).toBe(second);
  expect(c.all).toEqual([first, second]);
});

it('until() fails when its condition throws; close() SIGKILLs every process and leaves none', async () => {
  const { c, hellos } = start();
  const procs = [c.spawn(1, { tag: 'a' }), c.spawn(2, { tag: 'b' })];
  await expect(c.until(() => { throw new Error('condition broke'); }, 60_000, 'never')).rejects.toThrow('condition broke');
  await c.until(() => hellos.size === 2, 60_000, 'both hello');
  await Promise.all([c.close(), c.close()]);
  for (const p of procs) {
    expect(p.exited?.signal).toBe('SIGKILL');
    expect(exists(p.pid)).toBe(false);
  }
  expect(() => c.spawn(3, { tag: 'late' })).toThrow(/closed/);
});

it('refuses bad input with CONFIG_ERR_INVALID_OPTION: a launcher without a runner, a runner not started by a launcher', async () => {
  expect(() => new ProcessCluster({} as never)).toThrow(expect.objectContaining({ code: 'CONFIG_ERR_INVALID_OPTION' }));
  let err: unknown;
  try {
    runnerChannel('this test');
  } catch (e) {
    err = e;
  }
  expect(isClusterInfraError(err, 'CONFIG_ERR_INVALID_OPTION')).toBe(true);
  const ports = await freePorts(3);
  expect(new Set(ports).size).toBe(3);
});
