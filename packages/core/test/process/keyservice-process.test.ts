/**
 * A key service over transport-tcp with every node a separate OS process
 * (cluster.ts, node-runner.ts): SIGKILL the host, the key service moves to
 * another node with the data pulled from the survivors, and a client keeps
 * calling it by name through the failover without seeing an error. Timing is
 * not asserted (the figure is in bench/clms.ts); outcome and order are.
 */
import { afterEach, expect, it } from 'vitest';
import type { KeyServiceInfo } from '../../src/index.js';
import { ProcCluster } from './cluster.js';

// Ceilings, not measurements: CI runs these beside the rest of the suite on 2 cores.
const TEST_TIMEOUT = 150_000;
const WAIT = 50_000;

let cluster: ProcCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

interface Answer {
  value: number;
  epoch: number;
  node: number;
}

/** The latest keyservice view node `n` reported for `name`. */
const viewAt = (c: ProcCluster, n: number, name: string): KeyServiceInfo | undefined => {
  for (let i = c.node(n).keyService.length - 1; i >= 0; i--) {
    const r = c.node(n).keyService[i]!.value;
    if (r.event === 'info' && r.info.name === name) return r.info;
  }
  return undefined;
};

it(
  'SIGKILL of the key-service host: the service moves with its data and a client calling it by name sees no error',
  async () => {
    const c = (cluster = await ProcCluster.start({ size: 3, preset: 'lan', config: { keyService: { name: 'counter', critical: true } } }));
    const all = [1, 2, 3];
    await c.until(() => c.allUp(all) && all.every((n) => viewAt(c, n, 'counter')?.ready === true), WAIT, 'the key service ready everywhere');
    const first = viewAt(c, 1, 'counter')!;
    const host = first.host!;
    const survivors = all.filter((n) => n !== host);
    const client = c.node(survivors[0]!);
    // Give the counter a value the failover must carry over (pulled from the survivors).
    const added = await client.call<Answer>('counter', 'add', 5, 20_000);
    expect(added).toMatchObject({ value: 5, epoch: first.epoch, node: host });

    // The client calls `get` (idempotent) one call after another; the host dies under it.
    const answers: Answer[] = [];
    const errors: string[] = [];
    let stop = false;
    const loop = (async () => {
      for (let i = 0; i < 500 && !stop; i++) {
        try {
          answers.push(await client.call<Answer>('counter', 'get', null, 30_000));
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
    })();
    await c.until(() => answers.length >= 3, WAIT, 'calls before the kill');
    c.kill(host);
    await c.until(
      () => survivors.every((n) => { const v = viewAt(c, n, 'counter'); return v?.ready === true && v.host !== host; }),
      WAIT,
      'the key service ready on a new host',
    );
    const moved = viewAt(c, survivors[0]!, 'counter')!;
    const before = answers.length;
    await c.until(() => answers.length >= before + 3 || errors.length > 0, WAIT, 'calls after the failover');
    stop = true;
    await loop;

    expect(errors).toEqual([]);
    expect(moved.epoch).toBeGreaterThan(first.epoch);
    expect(survivors).toContain(moved.host);
    // Every answer came from the host of its epoch, epochs only grow, and the value survived.
    for (const a of answers) expect(a.node).toBe(a.epoch === first.epoch ? host : moved.host);
    expect(answers.map((a) => a.epoch)).toEqual([...answers.map((a) => a.epoch)].sort((x, y) => x - y));
    expect(answers.at(-1)).toMatchObject({ value: 5, epoch: moved.epoch, node: moved.host });
    // The new host pulled from every survivor before it was ready.
    const data = c.node(moved.host!).keyService.find((s) => s.value.event === 'data' && s.value.epoch === moved.epoch);
    expect(data && data.value.event === 'data' ? [...data.value.from].sort() : []).toEqual(survivors);
    expect(c.node(moved.host!).fatal).toEqual([]);
  },
  TEST_TIMEOUT,
);
