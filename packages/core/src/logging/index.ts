/**
 * A pino-compatible logger contract: pass a pino logger (or anything with
 * the same methods) and ClusterInfra logs through it. The default is silent
 * unless `NODE_DEBUG=clusterinfra` is set, in which case lines go to stderr
 * through `util.debuglog`.
 */
import { debuglog } from 'node:util';

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
        if (typeof first === 'string') debug(`${level} ${prefix}${first}`, ...rest);
        else debug(`${level} ${prefix}${String(rest[0] ?? '')} %j`, first);
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
