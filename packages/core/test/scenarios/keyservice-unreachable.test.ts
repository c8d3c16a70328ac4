/**
 * A call by name to a key-service host that has just died, before anyone
 * has declared it down: the connection to it is refused, so the call was
 * never sent and must wait for the failover instead of failing (found by
 * the demo, examples/demo.ts, where the host was also the master and the
 * window lasted as long as the election).
 */
import { afterEach, expect, it } from 'vitest';
import { type SimCluster, simCluster } from './clms-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

it('a non-idempotent call to a host that is unreachable (never sent) waits for the failover and runs once on the new host', async () => {
  sim = simCluster(3, { candidates: [1, 2, 3] });
  const ran: number[] = [];
  for (const n of [1, 2, 3]) {
    sim.node(n).registerKeyService({
      name: 'ledger',
      critical: true,
      subservice: 1,
      handlers: { add: () => (ran.push(n), n) },
    });
  }
  // Formed, and every node Up everywhere (so that two survivors are a majority of the voters).
  const all = [1, 2, 3];
  await sim.until(
    () => all.every((n) => sim!.node(n).formed && all.every((m) => sim!.node(n).info(m)?.state === 'Up')) && sim!.converged(all),
    30_000,
    'formed',
  );
  const host = sim.node(1).keyService('ledger')!.host!;
  // The host is also the master: the survivors need an election before anyone declares it down.
  expect(sim.node(1).master).toBe(host);
  const caller = [1, 2, 3].find((n) => n !== host)!;
  sim.kill(host);
  // Let the broken links be noticed, but not the election (stagger and failure timeout are longer).
  await sim.clock.advance(1);
  expect(sim.node(caller).keyService('ledger')?.host).toBe(host);
  let outcome: { ok: boolean; value: unknown } | undefined;
  sim
    .node(caller)
    .callKeyService('ledger', 'add', null, { timeoutMs: 20_000 })
    .then(
      (value) => (outcome = { ok: true, value }),
      (err: { code?: string; message?: string }) => (outcome = { ok: false, value: `${err.code}: ${err.message}` }),
    );
  await sim.until(() => outcome !== undefined, 30_000, 'the call settles');
  expect(outcome?.ok, String(outcome?.value)).toBe(true);
  const moved = sim.node(caller).keyService('ledger')!;
  expect(moved.host).not.toBe(host);
  expect(outcome?.value).toBe(moved.host);
  expect(ran).toEqual([moved.host]);
});
