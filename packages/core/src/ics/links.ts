/**
 * Links: dialling a peer (with backoff), attaching a link that came up in
 * either direction behind the incarnation gate, and detaching one that
 * closed. What a link carries goes to the parts above through LinkHooks.
 */
import type { Link, LinkCloseInfo, Transport } from '../contracts/transport.js';
import { ClusterInfraError, UnavailableError } from '../errors/index.js';
import type { Flow } from './flow.js';
import type { Peer, PeerTable } from './peer.js';
import type { Serving } from './serving.js';
import type { Env } from './shared.js';
import { encodeFrame } from './wire/frame.js';
import { FrameType, RefusedReason, type RefusedReasonCode } from './wire/types.js';

/** Where a link's traffic and fate go (the endpoint wires them to the receive and teardown parts). */
export interface LinkHooks {
  /** A frame arrived. */
  frame(peer: Peer, link: Link, bytes: Uint8Array): void;
  /** A newer incarnation of the peer linked up: the former one is certainly gone. */
  newer(peer: Peer, previous: number): void;
  /** A link closed (it is detached already). */
  lost(peer: Peer, link: Link, info: LinkCloseInfo): void;
  /** A link of the peer's current incarnation came up. */
  up(peer: Peer): void;
}

export class Links {
  /** Questions to `admitIncarnation` under way, by node (one at a time per node). */
  private readonly admissions = new Map<number, { incarnation: number; verdict: Promise<boolean> }>();
  /** Inbound links held unread until `admitIncarnation` answers (closing destroys them). */
  private readonly held = new Set<Link>();

  constructor(
    private readonly env: Env,
    private readonly transport: Transport,
    private readonly peers: PeerTable,
    private readonly flow: Flow,
    private readonly serving: Serving,
    private readonly hooks: LinkHooks,
  ) {}

  private addressOf(node: number): string | undefined {
    const peers = this.env.opts.peers;
    if (peers === undefined) return undefined;
    if (typeof peers === 'function') return peers(node);
    return peers[String(node)];
  }

  /** Open a link to whatever node listens at `address`; its node number. */
  async connectAddress(address: string, options: { signal?: AbortSignal; timeoutMs?: number }): Promise<number> {
    const link = await this.transport.connect(address, options);
    const node = link.remote.nodeNum;
    this.attach(link);
    if (link.state !== 'open') throw new UnavailableError(`node ${node} at ${address} refused the link`);
    return node;
  }

  /** Dial `peer` unless a link is up or on its way. */
  ensure(peer: Peer): void {
    if (peer.link || peer.connecting || peer.reconnectTimer || !this.env.isOpen()) return;
    const address = this.addressOf(peer.nodeNum);
    if (address === undefined) {
      peer.lanes.failQueued(new UnavailableError(`no address known for node ${peer.nodeNum}`));
      return;
    }
    // Set when this attempt failed and left nothing to retry (what waited
    // was failed, or nothing waited): work queued after that is new.
    let again = false;
    peer.connecting = this.transport
      .connect(address)
      .then(
        (link) => {
          if (link.remote.nodeNum !== peer.nodeNum) {
            this.env.log.warn({ expected: peer.nodeNum, got: link.remote.nodeNum }, 'address %s belongs to another node', address);
            link.destroy();
            throw new UnavailableError(`${address} is node ${link.remote.nodeNum}, not node ${peer.nodeNum}`);
          }
          peer.attempts = 0;
          this.attach(link);
        },
        (err: unknown) => {
          throw err;
        },
      )
      .catch((err: unknown) => {
        this.env.log.debug({ node: peer.nodeNum, err: (err as Error).message }, 'connect failed');
        this.scheduleReconnect(peer, err as Error);
        again = peer.reconnectTimer === undefined;
      })
      .finally(() => {
        peer.connecting = undefined;
        if (peer.link) return;
        // A call queued after this attempt failed what waited (from a
        // handler of that very failure) gets an attempt of its own, rather
        // than wait out its timeout behind one that has ended.
        if (again && peer.lanes.hasWork()) this.ensure(peer);
        else this.peers.forgetIfIdle(peer);
      });
  }

  /** Dial again later (when something waits to go), or fail what waits when there is no point. */
  scheduleReconnect(peer: Peer, cause: Error): void {
    if (!this.env.isOpen() || !peer.lanes.hasWork()) return;
    if (cause instanceof ClusterInfraError && cause.code === 'TRANSPORT_ERR_CONNECTION_REFUSED') {
      // Nothing listens there: the process is gone (or not started). Waiting
      // would only delay what the caller learns; fail what waits, now. A
      // timeout or a reset, by contrast, may be a passing network fault and
      // is retried with backoff.
      peer.attempts = 0;
      peer.lanes.failQueued(new UnavailableError(`node ${peer.nodeNum} refused the connection`, { cause }));
      return;
    }
    const r = this.env.opts.reconnect;
    if (peer.attempts >= r.maxAttempts) {
      peer.attempts = 0;
      peer.lanes.failQueued(new UnavailableError(`node ${peer.nodeNum} unreachable after ${r.maxAttempts} attempts`, { cause }));
      return;
    }
    // Exponential backoff with full jitter: spreads reconnect storms.
    const cap = Math.min(r.maxDelayMs, r.initialDelayMs * 2 ** peer.attempts);
    const delay = Math.floor(this.env.random.next() * cap) + 1;
    peer.attempts++;
    this.env.counters.reconnects++;
    peer.reconnectTimer = this.env.clock.setTimeout(() => {
      peer.reconnectTimer = undefined;
      this.ensure(peer);
    }, delay);
  }

  /** Stop dialling `peer`. */
  stopReconnecting(peer: Peer): void {
    peer.reconnectTimer?.cancel();
    peer.reconnectTimer = undefined;
    peer.attempts = 0;
  }

  /** Destroy the links held for an admission answer (the endpoint is closing). */
  destroyHeld(): void {
    for (const link of this.held) link.destroy();
    this.held.clear();
  }

  /**
   * A link came up (either direction). `admitted`: `admitIncarnation`
   * already said yes to its incarnation.
   */
  attach(link: Link, admitted = false): void {
    if (!this.env.isOpen()) {
      link.destroy();
      return;
    }
    const node = link.remote.nodeNum;
    const inc = link.remote.incarnation;
    const peer = this.peers.get(node);
    if (peer.gate.isDown(inc)) {
      this.env.log.info({ node, incarnation: inc }, 'refusing a link from a downed incarnation');
      this.refuse(link, RefusedReason.IncarnationDown);
      return;
    }
    if (peer.incarnation !== undefined && inc < peer.incarnation) {
      this.env.log.info({ node, incarnation: inc }, 'refusing a link from an older incarnation');
      this.refuse(link, RefusedReason.NewerIncarnation);
      return;
    }
    // A node dialling in as an incarnation we do not talk to yet: the owner
    // may know another one of that number that is still alive. (A link we
    // dialled reached whatever now listens at the address: no question.)
    if (!admitted && inc !== peer.incarnation && link.direction === 'inbound' && this.env.opts.admitIncarnation) {
      if (!this.admitOrHold(link, node, inc, peer.incarnation)) return;
    }
    if (peer.incarnation !== undefined && inc !== peer.incarnation) {
      // A newer incarnation: the old one is certainly gone.
      const previous = peer.incarnation;
      this.env.emit('incarnation', { node, previous, current: inc });
      this.hooks.newer(peer, previous);
    }
    peer.incarnation = inc;
    link.setHighWaterMark(this.env.opts.linkHighWaterMark);
    peer.links.add(link);
    peer.linkState.set(link, this.flow.newLinkState());
    link.on('frame', (bytes) => this.hooks.frame(peer, link, bytes));
    link.on('drain', () => {
      this.serving.releaseHeld(peer, link);
      this.flow.pump(peer);
    });
    link.on('close', (info) => this.detach(peer, link, info));
    link.resume();
    // Two links to one node (both dialled at once): the one dialled by the
    // lower node number is preferred; the other still delivers.
    const dialer = (l: Link): number => (l.direction === 'outbound' ? this.env.nodeNum : l.remote.nodeNum);
    if (!peer.link || peer.link.state !== 'open' || dialer(link) < dialer(peer.link)) {
      peer.link = link;
    }
    this.hooks.up(peer);
    this.env.emit('link', { node, incarnation: inc, state: 'up' });
    this.flow.pump(peer);
  }

  /**
   * Ask `admitIncarnation` about an inbound link from incarnation `inc` of
   * `node`: true to attach it now. Refused, or held unread until the answer
   * comes (one question per node at a time; links of the same incarnation
   * meanwhile wait for the same answer, of another one are closed: the
   * dialler tries again).
   */
  private admitOrHold(link: Link, node: number, inc: number, current: number | undefined): boolean {
    const asked = this.admissions.get(node);
    let verdict: boolean | Promise<boolean>;
    if (asked) {
      if (asked.incarnation !== inc) {
        link.destroy();
        return false;
      }
      verdict = asked.verdict;
    } else {
      try {
        verdict = this.env.opts.admitIncarnation!({ node, incarnation: inc, current });
      } catch {
        verdict = true;
      }
    }
    if (verdict === true) return true;
    const refuse = (): void => {
      this.env.log.warn({ node, incarnation: inc, current }, 'refusing a link: another incarnation of this node number is alive');
      this.refuse(link, RefusedReason.NodeNumberInUse);
    };
    if (verdict === false) {
      refuse();
      return false;
    }
    if (!asked) {
      const entry = { incarnation: inc, verdict: verdict.catch(() => true) };
      this.admissions.set(node, entry);
      void entry.verdict.then(() => {
        if (this.admissions.get(node) === entry) this.admissions.delete(node);
      });
    }
    // Held unread meanwhile: whatever becomes of it, it is attached, refused or destroyed
    // (a paused link that closed on the other side would otherwise keep the transport open).
    this.held.add(link);
    void this.admissions.get(node)!.verdict.then((ok) => {
      if (!this.held.delete(link)) return;
      if (link.state !== 'open') link.destroy();
      else if (ok) this.attach(link, true);
      else refuse();
    });
    return false;
  }

  /**
   * Refuse a link and tell the other side why before it closes (a Refused
   * frame): a downed incarnation learns at once that the others stopped
   * talking to it, instead of guessing from links that keep closing.
   */
  private refuse(link: Link, reason: RefusedReasonCode): void {
    try {
      link.resume();
      link.send(encodeFrame({ type: FrameType.Refused, reason }));
      void link.close();
    } catch {
      link.destroy();
    }
  }

  private detach(peer: Peer, link: Link, info: LinkCloseInfo): void {
    this.serving.dropHeld(peer, link);
    peer.links.delete(link);
    peer.linkState.delete(link);
    this.env.emit('link', { node: peer.nodeNum, incarnation: link.remote.incarnation, state: 'down', reason: info.reason });
    if (peer.link === link) {
      peer.link = [...peer.links].find((l) => l.state === 'open');
    }
    this.hooks.lost(peer, link, info);
  }
}
