/**
 * Teardown: what happens to a peer's work when one of its links is lost,
 * when it is declared down, when a newer incarnation of it links up, and
 * when this endpoint closes. One failPeer does all four (R2: every call
 * pending to a node that went down settles at once; queued messages to it
 * are dropped; handlers serving it are aborted).
 */
import { canaries } from '../canaries.js';
import type { Link, LinkCloseInfo } from '../contracts/transport.js';
import { CancelledError, type ClusterInfraError, NodeDownError, UnavailableError } from '../errors/index.js';
import type { CallTable } from './calls.js';
import type { Links } from './links.js';
import type { Peer, PeerTable } from './peer.js';
import type { Serving } from './serving.js';

/** Why a peer's work fails. */
export type PeerFailure =
  /** One of its links closed: what went out on it fails; the rest only once no link is left (queued work waits for a reconnect). */
  | { readonly link: Link; readonly reason: string }
  /** The incarnation is gone (nodedown, a newer incarnation, close): everything fails, with `error`. */
  | { readonly link?: undefined; readonly error: (sent: 'never-sent' | 'may-have-run') => ClusterInfraError; readonly destroyLinks: boolean };

export class Teardown {
  constructor(
    private readonly peers: PeerTable,
    private readonly serving: Serving,
    private readonly links: Links,
    private readonly calls: CallTable,
  ) {}

  /**
   * Fail what depends on `peer` (see PeerFailure). Resolves when the
   * handlers it aborted have finished (CLMS's cleanup barrier waits for it).
   */
  async failPeer(peer: Peer, why: PeerFailure): Promise<void> {
    const node = peer.nodeNum;
    const lost = why.link !== undefined ? why : undefined;
    const gone = why.link === undefined ? why : undefined;
    if (gone) this.links.stopReconnecting(peer);
    // (The canary leaves pending calls unsettled on nodedown: a planted bug the simulator must catch.)
    if (lost || !canaries.keepPendingOnNodedown) {
      this.calls.failCalls(peer, lost?.link, (p) =>
        gone ? gone.error(p.sent ? 'may-have-run' : 'never-sent') : new UnavailableError(`link to node ${node} lost (${lost!.reason}) during ${p.what()}`, { mayHaveRun: true }),
      );
    }
    if (lost) {
      // Another link carries on.
      if (peer.link) return;
      // Nobody is left to answer: abort what the peer asked of us.
      this.serving.abortAll(peer, new CancelledError(`link to node ${node} lost`), false);
    }
    // Nobody is left to read replies; chunks in flight are lost with the
    // link (values half sent or half received are void).
    peer.lanes.dropReplies();
    if (gone) peer.lanes.failQueued(gone.error('never-sent'));
    peer.bulkOut.clear(gone ? gone.error('never-sent') : new UnavailableError(`link to node ${node} lost (${lost!.reason}) before out-of-line values were sent`));
    peer.bulkIn.clear();
    if (!gone) {
      // Dial again if work waits.
      if (peer.lanes.hasWork()) this.links.scheduleReconnect(peer, new UnavailableError(`link lost: ${lost!.reason}`));
      this.peers.forgetIfIdle(peer);
      return;
    }
    peer.awaitingBulk.clear();
    peer.throttled.clear();
    peer.wantDrain.clear();
    const running = this.serving.abortAll(peer, gone.error('may-have-run'), true);
    if (gone.destroyLinks) {
      for (const link of [...peer.links]) link.destroy();
      peer.incarnation = undefined;
    }
    // Ids start again with the next incarnation.
    peer.seen = undefined;
    await Promise.all(running.map((s) => s.done()));
  }

  /** A link of `peer` closed (links detached it already). */
  linkLost(peer: Peer, link: Link, info: LinkCloseInfo): void {
    void this.failPeer(peer, { link, reason: info.reason });
  }

  /** A newer incarnation of `peer` linked up: the former one is gone, and so are its links. */
  newerIncarnation(peer: Peer, previous: number): void {
    peer.gate.markDown(previous);
    const old = [...peer.links];
    void this.failPeer(peer, { error: (sent) => new NodeDownError(peer.nodeNum, sent), destroyLinks: false });
    for (const l of old) l.destroy();
  }

  /**
   * Node `node` (the given incarnation, or the current one) is down. Every
   * pending call to it settles at once with NodeDownError, queued messages
   * to it are dropped, its links are destroyed, messages from it are no
   * longer delivered, and handlers serving it are aborted. Resolves when
   * those handlers have finished.
   */
  async nodeDown(node: number, incarnation?: number): Promise<void> {
    // A peer forgotten while idle comes back for its incarnation gate.
    const peer = this.peers.known(node);
    if (!peer) return;
    const inc = incarnation ?? peer.incarnation;
    if (inc !== undefined) peer.gate.markDown(inc);
    if (incarnation !== undefined && peer.incarnation !== undefined && incarnation !== peer.incarnation) {
      // An older incarnation: the current one lives on; nothing else to undo.
      this.peers.forgetIfIdle(peer);
      return;
    }
    // (The canary leaves the links too: destroying them would fail the calls it means to leak.)
    await this.failPeer(peer, { error: (sent) => new NodeDownError(node, sent), destroyLinks: !canaries.keepPendingOnNodedown });
    this.peers.forgetIfIdle(peer);
  }
}
