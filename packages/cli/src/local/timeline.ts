/**
 * One readable line per event of the local cluster, for the merged timeline:
 *
 *   +  1.234s  node 2  nodeup node 3
 *
 * Events that only feed the machinery (raw transitions, process output) give
 * undefined: print what a person follows, keep the rest in `events`.
 */
import type { LocalEvent } from './launcher.js';

export function formatTime(ms: number): string {
  return `+${(ms / 1000).toFixed(3).padStart(7)}s`;
}

const short = (v: unknown): string => JSON.stringify(v) ?? String(v);

/** The text of an event, or undefined for events a timeline leaves out. */
export function describeEvent(e: LocalEvent): string | undefined {
  switch (e.type) {
    case 'spawned':
      return `process started (pid ${e.pid})`;
    case 'ready':
      return `ready at ${e.address}, incarnation ${e.incarnation}${e.adminUrl ? `, admin ${e.adminUrl}` : ''}${e.adminError ? ` (no admin endpoint: ${e.adminError})` : ''}`;
    case 'master':
      return e.master === undefined ? `no master (term ${e.term})` : `master is node ${e.master} (term ${e.term})`;
    case 'nodeup':
      return `nodeup node ${e.of}`;
    case 'nodedown':
      return `nodedown node ${e.of} (${e.state})`;
    case 'cleanup':
      return `cleanup for node ${e.of} done: subsystem ${e.subsystem} (band ${e.band}) ${e.detail}`;
    case 'keyservice': {
      const k = e.info;
      if (k.halted) return `key service ${k.name} HALTED (no eligible node)`;
      if (k.host === undefined) return `key service ${k.name} has no host (epoch ${k.epoch})`;
      return `key service ${k.name} ${k.ready ? 'ready' : 'assigned'} on node ${k.host} (epoch ${k.epoch})`;
    }
    case 'formed':
      return e.formed ? 'cluster formed (every critical key service has a host)' : 'cluster not formed (a critical key service has no ready host)';
    case 'failover':
      return `taking over ${e.name} (epoch ${e.epoch}${e.previousHost !== undefined ? `, from node ${e.previousHost}` : ''})`;
    case 'pulled': {
      const parts = Object.entries(e.from).map(([n, d]) => `node ${n}: ${short(d)}`);
      return `pulled ${e.name} data from survivors [${parts.join(', ')}] → balance ${e.balance}`;
    }
    case 'call': {
      const r = e.result as { balance?: unknown; host?: unknown; epoch?: unknown } | undefined;
      if (e.ok && typeof r?.balance === 'number' && typeof r.host === 'number') {
        return `call ${e.method} ok → balance ${r.balance} (host node ${r.host}, epoch ${String(r.epoch)})`;
      }
      return e.ok ? `call ${e.method} ok → ${short(e.result)}` : `call ${e.method} FAILED: ${e.code ?? ''} ${e.error ?? ''}`.replace(/\s+/g, ' ');
    }
    case 'killed':
      return `${e.signal} sent to pid ${e.pid}`;
    case 'exited':
      return `process exited (${e.signal ?? `code ${e.code}`})`;
    case 'fatal':
      return `FATAL ${e.error.split('\n')[0]}`;
    default:
      return undefined;
  }
}

/** `+  1.234s  node 2  <text>`, or undefined for events a timeline leaves out. */
export function formatEvent(e: LocalEvent): string | undefined {
  const text = describeEvent(e);
  return text === undefined ? undefined : `${formatTime(e.at)}  node ${String(e.node).padEnd(2)} ${text}`;
}
