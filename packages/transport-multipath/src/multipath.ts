import type { TransportContext, TransportFactory } from '@clusterinfra/core';
import { EventEmitter } from 'eventemitter3';
import { MULTIPATH_KIND } from './constants.js';
import type { LinkHealth } from './link.js';
import { type MultipathOptions, type ResolvedMultipathOptions, resolveOptions, resolvePaths } from './options.js';
import { MultipathTransport, type MultipathTransportEvents } from './transport.js';

/** `LinkHealth` with the node that holds the link. */
export interface NodeLinkHealth extends LinkHealth {
  readonly localNode: number;
}

/**
 * What `multipath()` returns: a transport factory that also reports on the
 * transports it made (a node makes its transport itself, so this is where
 * an application finds per-path health) and re-emits their `path` events.
 */
export class MultipathFactory extends EventEmitter<MultipathTransportEvents> implements TransportFactory {
  readonly kind = MULTIPATH_KIND;
  private readonly made = new Set<MultipathTransport>();

  /** @internal Made by `multipath()`. */
  constructor(
    private readonly pathFactories: readonly TransportFactory[],
    private readonly options: ResolvedMultipathOptions,
  ) {
    super();
  }

  create(context: TransportContext): MultipathTransport {
    // Bounded by the transports alive: a closed one is forgotten.
    const t = new MultipathTransport(this.pathFactories, this.options, context, () => this.made.delete(t));
    this.made.add(t);
    t.on('path', (e) => this.emit('path', e));
    return t;
  }

  /** Health of every open logical link of every transport this factory made. */
  health(): NodeLinkHealth[] {
    return [...this.made].flatMap((t) => t.health().map((h) => ({ ...h, localNode: t.identity.nodeNum })));
  }

  /**
   * Per-path health in the Prometheus text format, to append to a scrape
   * (e.g. the admin endpoint's `/metrics`). One series per (peer, path).
   */
  metrics(): string {
    const lines: string[] = [];
    const family = (name: string, type: 'gauge' | 'counter', help: string, rows: [string, number][]): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of rows) lines.push(`${name}{${labels}} ${value}`);
    };
    const links = this.health();
    const perPath = (f: (p: LinkHealth['paths'][number]) => number): [string, number][] =>
      links.flatMap((l) => l.paths.map((p) => [`node="${l.localNode}",peer="${l.remoteNode}",link="${l.id}",path="${p.index}"`, f(p)] as [string, number]));
    const perLink = (f: (l: LinkHealth) => number): [string, number][] =>
      links.map((l) => [`node="${l.localNode}",peer="${l.remoteNode}",link="${l.id}"`, f(l)] as [string, number]);
    family('clusterinfra_multipath_path_up', 'gauge', '1 when the path of the link is up.', perPath((p) => (p.state === 'up' ? 1 : 0)));
    family('clusterinfra_multipath_path_active', 'gauge', '1 when the path carries the link\'s data now.', perPath((p) => (p.active ? 1 : 0)));
    family('clusterinfra_multipath_path_failures_total', 'counter', 'Times the path went down.', perPath((p) => p.failures));
    family('clusterinfra_multipath_path_silent_seconds', 'gauge', 'Seconds since something last arrived on the path.', perPath((p) => (p.silentMs ?? 0) / 1000));
    family('clusterinfra_multipath_path_retransmitted_total', 'counter', 'Frames the path carried again after another path failed.', perPath((p) => p.retransmitted));
    family('clusterinfra_multipath_unacknowledged_frames', 'gauge', 'Frames sent on the link and not yet acknowledged.', perLink((l) => l.unacknowledged));
    family('clusterinfra_multipath_duplicates_dropped_total', 'counter', 'Duplicate frames the link dropped.', perLink((l) => l.duplicatesDropped));
    return `${lines.join('\n')}\n`;
  }
}

/**
 * A transport made of several: one logical link per peer over one
 * connection per path, with transparent failover between them.
 *
 * @example
 * const transport = multipath([
 *   tcp({ host: '10.0.1.5', port: 7000, secret }),
 *   tcp({ host: '10.0.2.5', port: 7000, secret }),
 * ]);
 */
export function multipath(paths: readonly TransportFactory[], options: MultipathOptions = {}): MultipathFactory {
  return new MultipathFactory(resolvePaths(paths), resolveOptions(options));
}
