/**
 * DNS discovery: the addresses of a cluster's nodes from A, AAAA or SRV
 * records, e.g. a Kubernetes headless service. Pass the result as the
 * `discovery` option of a ClusterNode; it is asked each time the node looks
 * for the master.
 *
 * Guarantees:
 * - `addresses()` never throws. A name that does not exist (NXDOMAIN) or has
 *   no records of the type asked gives []; any other failure (timeout,
 *   SERVFAIL, refused) keeps the last good answer and is logged.
 * - The first call waits for a lookup; later calls answer from the cache,
 *   which a timer on the injected Clock refreshes every `refreshMs` while the
 *   node keeps asking. When nobody asked for a whole period the timer stops,
 *   and the next call waits for a fresh lookup again (so a node that looks
 *   for the master after hours as a member does not probe a stale list).
 * - Lookups go through a private resolver: the process-wide resolver and its
 *   servers are never touched.
 * - The answer is bounded (`maxAddresses`) and formatted as transport-tcp
 *   expects: `host:port`, an IPv6 host in brackets.
 */
import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';
import { z } from 'zod';
import { type Clock, realClock, type TimerHandle } from '../clock/index.js';
import { parseOptions } from '../config/index.js';
import { InvalidOptionError } from '../errors/index.js';
import { defaultLogger, type Logger } from '../logging/index.js';
import type { Discovery } from './options.js';

export interface DnsDiscoveryOptions {
  /** The name to look up, e.g. `nodes.my-ns.svc.cluster.local` or `_clms._tcp.nodes.my-ns.svc.cluster.local`. */
  name: string;
  /** Record type: A or AAAA (with `port`), or SRV (each record gives a target and its port). @default 'A' */
  type?: 'A' | 'AAAA' | 'SRV';
  /** Port of every address found (A and AAAA only; SRV records carry their own). */
  port?: number;
  /** How often the cache is refreshed while the node keeps asking. @default 5000 */
  refreshMs?: number;
  /** Timeout of one DNS query attempt. @default 2000 */
  timeoutMs?: number;
  /** Attempts per query before the lookup counts as failed. @default 2 */
  tries?: number;
  /** DNS servers (`ip` or `ip:port`, IPv6 as `[ip]:port`) for this discovery only. @default the system's */
  servers?: string[];
  /** Most addresses returned (and SRV targets resolved). @default 1024 */
  maxAddresses?: number;
  clock?: Clock;
  logger?: Logger;
}

/** Defaults of DnsDiscoveryOptions (also in the doc comments above). */
export const DNS_DISCOVERY_DEFAULTS = {
  type: 'A',
  refreshMs: 5000,
  timeoutMs: 2000,
  tries: 2,
  maxAddresses: 1024,
} as const;

/** SRV targets resolved at once: a big SRV answer must not fire a thousand queries together. */
const TARGET_CONCURRENCY = 16;

// Labels may hold underscores: SRV names are `_service._proto.name`.
const DNS_NAME = /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

const schema = z
  .strictObject({
    name: z.string().regex(DNS_NAME, 'expected a DNS name'),
    type: z.enum(['A', 'AAAA', 'SRV']).default(DNS_DISCOVERY_DEFAULTS.type),
    port: z.number().int().min(1).max(65535).optional(),
    refreshMs: z.number().int().min(10).max(86_400_000).default(DNS_DISCOVERY_DEFAULTS.refreshMs),
    timeoutMs: z.number().int().min(1).max(60_000).default(DNS_DISCOVERY_DEFAULTS.timeoutMs),
    tries: z.number().int().min(1).max(10).default(DNS_DISCOVERY_DEFAULTS.tries),
    servers: z.array(z.string().min(1).max(64)).min(1).max(16).optional(),
    maxAddresses: z.number().int().min(1).max(65_535).default(DNS_DISCOVERY_DEFAULTS.maxAddresses),
    clock: z.custom<Clock>((v) => typeof v === 'object' && v !== null && 'setTimeout' in v && 'now' in v, 'expected a Clock').optional(),
    logger: z.custom<Logger>((v) => typeof v === 'object' && v !== null && 'child' in v, 'expected a logger').optional(),
  })
  .superRefine((o, ctx) => {
    if (o.type === 'SRV' && o.port !== undefined) ctx.addIssue({ code: 'custom', path: ['port'], message: 'SRV records carry the port; do not set port' });
    if (o.type !== 'SRV' && o.port === undefined) ctx.addIssue({ code: 'custom', path: ['port'], message: `required for ${o.type} records` });
  });

type Resolved = z.output<typeof schema>;

/** Create a DNS discovery. Bad options throw InvalidOptionError naming the option. */
export function dnsDiscovery(options: DnsDiscoveryOptions): Discovery & { close(): void } {
  return new DnsDiscovery(parseOptions('dnsDiscovery', schema, options));
}

/** DNS error codes that mean "the name has no such records": an answer, not a failure. */
const NO_RECORDS: ReadonlySet<string> = new Set([dns.NOTFOUND, dns.NODATA]);

class DnsDiscovery implements Discovery {
  private readonly resolver: dns.Resolver;
  private readonly clock: Clock;
  private readonly log: Logger;
  /** The last good answer; undefined until one lookup succeeded. */
  private answer: string[] | undefined;
  private inflight: Promise<void> | undefined;
  private timer: TimerHandle | undefined;
  /** Someone asked since the timer last fired: keep refreshing. */
  private asked = false;
  private closed = false;

  constructor(private readonly o: Resolved) {
    this.clock = o.clock ?? realClock;
    this.log = (o.logger ?? defaultLogger()).child({ component: 'discovery', name: o.name });
    this.resolver = new dns.Resolver({ timeout: o.timeoutMs, tries: o.tries });
    if (o.servers) {
      try {
        this.resolver.setServers(o.servers);
      } catch (err) {
        throw new InvalidOptionError('servers', `dnsDiscovery: invalid option servers: ${(err as Error).message}`);
      }
    }
  }

  async addresses(): Promise<string[]> {
    if (this.closed) return [];
    this.asked = true;
    // No timer means nobody asked for a whole period (or never): the cache
    // may be stale, so this call waits for a lookup. Otherwise the timer
    // keeps the cache fresh and the call answers at once.
    if (this.timer === undefined) {
      await this.refresh();
      this.schedule();
    }
    return this.answer ? [...this.answer] : [];
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.resolver.cancel();
  }

  /** One background refresh per period, as long as someone asked during the last one. */
  private schedule(): void {
    if (this.closed || this.timer !== undefined) return;
    this.asked = false;
    const tick = (): void => {
      this.timer = undefined;
      if (this.closed || !this.asked) return; // idle: the next call looks up again
      void this.refresh().then(() => this.schedule());
    };
    this.timer = this.clock.setTimeout(tick, this.o.refreshMs).unref();
  }

  /** Look the name up once (concurrent callers share the lookup) and update the cache. */
  private refresh(): Promise<void> {
    this.inflight ??= this.lookup()
      .then(
        (found) => {
          if (this.closed) return;
          this.answer = found;
          this.log.debug({ addresses: found.length }, 'discovery refreshed');
        },
        (err: unknown) => {
          if (this.closed) return;
          const e = err as NodeJS.ErrnoException;
          this.log.warn({ err: e.message, code: e.code, kept: this.answer?.length ?? 0 }, 'DNS lookup failed; keeping the last good answer');
        },
      )
      .finally(() => {
        this.inflight = undefined;
      });
    return this.inflight;
  }

  /**
   * The current addresses, or a rejection for a lookup that failed (not for
   * NXDOMAIN / no data). One SRV target that fails to resolve fails the whole
   * lookup: the last good answer is better than a silently shortened one.
   */
  private async lookup(): Promise<string[]> {
    if (this.o.type === 'SRV') return this.lookupSrv();
    const hosts = await this.hostsOf(this.o.name, this.o.type);
    return unique(hosts.map((h) => formatAddress(h, this.o.port!))).slice(0, this.o.maxAddresses);
  }

  private async lookupSrv(): Promise<string[]> {
    let records: { name: string; port: number; priority: number; weight: number }[];
    try {
      records = await this.resolver.resolveSrv(this.o.name);
    } catch (err) {
      if (NO_RECORDS.has((err as NodeJS.ErrnoException).code ?? '')) return [];
      throw err;
    }
    // Preferred targets first (lower priority, then higher weight): the list is
    // cut at maxAddresses, and the node probes in this order.
    records.sort((a, b) => a.priority - b.priority || b.weight - a.weight || a.name.localeCompare(b.name) || a.port - b.port);
    records = records.slice(0, this.o.maxAddresses);
    const perTarget = await mapBounded(records, TARGET_CONCURRENCY, async (r) => {
      const hosts = isIP(r.name) ? [r.name] : await this.targetHosts(r.name);
      return hosts.map((h) => formatAddress(h, r.port));
    });
    return unique(perTarget.flat()).slice(0, this.o.maxAddresses);
  }

  /** A target's IPv4 addresses, or its IPv6 ones when it has none. */
  private async targetHosts(target: string): Promise<string[]> {
    const v4 = await this.hostsOf(target, 'A');
    return v4.length > 0 ? v4 : this.hostsOf(target, 'AAAA');
  }

  /** Addresses of `name`; [] when it does not exist or has no such records; rejects on a failed lookup. */
  private async hostsOf(name: string, type: 'A' | 'AAAA'): Promise<string[]> {
    try {
      return type === 'A' ? await this.resolver.resolve4(name) : await this.resolver.resolve6(name);
    } catch (err) {
      if (NO_RECORDS.has((err as NodeJS.ErrnoException).code ?? '')) return [];
      throw err;
    }
  }
}

/** `host:port`, an IPv6 host in brackets (the syntax of transport-tcp). */
function formatAddress(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}

/** `fn` over `items` with at most `limit` running at once; results in input order. */
async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
