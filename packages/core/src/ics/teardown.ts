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
import type { CallTable, Pending } from './calls.js';
import type { Links } from './links.js';
import { BuiltinChannel } from './options.js';
import type { Peer, PeerTable } from './peer.js';
import { channelOf } from './registry.js';
import type { Serving } from './serving.js';
import type { Env } from './shared.js';

/** Why a peer's work fails. */
export type PeerFailure =
  /** One of its links closed: what went out on it fails; the rest only once no link is left (queued work waits for a reconnect). */
  | { readonly link: Link; readonly reason: string }
  /** The incarnation is gone (nodedown, a newer incarnation, close): everything fails, with `error`. */
  | { readonly link?: undefined; readonly error: (sent: 'never-sent' | 'may-have-run') => ClusterInfraError; readonly destroyLinks: boolean };

export class Teardown {
  constructor(
    private readonly env: Env,
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
    if (gone) {
      this.links.stopReconnecting(peer);
      this.endOrphanWaits(peer);
    }
    // (The canary leaves pending calls unsettled on nodedown: a planted bug the simulator must catch.)
    // (Even when another link is left: a dying process closes its links one
    // by one, and the first to close must not answer for the node.)
    if (lost && this.env.opts.linkLossGraceMs > 0 && this.env.isOpen()) this.awaitFate(peer, lost.link, lost.reason);
    else if (lost || !canaries.keepPendingOnNodedown) {
      this.calls.failCalls(peer, lost?.link, (p) => (gone ? gone.error(p.sent ? 'may-have-run' : 'never-sent') : linkLostError(node, lost!.reason, p)));
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
    peer.forgetIds();
    await Promise.all(running.map((s) => s.done()));
  }

  /**
   * One death, one answer: a link to `peer` closed with calls in flight on
   * it. Membership calls fail at once (CLMS decides the node's
   * fate from them); the others wait up to linkLossGraceMs for that fate:
   * NodeDownError when the node is declared down (failPeer), or
   * UnavailableError when it links again or the grace ends undecided.
   */
  private awaitFate(peer: Peer, link: Link, reason: string): void {
    const node = peer.nodeNum;
    this.calls.failCalls(peer, link, (p) => linkLostError(node, reason, p), isMembershipCall);
    if (!this.calls.waitsOn(peer, link)) return;
    const grace = this.env.opts.linkLossGraceMs;
    const timer = this.env.clock.setTimeout(() => {
      peer.orphans?.delete(link);
      this.calls.failCalls(peer, link, (p) => linkLostError(node, `${reason}; not declared down within ${grace} ms`, p));
      this.peers.forgetIfIdle(peer);
    }, grace);
    (peer.orphans ??= new Map()).set(link, timer);
  }

  /** A link to `peer` came up: the node lives, so calls that went out on a lost link will get no answer. */
  relinked(peer: Peer): void {
    const orphans = peer.orphans;
    if (!orphans) return;
    peer.orphans = undefined;
    for (const [link, timer] of orphans) {
      timer.cancel();
      this.calls.failCalls(peer, link, (p) => linkLostError(peer.nodeNum, 'the node linked again; its answer is lost', p));
    }
  }

  /** The node's fate is known (failPeer fails the waiting calls with it). */
  private endOrphanWaits(peer: Peer): void {
    if (!peer.orphans) return;
    for (const timer of peer.orphans.values()) timer.cancel();
    peer.orphans = undefined;
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

/** A call that went out on a lost link, its node not declared down. */
function linkLostError(node: number, reason: string, p: Pending): UnavailableError {
  return new UnavailableError(`link to node ${node} lost (${reason}) during ${p.what()}`, { mayHaveRun: true });
}

/**
 * CLMS's own calls (their failure on a lost link is what it decides from)
 * and key-service routing's (it waits for the view to change either way).
 */
function isMembershipCall(p: Pending): boolean {
  const channel = channelOf(p.service);
  return channel === BuiltinChannel.clms || channel === BuiltinChannel.clmsProbe || channel === BuiltinChannel.keyService;
}
