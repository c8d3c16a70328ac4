/**
 * The options every transport's `listen` and `connect` take, checked the
 * same way in each (docs/writing-a-transport.md): a caller's mistake fails
 * at once with InvalidOptionError naming the option, not as a TypeError
 * from inside the transport, a timer armed with NaN, or a signal that is
 * never listened to.
 */
import { InvalidOptionError } from '../errors/index.js';
import { isAbortSignal } from '../ics/options.js';

/** The longest delay a Node.js timer takes (2^31 − 1 ms). */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * Throws InvalidOptionError unless `options` is undefined or an object
 * whose `signal` (when given) is an AbortSignal and, for `connect`, whose
 * `timeoutMs` (when given) is a number of ms from 0 to MAX_TIMER_MS.
 * `component` names the transport in the message ("tcp", "memory transport").
 */
export function checkTransportCallOptions(component: string, call: 'listen' | 'connect', options: unknown): void {
  if (options === undefined) return;
  const bad = (path: string, why: string): InvalidOptionError => new InvalidOptionError(path, `${component}: invalid option ${path}: ${why}`);
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw bad('(root)', `${call}'s options must be an object`);
  const { signal, timeoutMs } = options as { signal?: unknown; timeoutMs?: unknown };
  if (signal !== undefined && !isAbortSignal(signal)) throw bad('signal', 'must be an AbortSignal');
  if (call === 'connect' && timeoutMs !== undefined && !(typeof timeoutMs === 'number' && timeoutMs >= 0 && timeoutMs <= MAX_TIMER_MS)) {
    throw bad('timeoutMs', `must be a number of ms from 0 to ${MAX_TIMER_MS}, got ${String(timeoutMs)}`);
  }
}
