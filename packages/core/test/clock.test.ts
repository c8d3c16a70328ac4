import { describe, expect, it } from 'vitest';
import { AbortedError, every, InvalidArgumentError, InvalidOptionError, sleep, VirtualClock } from '@clusterinfra/core';

describe('VirtualClock', () => {
  it('moves only when told to', async () => {
    const clock = new VirtualClock({ startWallTime: 1000 });
    expect(clock.now()).toBe(0);
    expect(clock.wallNow()).toBe(1000);
    let fired = false;
    clock.setTimeout(() => (fired = true), 10);
    await clock.advance(9);
    expect(fired).toBe(false);
    expect(clock.now()).toBe(9);
    await clock.advance(1);
    expect(fired).toBe(true);
    expect(clock.wallNow()).toBe(1010);
  });

  it('fires timers by due time, and timers due together in the order they were set', async () => {
    const clock = new VirtualClock();
    const order: string[] = [];
    clock.setTimeout(() => order.push('c@20'), 20);
    clock.setTimeout(() => order.push('a@10'), 10);
    clock.setTimeout(() => order.push('b@10'), 10);
    clock.setTimeout(() => order.push('z@0'), 0);
    clock.setTimeout(() => order.push('neg'), -5);
    await clock.advance(100);
    expect(order).toEqual(['z@0', 'neg', 'a@10', 'b@10', 'c@20']);
  });

  it('runs timers set by timers, at their own due time', async () => {
    const clock = new VirtualClock();
    const seen: number[] = [];
    clock.setTimeout(() => {
      seen.push(clock.now());
      clock.setTimeout(() => seen.push(clock.now()), 5);
    }, 10);
    await clock.advance(12);
    expect(seen).toEqual([10]);
    await clock.advance(3);
    expect(seen).toEqual([10, 15]);
  });

  it('lets promise continuations settle between timers', async () => {
    const clock = new VirtualClock();
    const order: string[] = [];
    clock.setTimeout(() => {
      void Promise.resolve()
        .then(() => undefined)
        .then(() => order.push('continuation of first'));
    }, 1);
    clock.setTimeout(() => order.push('second'), 1);
    await clock.advance(1);
    expect(order).toEqual(['continuation of first', 'second']);
  });

  it('cancels timers and counts what is pending', async () => {
    const clock = new VirtualClock();
    let n = 0;
    const t = clock.setTimeout(() => n++, 5);
    clock.setTimeout(() => n++, 6);
    expect(clock.pending).toBe(2);
    t.cancel();
    t.cancel();
    expect(clock.pending).toBe(1);
    expect(clock.nextDue()).toBe(6);
    await clock.advance(10);
    expect(n).toBe(1);
    expect(clock.pending).toBe(0);
    expect(clock.nextDue()).toBeUndefined();
  });

  it('keeps cancelled timers bounded (timeouts set far ahead and cancelled), and fires the live ones in order', async () => {
    const clock = new VirtualClock();
    const heapSize = (): number => (clock as unknown as { heap: unknown[] }).heap.length;
    const fired: number[] = [];
    let peak = 0;
    // A call's timeout an hour ahead, cancelled when it is answered; every 100th is left to fire.
    for (let i = 0; i < 50_000; i++) {
      const t = clock.setTimeout(() => fired.push(i), 3_600_000 + (i % 7));
      if (i % 100 !== 0) t.cancel();
      peak = Math.max(peak, heapSize());
    }
    expect(clock.pending).toBe(500);
    expect(peak).toBeLessThan(3_000);
    // Cancelling a timer that fired already changes nothing.
    const done = clock.setTimeout(() => fired.push(-1), 0);
    await clock.advance(0);
    done.cancel();
    expect(clock.pending).toBe(500);
    await clock.advance(3_600_010);
    expect(clock.pending).toBe(0);
    const live = Array.from({ length: 500 }, (_, k) => k * 100);
    const expected = [...live].sort((a, b) => (a % 7) - (b % 7) || a - b);
    expect(fired).toEqual([-1, ...expected]);
  });

  it('refuses what would break it with typed errors; a NaN delay counts as 0', async () => {
    for (const o of [null, 5]) expect(() => new VirtualClock(o as never)).toThrow(InvalidOptionError);
    for (const w of ['x', Number.NaN, Number.POSITIVE_INFINITY]) expect(() => new VirtualClock({ startWallTime: w as never })).toThrow(InvalidOptionError);
    const clock = new VirtualClock();
    // A timer that is not a function failed when it fired, inside advance.
    expect(() => clock.setTimeout(null as never, 5)).toThrow(InvalidArgumentError);
    const ticks: number[] = [];
    every(clock, 10, () => ticks.push(clock.now()));
    // advance(NaN) fired the periodic timer forever (no target to stop at).
    for (const ms of [Number.NaN, 'x', Number.POSITIVE_INFINITY]) await expect(clock.advance(ms as never)).rejects.toThrow(InvalidArgumentError);
    await expect(clock.advanceUntil(5 as never)).rejects.toThrow(InvalidArgumentError);
    await expect(clock.advanceUntil(() => false, Number.NaN)).rejects.toThrow(InvalidArgumentError);
    expect(ticks).toEqual([]);
    // A NaN delay made a NaN due time, which broke the timers' order.
    const order: string[] = [];
    clock.setTimeout(() => order.push('later'), 3);
    clock.setTimeout(() => order.push('nan'), Number.NaN);
    await clock.advance(5);
    expect(order).toEqual(['nan', 'later']);
    expect(clock.now()).toBe(5);
  });

  it('runUntilIdle is bounded for periodic work', async () => {
    const clock = new VirtualClock();
    let ticks = 0;
    const h = every(clock, 10, () => ticks++);
    const fired = await clock.runUntilIdle({ maxTimers: 25 });
    expect(fired).toBe(25);
    expect(ticks).toBe(25);
    h.cancel();
    expect(await clock.runUntilIdle()).toBe(0);
  });

  it('advanceUntil stops when the predicate holds, or at the limit', async () => {
    const clock = new VirtualClock();
    let x = 0;
    every(clock, 7, () => x++);
    expect(await clock.advanceUntil(() => x === 3)).toBe(true);
    expect(clock.now()).toBe(21);
    expect(await clock.advanceUntil(() => x === 1000, 50)).toBe(false);
    expect(clock.now()).toBe(71);
  });

  it('sleep resolves on virtual time and rejects on abort', async () => {
    const clock = new VirtualClock();
    let done = false;
    const p = sleep(clock, 100).then(() => (done = true));
    await clock.advance(99);
    expect(done).toBe(false);
    await clock.advance(1);
    await p;
    expect(done).toBe(true);

    const ac = new AbortController();
    const q = sleep(clock, 100, ac.signal);
    ac.abort();
    await expect(q).rejects.toBeInstanceOf(AbortedError);
    expect(clock.pending).toBe(0);
    await expect(sleep(clock, 1, AbortSignal.abort())).rejects.toMatchObject({ code: 'CORE_ERR_ABORTED' });
  });
});
