/**
 * Run levels over transport-mem under the virtual clock, on the registry:
 * the cluster moved as a whole, a late joiner walked up to the target
 * before it counts as up, walking back down, leave, and a crashed node's
 * phase vanishing with it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type RegCluster, range, regCluster } from '../../registry/test/harness.js';
import { statusView } from '../../admin/src/views.js';
import { formatStatus, makeStyle } from '../../cli/src/format.js';
import { createRunLevels, nextStep, type RunLevels } from '../src/index.js';

const PHASES = ['starting', 'serving', 'draining'] as const;
let c: RegCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

/** Run levels on node `n` (its registry started); `log` gets `n enter phase` / `n leave phase`. */
async function levels(cl: RegCluster, n: number, log: string[], hold?: { phase: string; until: Promise<void> }): Promise<RunLevels> {
  const rl = createRunLevels(cl.node(n), cl.reg(n), {
    phases: PHASES,
    enter: async (p) => {
      log.push(`${n} enter ${p}`);
      if (hold?.phase === p) await hold.until;
    },
    leave: (p) => void log.push(`${n} leave ${p}`),
  });
  await cl.settle(rl.start());
  return rl;
}

describe('nextStep', () => {
  it('enters the first phase, then walks one step at a time towards the target, up or down', () => {
    expect(nextStep(PHASES, undefined, 'draining')).toEqual({ kind: 'enter', phase: 'starting' });
    expect(nextStep(PHASES, 'starting', 'draining')).toEqual({ kind: 'enter', phase: 'serving' });
    expect(nextStep(PHASES, 'draining', 'starting')).toEqual({ kind: 'leave', phase: 'draining' });
    expect(nextStep(PHASES, 'serving', 'serving')).toBeUndefined();
    expect(nextStep(PHASES, 'serving', 'unknown')).toBeUndefined();
  });
});

describe('bad input', () => {
  it('phases must be distinct and non-empty, and the cluster moves only to a declared phase (REGISTRY_ERR_INVALID_VALUE)', async () => {
    c = regCluster(1);
    await c.until(() => c!.ready(1), 30_000, 'registry started');
    expect(() => createRunLevels(c!.node(1), c!.reg(1), { phases: [] })).toThrow(expect.objectContaining({ registryCode: 'REGISTRY_ERR_INVALID_VALUE' }));
    expect(() => createRunLevels(c!.node(1), c!.reg(1), { phases: ['a', 'a'] })).toThrow(expect.objectContaining({ registryCode: 'REGISTRY_ERR_INVALID_VALUE' }));
    const rl = createRunLevels(c.node(1), c.reg(1), { phases: PHASES });
    await expect(rl.moveCluster('sleeping')).rejects.toMatchObject({ registryCode: 'REGISTRY_ERR_INVALID_VALUE' });
    expect(c.reg(1).has('runlevels/target')).toBe(false);
  });
});

describe('misuse', () => {
  it('a node or registry of the wrong kind, options of the wrong shape and reached() of an unknown phase are refused at once with typed errors', async () => {
    c = regCluster(1);
    await c.until(() => c!.ready(1), 30_000, 'registry started');
    const node = c.node(1);
    const reg = c.reg(1);
    const bad = (x: unknown) => x as never;
    const failure = (f: () => unknown): unknown => {
      try {
        f();
      } catch (e) {
        return { code: (e as { code?: unknown }).code, path: (e as { path?: unknown }).path };
      }
      return undefined;
    };
    const argument = { code: 'REGISTRY_ERR_INVALID_ARGUMENT', path: undefined };
    const option = (path: string) => ({ code: 'CONFIG_ERR_INVALID_OPTION', path });
    expect(failure(() => createRunLevels(bad(null), reg, { phases: PHASES }))).toEqual(argument);
    expect(failure(() => createRunLevels(node, bad(null), { phases: PHASES }))).toEqual(argument);
    expect(failure(() => createRunLevels(node, bad({}), { phases: PHASES }))).toEqual(argument);
    expect(failure(() => createRunLevels(node, reg, bad(null)))).toEqual(option('(root)'));
    expect(failure(() => createRunLevels(node, reg, bad({ phases: PHASES, phasse: 1 })))).toEqual(option('(root)'));
    // A string is not a list: it walked through the phases 's', 't', 'a', ….
    expect(failure(() => createRunLevels(node, reg, { phases: bad('starting') }))).toEqual(option('phases'));
    expect(failure(() => createRunLevels(node, reg, { phases: bad(['starting', 2]) }))).toEqual(option('phases.1'));
    expect(failure(() => createRunLevels(node, reg, { phases: [''] }))).toEqual(option('phases.0'));
    // It failed on the first step of start(), with a TypeError.
    expect(failure(() => createRunLevels(node, reg, { phases: PHASES, enter: bad(5) }))).toEqual(option('enter'));
    expect(failure(() => createRunLevels(node, reg, { phases: PHASES, leave: bad('no') }))).toEqual(option('leave'));
    // reached() of a phase that was not declared is refused as moveCluster() is (it answered false).
    const rl = createRunLevels(node, reg, { phases: PHASES });
    expect(failure(() => rl.reached('sleeping'))).toEqual({ code: 'REGISTRY_ERR_INVALID_VALUE', path: undefined });
    expect(failure(() => rl.reached(bad(undefined)))).toEqual({ code: 'REGISTRY_ERR_INVALID_VALUE', path: undefined });
    // Nothing was written.
    expect(reg.entries('runlevels/')).toEqual([]);
  });
});

describe('run levels', () => {
  it('the cluster moves as a whole; a late joiner walks up to the target before it counts as up; moving back walks down', async () => {
    c = regCluster(4, { startOnly: [1, 2, 3] });
    await c.until(() => range(3).every((n) => c!.ready(n)), 30_000, 'registries started');
    const log: string[] = [];
    const rl = new Map<number, RunLevels>();
    for (const n of range(3)) rl.set(n, await levels(c, n, log));
    await c.until(() => rl.get(1)!.reached('starting'), 10_000, 'every node starting');
    expect(rl.get(1)!.reached('serving')).toBe(false);
    await c.settle(rl.get(2)!.moveCluster('serving'));
    await c.until(() => rl.get(1)!.reached('serving'), 10_000, 'every node serving');
    for (const n of range(3)) expect(log.filter((l) => l.startsWith(`${n} `))).toEqual([`${n} enter starting`, `${n} enter serving`]);
    expect(rl.get(3)!.upNodes()).toEqual([1, 2, 3]);
    // The phase is in each node's membership metadata too: the admin endpoint has it, and `cluster status` shows a PHASE column.
    await c.until(() => range(3).every((n) => c!.node(1).info(n)?.meta.runlevel === 'serving'), 10_000, 'phases in the metadata');
    const status = formatStatus(statusView(c.node(1)), makeStyle(false));
    expect(status).toMatch(/NODE\s+STATE\s+PHASE\s+INCARNATION/);
    for (const n of range(3)) expect(status).toMatch(new RegExp(`^${n}( \\*)?\\s+Up\\s+serving\\s`, 'm'));

    // Node 4 joins; its entry into `serving` is held: it is Up in the membership, not up for the application.
    c.start(4);
    await c.until(() => c!.ready(4), 30_000, 'node 4');
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const starting4 = levels(c, 4, log, { phase: 'serving', until: held });
    await c.until(() => log.includes('4 enter serving'), 10_000, 'node 4 walking up');
    await c.until(() => rl.get(1)!.phases().get(4) === 'starting', 10_000, 'node 4 at starting');
    expect(rl.get(1)!.upNodes()).toEqual([1, 2, 3]);
    expect(rl.get(1)!.reached('serving')).toBe(false);
    release();
    rl.set(4, await starting4);
    await c.until(() => rl.get(1)!.reached('serving'), 10_000, 'node 4 serving');
    expect(rl.get(1)!.upNodes()).toEqual([1, 2, 3, 4]);

    // Up to draining, then back to starting: each node leaves draining, then serving.
    await c.settle(rl.get(1)!.moveCluster('draining'));
    await c.until(() => rl.get(1)!.reached('draining'), 10_000, 'every node draining');
    await c.settle(rl.get(1)!.moveCluster('starting'));
    await c.until(() => rl.get(1)!.reached('starting'), 10_000, 'every node back to starting');
    for (const n of range(4)) expect(log.filter((l) => l.startsWith(`${n} `)).slice(-3)).toEqual([`${n} enter draining`, `${n} leave draining`, `${n} leave serving`]);
  });

  it('leave() walks this node down and removes it; a crashed node\u2019s phase vanishes with it', async () => {
    c = regCluster(3);
    await c.until(() => range(3).every((n) => c!.ready(n)), 30_000, 'registries started');
    const log: string[] = [];
    const rl = new Map<number, RunLevels>();
    for (const n of range(3)) rl.set(n, await levels(c, n, log));
    await c.settle(rl.get(1)!.moveCluster('draining'));
    await c.until(() => rl.get(1)!.reached('draining'), 10_000, 'every node draining');
    await c.settle(rl.get(3)!.leave());
    expect(log.filter((l) => l.startsWith('3 ')).slice(-3)).toEqual(['3 leave draining', '3 leave serving', '3 leave starting']);
    expect(rl.get(3)!.phase).toBeUndefined();
    await c.until(() => !rl.get(1)!.phases().has(3), 10_000, 'node 3 gone from the map');
    // A closed RunLevels stays where it is when the cluster moves.
    rl.get(2)!.close();
    await c.settle(rl.get(1)!.moveCluster('serving'));
    await c.until(() => rl.get(1)!.phase === 'serving', 10_000, 'node 1 serving');
    expect(rl.get(2)!.phase).toBe('draining');
    // A crash: the phase entry is owned by the incarnation, so the registry removes it.
    const victim = c.node(1).keyService('registry.svc')!.host === 2 ? 1 : 2;
    const other = victim === 1 ? 2 : 1;
    c.kill(victim);
    await c.until(() => !rl.get(other)!.phases().has(victim), 30_000, `node ${victim}'s phase to vanish`);
    expect([...rl.get(other)!.phases().keys()]).toEqual([other]);
  });

  it('start() twice follows the target once; leave() before start() enters nothing; start() after leave() follows again', async () => {
    c = regCluster(2);
    await c.until(() => range(2).every((n) => c!.ready(n)), 30_000, 'registries started');
    const log: string[] = [];
    const rl1 = await levels(c, 1, log);
    // Never started: leave() resolves without entering (it entered the first phase, ran enter, and left it).
    const idle = createRunLevels(c.node(2), c.reg(2), { phases: PHASES, enter: (p) => void log.push(`2 enter ${p}`), leave: (p) => void log.push(`2 leave ${p}`) });
    await c.settle(idle.leave());
    expect(log.filter((l) => l.startsWith('2 '))).toEqual([]);
    // A second start() adds no second listener: the registry's change listeners stay as they were.
    const listeners = c.reg(1).listenerCount('change');
    await c.settle(rl1.start());
    expect(c.reg(1).listenerCount('change')).toBe(listeners);
    await c.settle(rl1.moveCluster('serving'));
    await c.until(() => rl1.phase === 'serving', 10_000, 'node 1 serving');
    expect(log).toEqual(['1 enter starting', '1 enter serving']);
    // Left, then started again: it walks up to the target once more, and follows it.
    await c.settle(rl1.leave());
    expect(c.reg(1).listenerCount('change')).toBe(listeners - 1);
    await c.settle(rl1.start());
    expect(rl1.phase).toBe('serving');
    await c.settle(rl1.moveCluster('draining'));
    await c.until(() => rl1.phase === 'draining', 10_000, 'node 1 draining');
    expect(log.slice(2)).toEqual(['1 leave serving', '1 leave starting', '1 enter starting', '1 enter serving', '1 enter draining']);
  });
});
