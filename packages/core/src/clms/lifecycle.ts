/**
 * The waits of a node's lifecycle that users await: `start({ timeoutMs,
 * signal })` giving up with the reasons it was waiting for, and
 * `whenUp({ signal })`. Both wait on the node's injected clock, so they run
 * on a virtual clock in tests.
 */
import { z } from 'zod';
import type { Clock } from '../clock/index.js';
import { AbortedError, NodeClosedError, NotJoinedError } from '../errors/index.js';

export interface StartOptions {
  /** Give up (close the node, reject with NotJoinedError) when it has not joined by then. @default no limit */
  timeoutMs?: number;
  /** Give up when this aborts. */
  signal?: AbortSignal;
}

export const startOptionsSchema = z.strictObject({
  timeoutMs: z.number().int().min(0).max(2 ** 31 - 1).optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'expected an AbortSignal').optional(),
});

/**
 * `booting`, or give up when the timeout passes or the signal aborts first:
 * then the node closes and the promise rejects with NotJoinedError carrying
 * the reasons joining was waiting for.
 */
export function giveUpAfter(
  booting: Promise<void>,
  o: { timeoutMs?: number | undefined; signal?: AbortSignal | undefined; clock: Clock; nodeNum: number; reasons: () => readonly string[]; close: () => Promise<void> },
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const timer = o.timeoutMs === undefined ? undefined : o.clock.setTimeout(() => giveUp(`node ${o.nodeNum} did not join within ${o.timeoutMs} ms`), o.timeoutMs);
    const onAbort = (): void => giveUp(`start() of node ${o.nodeNum} was aborted before it joined`, o.signal?.reason);
    const finish = (): void => {
      settled = true;
      timer?.cancel();
      o.signal?.removeEventListener('abort', onAbort);
    };
    function giveUp(message: string, cause?: unknown): void {
      if (settled) return;
      finish();
      // The reasons as they stood, before closing changes anything.
      const err = new NotJoinedError(message, { reasons: o.reasons(), ...(cause === undefined ? {} : { cause }) });
      booting.catch(() => {});
      void o.close().then(
        () => reject(err),
        () => reject(err),
      );
    }
    if (o.signal?.aborted) return onAbort();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    booting.then(
      () => {
        if (settled) return;
        finish();
        resolve();
      },
      (err: unknown) => {
        if (settled) return;
        finish();
        reject(err as Error);
      },
    );
  });
}

interface Emitter {
  on(event: 'nodeup' | 'transition', fn: () => void): unknown;
  off(event: 'nodeup' | 'transition', fn: () => void): unknown;
}

/** Resolve with `node` once `isUp()`; re-checked on every transition and nodeup event. */
export function waitForUp<N extends Emitter>(
  node: N,
  o: { isUp: () => boolean; isClosed: () => boolean; closed: AbortSignal; signal?: AbortSignal },
): Promise<N> {
  if (o.isUp()) return Promise.resolve(node);
  if (o.isClosed()) return Promise.reject(new NodeClosedError('the node is closed: it will not be Up'));
  if (o.signal?.aborted) return Promise.reject(new AbortedError('whenUp() aborted', { cause: o.signal.reason }));
  return new Promise<N>((resolve, reject) => {
    const check = (): void => {
      if (o.isUp()) done(() => resolve(node));
    };
    const onClosed = (): void => done(() => reject(new NodeClosedError('the node closed before it was Up')));
    const onAbort = (): void => done(() => reject(new AbortedError('whenUp() aborted', { cause: o.signal?.reason })));
    const done = (settle: () => void): void => {
      node.off('nodeup', check);
      node.off('transition', check);
      o.closed.removeEventListener('abort', onClosed);
      o.signal?.removeEventListener('abort', onAbort);
      settle();
    };
    node.on('nodeup', check);
    node.on('transition', check);
    o.closed.addEventListener('abort', onClosed, { once: true });
    o.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
