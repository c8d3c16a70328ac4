/**
 * A pino-compatible logger contract: pass a pino logger (or anything with
 * the same methods) and ClusterInfra logs through it. The default is silent
 * unless `NODE_DEBUG=clusterinfra` is set, in which case lines go to stderr
 * through `util.debuglog`.
 */
import { debuglog, format } from 'node:util';

export interface LogFn {
  (msg: string, ...args: unknown[]): void;
  (obj: object, msg?: string, ...args: unknown[]): void;
}

export interface Logger {
  fatal: LogFn;
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
  trace: LogFn;
  child(bindings: Record<string, unknown>): Logger;
}

const noop: LogFn = () => {};

export const silentLogger: Logger = {
  fatal: noop,
  error: noop,
  warn: noop,
  info: noop,
  debug: noop,
  trace: noop,
  child: () => silentLogger,
};

/**
 * The default logger: silent, unless `NODE_DEBUG` names `clusterinfra`, in
 * which case every level is printed with its bindings.
 */
export function defaultLogger(): Logger {
  const debug = debuglog('clusterinfra');
  if (!debug.enabled) return silentLogger;
  const make = (bindings: Record<string, unknown>): Logger => {
    const prefix = Object.keys(bindings).length > 0 ? `${JSON.stringify(bindings)} ` : '';
    const at =
      (level: string): LogFn =>
      (first: unknown, ...rest: unknown[]) => {
        // pino's call shapes: (msg, ...args) and (obj, msg?, ...args). The
        // message's own %s/%d are filled from its args, then the object is
        // printed as JSON: a message with a %s of its own once took the
        // object for it and printed a bare `%j`, without the reason.
        if (typeof first === 'string') debug('%s', `${level} ${prefix}${format(first, ...rest)}`);
        else debug('%s', `${level} ${prefix}${format(String(rest[0] ?? ''), ...rest.slice(1))} ${safeJson(first)}`);
      };
    return {
      fatal: at('FATAL'),
      error: at('ERROR'),
      warn: at('WARN'),
      info: at('INFO'),
      debug: at('DEBUG'),
      trace: at('TRACE'),
      child: (more) => make({ ...bindings, ...more }),
    };
  };
  return make({});
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/**
 * Rate limits for repetitive log lines (a peer with the wrong secret
 * retrying many times a second): one line per key per `everyMs` of the
 * injected clock, and the next line that gets through says how many were
 * held back. Bounded: at most `maxKeys` keys are remembered (the oldest go).
 */
export class LogLimiter {
  private readonly last = new Map<string, { at: number; held: number }>();
  constructor(
    private readonly now: () => number,
    private readonly everyMs: number,
    private readonly maxKeys = 256,
  ) {}

  /** Whether a line for `key` may be logged now, and how many were held back since the last one. */
  take(key: string): { ok: boolean; suppressed: number } {
    const now = this.now();
    const seen = this.last.get(key);
    if (seen && now - seen.at < this.everyMs) {
      seen.held++;
      return { ok: false, suppressed: seen.held };
    }
    const suppressed = seen?.held ?? 0;
    this.last.delete(key);
    this.last.set(key, { at: now, held: 0 });
    if (this.last.size > this.maxKeys) this.last.delete(this.last.keys().next().value!);
    return { ok: true, suppressed };
  }
}
