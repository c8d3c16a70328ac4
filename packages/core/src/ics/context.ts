/**
 * The handler context travels with the async work a handler starts
 * (AsyncLocalStorage), so that calls made from inside a handler are raised
 * to a priority lane (breaking the callback deadlock the seeds describe)
 * and inherit the handler's deadline and cancellation.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export interface HandlerContextStore {
  /** The ICS instance running the handler: only its own calls are raised. */
  owner: object;
  /** Absolute deadline on the owner's clock, or undefined. */
  deadline: number | undefined;
  /** Aborts when the incoming call is cancelled, times out, or its caller goes down. */
  signal: AbortSignal;
}

export const handlerContext = new AsyncLocalStorage<HandlerContextStore | undefined>();

/**
 * Run `fn` outside any handler context: background work started while a
 * handler runs (a timer loop, a queue drained later) would otherwise inherit
 * the handler's deadline, cancellation and priority. What `fn` starts is
 * detached too.
 *
 * `fn` runs with no store (`run(undefined)`), not through
 * `AsyncLocalStorage.exit`: on Node 20 `exit` switches the process's async
 * hooks off and back on around `fn`, which cost CLMS (it detaches every
 * call and send it starts) more than the hooks save inside `fn`.
 */
export function detached<T>(fn: () => T): T {
  return handlerContext.run(undefined, fn);
}
