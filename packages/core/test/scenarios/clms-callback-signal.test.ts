/**
 * Every subsystem callback gets the node's close signal, and an evicted
 * node runs the nodedown callbacks of every member side by side: callbacks
 * that listen on the signal while they work then add more than Node's
 * default of 10 listeners to one AbortSignal. That is expected, so the node
 * raises the signal's limit (driver/runtime.ts) instead of letting Node
 * print a "possible memory leak" warning into the application's log.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { allUp, range, type SimCluster, simCluster } from './clms-harness.js';

let sim: SimCluster | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

describe('subsystem callbacks listening on the close signal', () => {
  it('an eviction with 13 members runs them side by side without a MaxListenersExceededWarning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const size = 14;
      sim = simCluster(size, { candidates: [1, 2, 3] });
      const s = sim;
      await s.until(() => allUp(s, range(size)) && s.converged(range(size)), 60_000, 'formation');
      const victim = s.node(size);
      let running = 0;
      let most = 0;
      victim.registerSubsystem({
        name: 'listens-on-signal',
        nodedown: async ({ signal }) => {
          running++;
          most = Math.max(most, running);
          const onAbort = (): void => {};
          signal.addEventListener('abort', onAbort);
          // Work that takes a while on the virtual clock, listening all along.
          await new Promise<void>((resolve) => s.clock.setTimeout(resolve, 500));
          signal.removeEventListener('abort', onAbort);
          running--;
        },
      });
      const first = victim.incarnation;
      // Cut off long enough that the node gives up on its master and starts again.
      s.network.isolate(`node-${size}`);
      await s.until(() => victim.incarnation !== first, 120_000, 'the isolated node to start again');
      s.network.heal(`node-${size}`);
      await s.until(() => running === 0, 10_000, 'its nodedown callbacks to end');
      // The case happened: more than ten callbacks listened at once.
      expect(most).toBeGreaterThan(10);
      expect(warnings.filter((w) => w.includes('MaxListeners'))).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });
});
