/**
 * What `/metrics` reports about one node: membership and key services read
 * from the node at scrape time, RPC counts and latencies gathered as calls
 * settle (through `Ics.observeCalls`), and flow-control throttle events.
 */
import { type CallRecord, type ClusterNode, type Ics, NODE_STATES, type Transition } from '@clusterinfra/core';
import { Exposition, type HistogramData, type Labels, newHistogram, observe } from './exposition.js';

/** RPC latency buckets, in seconds: from a fast loopback call to a long deadline. */
export const RPC_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** Label of the series that absorbs calls beyond the series limit. */
const OVERFLOW = 'other';

interface ServiceSeries {
  byStatus: Map<string, number>;
  latency: HistogramData;
}

/**
 * Per-service RPC counters and histograms, bounded: past `maxSeries`
 * distinct (service, status) pairs new ones are counted under `other`, so
 * a caller that invents services cannot grow this without limit.
 */
export class RpcStats {
  private readonly services = new Map<string, ServiceSeries>();
  private seriesCount = 0;

  constructor(private readonly maxSeries: number) {}

  record(r: CallRecord): void {
    let service = `${r.channel}/${r.subservice}`;
    let s = this.services.get(service);
    if (!s && this.seriesCount >= this.maxSeries) {
      service = OVERFLOW;
      s = this.services.get(service);
    }
    if (!s) {
      s = { byStatus: new Map(), latency: newHistogram(RPC_SECONDS_BUCKETS) };
      this.services.set(service, s);
    }
    let status = r.status;
    if (!s.byStatus.has(status) && this.seriesCount >= this.maxSeries) status = OVERFLOW;
    if (!s.byStatus.has(status)) this.seriesCount++;
    s.byStatus.set(status, (s.byStatus.get(status) ?? 0) + 1);
    observe(s.latency, RPC_SECONDS_BUCKETS, r.durationMs / 1000);
  }

  *counts(): Iterable<[Labels, number]> {
    for (const [service, s] of this.services) for (const [status, n] of s.byStatus) yield [{ service, status }, n];
  }

  *latencies(): Iterable<[Labels, HistogramData]> {
    for (const [service, s] of this.services) yield [{ service }, s.latency];
  }
}

export class NodeMetrics {
  private readonly rpc: RpcStats;
  private attached: Ics | undefined;
  private detach: (() => void) | undefined;
  /** Throttle events per channel number, across the node's incarnations. */
  private readonly throttles = new Map<number, number>();
  /** Hosts assigned per key service, as seen in the history since the endpoint opened. */
  private readonly moves = new Map<string, number>();
  private readonly onTransition = (t: Transition): void => {
    if (t.kind === 'keyservice' && t.keyService?.phase === 'assigned') {
      // Bounded by the key services the cluster registers (each is a transition).
      this.moves.set(t.keyService.name, (this.moves.get(t.keyService.name) ?? 0) + 1);
    }
    this.attach();
  };
  /** An evicted node rejoins with a new ICS: follow it as soon as it exists. */
  private readonly onEvicted = (): void => this.attach();

  constructor(
    private readonly node: ClusterNode,
    maxSeries: number,
  ) {
    this.rpc = new RpcStats(maxSeries);
    node.on('transition', this.onTransition);
    node.on('evicted', this.onEvicted);
    this.attach();
  }

  /**
   * Follow the node's current ICS: a node that is evicted restarts with a
   * new one. Checked on every transition and every scrape.
   */
  attach(): void {
    const ics = this.node.currentCommunication as Ics | undefined;
    if (ics === undefined || ics === this.attached) return;
    this.detach?.();
    const stopCalls = ics.observeCalls((r) => this.rpc.record(r));
    const onThrottle = (e: { channel: number; throttled: boolean }): void => {
      if (e.throttled) this.throttles.set(e.channel, (this.throttles.get(e.channel) ?? 0) + 1);
    };
    ics.on('throttle', onThrottle);
    this.attached = ics;
    this.detach = () => {
      stopCalls();
      ics.off('throttle', onThrottle);
    };
  }

  close(): void {
    this.detach?.();
    this.detach = undefined;
    this.node.off('transition', this.onTransition);
    this.node.off('evicted', this.onEvicted);
  }

  /** The exposition text for a scrape. */
  render(): string {
    this.attach();
    const node = this.node;
    const e = new Exposition();
    const membership = node.membership();
    e.family('clusterinfra_node_info', 'gauge', 'The answering node: cluster name and node number as labels.', [[{ cluster: node.clusterName, node: String(node.nodeNum) }, 1]]);
    const byState = new Map<string, number>(NODE_STATES.map((s) => [s, 0]));
    for (const m of membership.members) byState.set(m.state, (byState.get(m.state) ?? 0) + 1);
    e.family('clusterinfra_members', 'gauge', 'Members by state, as this node knows them.', [...byState].map(([state, n]) => [{ state }, n] as [Labels, number]));
    e.family('clusterinfra_transitions_total', 'counter', 'Number of the last committed membership transition.', [[{}, node.lastTransition]]);
    e.family('clusterinfra_master_term', 'gauge', 'Term (epoch) of the current master.', [[{}, membership.term]]);
    e.family('clusterinfra_master_node', 'gauge', 'Node number of the current master (0 when none is known).', [[{}, membership.master ?? 0]]);
    e.family('clusterinfra_is_master', 'gauge', '1 when this node is the master.', [[{}, node.isMaster ? 1 : 0]]);
    e.family('clusterinfra_quorum', 'gauge', '1 when this node has a quorum.', [[{}, node.hasQuorum ? 1 : 0]]);
    e.family('clusterinfra_formed', 'gauge', '1 when every critical key service has a ready host.', [[{}, node.formed ? 1 : 0]]);
    this.renderKeyServices(e);
    this.renderIcs(e);
    return e.render();
  }

  private renderKeyServices(e: Exposition): void {
    const keys = this.node.keyServices();
    e.family('clusterinfra_keyservice_epoch', 'gauge', 'Current epoch (fencing token) of each key service.', keys.map((k) => [{ keyservice: k.name }, k.epoch] as [Labels, number]));
    e.family('clusterinfra_keyservice_ready', 'gauge', '1 when the key service has a ready host.', keys.map((k) => [{ keyservice: k.name }, k.ready ? 1 : 0] as [Labels, number]));
    e.family('clusterinfra_keyservice_host', 'gauge', 'Node number hosting the key service (0 when vacant).', keys.map((k) => [{ keyservice: k.name }, k.host ?? 0] as [Labels, number]));
    e.family(
      'clusterinfra_keyservice_moves_total',
      'counter',
      'Hosts assigned to each key service (placements and failovers) since the admin endpoint opened.',
      [...this.moves].map(([name, n]) => [{ keyservice: name }, n] as [Labels, number]),
    );
  }

  private renderIcs(e: Exposition): void {
    e.family('clusterinfra_rpc_calls_total', 'counter', 'Client RPC calls settled by this node, per service (channel/subservice) and status (OK or the error code).', this.rpc.counts());
    e.histogram('clusterinfra_rpc_duration_seconds', 'Client RPC latency per service, from the call to its settling.', RPC_SECONDS_BUCKETS, this.rpc.latencies());
    e.family(
      'clusterinfra_ics_throttle_events_total',
      'counter',
      'Times a channel to a peer ran out of flow-control credit, per channel number.',
      [...this.throttles].map(([channel, n]) => [{ channel: String(channel) }, n] as [Labels, number]),
    );
    const stats = this.attached?.stats();
    e.family('clusterinfra_ics_pending_calls', 'gauge', 'Client calls waiting for a response.', [[{}, stats?.pendingCalls ?? 0]]);
    e.family('clusterinfra_ics_queued_messages', 'gauge', 'Messages queued to be sent (all peers).', [[{}, stats?.queuedMessages ?? 0]]);
    e.family('clusterinfra_ics_messages_sent_total', 'counter', 'Messages sent by the current incarnation.', [[{}, stats?.messagesSent ?? 0]]);
    e.family('clusterinfra_ics_messages_received_total', 'counter', 'Messages received by the current incarnation.', [[{}, stats?.messagesReceived ?? 0]]);
    e.family('clusterinfra_ics_dropped_total', 'counter', 'Messages dropped (old incarnation, duplicate, undecodable) by the current incarnation.', [[{}, stats?.dropped ?? 0]]);
  }
}
