/**
 * `detached`: work started inside a handler's context, but outside it, with
 * everything it starts (promise continuations, timers, immediates).
 */
import { describe, expect, it } from 'vitest';
import { detached } from '@clusterinfra/core';
import { handlerContext, type HandlerContextStore } from '../src/ics/context.js';

const store: HandlerContextStore = { owner: {}, deadline: 5, signal: new AbortController().signal };

describe('detached', () => {
  it('runs fn without the handler context, and what fn starts stays without it', async () => {
    const seen: Record<string, unknown> = {};
    await handlerContext.run(store, async () => {
      seen.before = handlerContext.getStore();
      const inner = detached(() => {
        seen.inside = handlerContext.getStore();
        const later = Promise.resolve()
          .then(() => undefined)
          .then(() => (seen.continuation = handlerContext.getStore()));
        const immediate = new Promise<void>((resolve) =>
          setImmediate(() => {
            seen.immediate = handlerContext.getStore();
            resolve();
          }),
        );
        return Promise.all([later, immediate]);
      });
      seen.after = handlerContext.getStore();
      await inner;
      seen.afterAwait = handlerContext.getStore();
    });
    expect(seen).toEqual({ before: store, inside: undefined, continuation: undefined, immediate: undefined, after: store, afterAwait: store });
  });

  it('returns what fn returns and lets what it throws through, the context back either way', () => {
    handlerContext.run(store, () => {
      expect(detached(() => 7)).toBe(7);
      expect(() =>
        detached(() => {
          throw new Error('boom');
        }),
      ).toThrow('boom');
      expect(handlerContext.getStore()).toBe(store);
    });
    expect(detached(() => handlerContext.getStore())).toBeUndefined();
  });
});
