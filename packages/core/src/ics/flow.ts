/**
 * Flow: per-channel credit on both sides of a link, the scheduler that
 * moves a peer's lanes onto its preferred link, and the one place a frame
 * is written to a link.
 *
 * A sender never has more than the receiver's window of non-priority
 * messages in flight per channel (R5): the receiver returns credit when a
 * handler finishes (implicitly with each Response, explicitly with Credit
 * frames for one-way messages), and keeps the mirror of what it granted so
 * that a peer that sends past it loses its link. Replies, control frames and
 * priority frames never wait for credit.
 */
import type { Link } from '../contracts/transport.js';
import { ProtocolViolationError } from '../errors/index.js';
import { INITIAL_BULK_WINDOW, INITIAL_WINDOW } from './options.js';
import { costOf, type Credit, EMPTY, type LinkState, type Outgoing, type Peer } from './peer.js';
import type { Registry, Window } from './registry.js';
import { dropped, type Env } from './shared.js';
import { encodeBulkChunkHeader, encodeFrame } from './wire/frame.js';
import { FrameType, type OneWayFrame, type RequestFrame } from './wire/types.js';

/** Credit frames for channel 0 carry bulk-lane credit (no service uses channel 0). */
export const BULK_LANE = 0;

export class Flow {
  constructor(
    private readonly env: Env,
    private readonly registry: Registry,
  ) {}

  /** A new link's state: the initial credit both ways. */
  newLinkState(): LinkState {
    return {
      credit: new Map(),
      owed: new Map(),
      bulkCredit: INITIAL_BULK_WINDOW,
      granted: new Map(),
      bulkGranted: this.env.opts.bulkWindow,
      bulkWindowSent: false,
      unanswered: new Map(),
      held: [],
      heldPriorityBytes: 0,
      paused: false,
    };
  }

  /** Queue `out` for `peer` and send what may go (when it has a link: dialling is the caller's part). */
  enqueue(peer: Peer, out: Outgoing, lane: 'reply' | 'priority' | 'channel'): void {
    // Nothing waits ahead of it: what pump would do with it at once, without
    // the trip through the queue (the common case of a link that keeps up).
    // Not a message with out-of-line values: pump sends their chunks next.
    const link = peer.link;
    if (link !== undefined && peer.lanes.queuedBytes === 0 && !peer.pumping && link.state === 'open' && out.streams === undefined) {
      if (lane !== 'channel' || (!link.needDrain && peer.bulkOut.active.length === 0 && this.spend(peer, link, out))) {
        this.sendOnLink(peer, link, out);
        this.afterSending(peer, link);
        return;
      }
    }
    peer.lanes.push(peer.nodeNum, out, lane);
    if (peer.link) this.pump(peer);
  }

  /** Spend the credit a channel frame needs on `link`, if it has it (as nextFromChannels does for a queued one). */
  private spend(peer: Peer, link: Link, out: Outgoing): boolean {
    const ls = peer.linkState.get(link);
    if (!ls) return false;
    const ch = out.channel!;
    const credit = this.creditOf(ls, ch);
    if (credit.messages < 1 || credit.bytes <= 0) return false;
    credit.messages--;
    credit.bytes -= costOf(out);
    if (peer.throttled.delete(ch)) this.env.emit('throttle', { node: peer.nodeNum, channel: ch, throttled: false });
    return true;
  }

  /** Write `out` to `link`: the one place frames leave. */
  private sendOnLink(peer: Peer, link: Link, out: Outgoing): void {
    if (out.parts) link.sendv(out.parts);
    else link.send(out.bytes);
    this.env.counters.messagesSent++;
    out.onSent?.();
    if (out.streams) peer.bulkOut.activate(out.streams);
  }

  /** Reply-lane traffic for `link`: through the scheduler when it is the preferred link, else straight onto it. */
  sendReplyLane(peer: Peer, link: Link, out: Outgoing): void {
    if (link === peer.link) {
      this.enqueue(peer, out, 'reply');
      return;
    }
    this.sendOnLink(peer, link, out);
    this.checkBacklog(peer, link);
  }

  /** A control frame (credit, cancel, bulk abort) for `link`, if it is still open. */
  sendControl(peer: Peer, link: Link, bytes: Uint8Array): void {
    if (link.state === 'open') this.sendReplyLane(peer, link, { bytes, channel: undefined });
  }

  /**
   * Move queued frames to the link, highest lane first: replies and control,
   * then priority, then the channels round-robin, each within its credit.
   * Stops when the link asks for a drain.
   */
  pump(peer: Peer): void {
    const link = peer.link;
    if (!link || link.state !== 'open' || peer.pumping) return;
    const ls = peer.linkState.get(link);
    if (!ls) return;
    const lanes = peer.lanes;
    // Nothing queued and no out-of-line value under way: nothing to send.
    if (lanes.queuedBytes === 0 && peer.bulkOut.active.length === 0) {
      this.emitDrains(peer);
      return;
    }
    peer.pumping = true;
    try {
      // Replies, control frames and priority frames are never throttled:
      // they go even when the link asks for a drain (they are bounded by the
      // calls and handlers that produce them).
      for (;;) {
        const out = lanes.replyQ.shift() ?? lanes.prioQ.shift() ?? (link.needDrain ? undefined : this.nextNormal(peer, ls));
        if (!out) break;
        lanes.queuedBytes -= costOf(out);
        this.sendOnLink(peer, link, out);
      }
    } finally {
      peer.pumping = false;
    }
    this.afterSending(peer, link);
  }

  /** After frames went to `link`: its backlog checked, and `drain` for the channels whose queues emptied. */
  private afterSending(peer: Peer, link: Link): void {
    this.checkBacklog(peer, link);
    this.emitDrains(peer);
  }

  private emitDrains(peer: Peer): void {
    if (peer.wantDrain.size === 0) return;
    for (const ch of peer.wantDrain) {
      if (peer.lanes.waiting(ch) === 0) {
        peer.wantDrain.delete(ch);
        this.env.emit('drain', { node: peer.nodeNum, channel: ch });
      }
    }
  }

  /** A peer that does not read: past linkBacklogMax unsent bytes its link is closed. */
  private checkBacklog(peer: Peer, link: Link): void {
    const backlog = link.bufferedBytes;
    const max = this.env.opts.linkBacklogMax;
    if (backlog > max) {
      this.violation(peer, link, `${backlog} bytes wait to be written to node ${peer.nodeNum}, more than linkBacklogMax (${max}): it does not read`);
    }
  }

  /** The peer broke the protocol: close its link. */
  violation(peer: Peer, link: Link, why: string): void {
    this.env.counters.linksClosedForViolation++;
    dropped(this.env, peer.nodeNum, why);
    this.env.log.warn({ node: peer.nodeNum }, 'closing a link: %s', why);
    link.destroy(new ProtocolViolationError(why));
  }

  // ------------------------------------------------------------ sending side

  private creditOf(ls: LinkState, channel: number): Credit {
    let c = ls.credit.get(channel);
    if (!c) {
      c = { messages: INITIAL_WINDOW.messages, bytes: INITIAL_WINDOW.bytes };
      ls.credit.set(channel, c);
    }
    return c;
  }

  /** The bulk lane takes turns with the channels. */
  private nextNormal(peer: Peer, ls: LinkState): Outgoing | undefined {
    const out = peer.bulkFirst
      ? (this.nextBulkChunk(peer, ls) ?? this.nextFromChannels(peer, ls))
      : (this.nextFromChannels(peer, ls) ?? this.nextBulkChunk(peer, ls));
    if (out) peer.bulkFirst = !peer.bulkFirst;
    return out;
  }

  private nextBulkChunk(peer: Peer, ls: LinkState): Outgoing | undefined {
    if (ls.bulkCredit <= 0) return undefined;
    const chunk = peer.bulkOut.nextChunk(this.env.opts.bulkChunkSize);
    if (!chunk) return undefined;
    ls.bulkCredit -= chunk.data.byteLength;
    this.env.counters.bulkBytesSent += chunk.data.byteLength;
    return { bytes: EMPTY, parts: [encodeBulkChunkHeader(chunk.stream, chunk.offset, chunk.last), chunk.data], channel: undefined };
  }

  private nextFromChannels(peer: Peer, ls: LinkState): Outgoing | undefined {
    const lanes = peer.lanes;
    const n = lanes.rr.length;
    for (let i = 0; i < n; i++) {
      const idx = (lanes.rrNext + i) % n;
      const ch = lanes.rr[idx]!;
      const q = lanes.chanQ.get(ch)!;
      const head = q[0];
      if (!head) continue;
      const credit = this.creditOf(ls, ch);
      if (credit.messages >= 1 && credit.bytes > 0) {
        credit.messages--;
        credit.bytes -= costOf(head);
        q.shift();
        lanes.rrNext = (idx + 1) % n;
        if (peer.throttled.delete(ch)) this.env.emit('throttle', { node: peer.nodeNum, channel: ch, throttled: false });
        return head;
      }
      if (!peer.throttled.has(ch)) {
        peer.throttled.add(ch);
        this.env.counters.throttleEvents++;
        this.env.emit('throttle', { node: peer.nodeNum, channel: ch, throttled: true });
      }
    }
    return undefined;
  }

  /** A call's answer came (or it was given up): its request's credit comes back. */
  returnCredit(peer: Peer, link: Link, channel: number, bytes: number): void {
    const ls = peer.linkState.get(link);
    if (!ls) return;
    const c = this.creditOf(ls, channel);
    c.messages += 1;
    c.bytes += bytes;
  }

  /** A Credit frame arrived: a grant (at link-up), credit for one-way messages, or bulk-lane credit. */
  credited(peer: Peer, link: Link, channel: number, messages: number, bytes: number): void {
    const ls = peer.linkState.get(link);
    if (!ls) return;
    if (channel === BULK_LANE) {
      ls.bulkCredit += bytes;
    } else {
      const c = this.creditOf(ls, channel);
      c.messages += messages;
      c.bytes += bytes;
    }
    this.pump(peer);
  }

  // ------------------------------------------------------------ receiving side

  /**
   * Tell the peer how much more than the initial window `channel` allows
   * (the bulk lane: its bytes), the first time it sends on it over this
   * link: a link that carries one service's traffic costs one Credit frame
   * a side, not one per channel of every service registered. Until then
   * the peer sends within the initial window, which our mirror (`granted`,
   * the whole window) allows.
   */
  private grantWindow(peer: Peer, link: Link, channel: number): void {
    if (channel === BULK_LANE) {
      const bulk = this.env.opts.bulkWindow - INITIAL_BULK_WINDOW;
      if (bulk > 0) this.sendControl(peer, link, encodeFrame({ type: FrameType.Credit, channel: BULK_LANE, messages: 0, bytes: bulk }));
      return;
    }
    const w = this.registry.windowOf(channel);
    const messages = w.messages - INITIAL_WINDOW.messages;
    const bytes = w.bytes - INITIAL_WINDOW.bytes;
    if (messages > 0 || bytes > 0) this.sendControl(peer, link, encodeFrame({ type: FrameType.Credit, channel, messages, bytes }));
  }

  /** The receiver's mirror of the peer's credit on `channel`. */
  private grantedOf(ls: LinkState, channel: number): Window {
    let g = ls.granted.get(channel);
    if (!g) {
      const w = this.registry.windowOf(channel);
      g = { messages: w.messages, bytes: w.bytes };
      ls.granted.set(channel, g);
    }
    return g;
  }

  /**
   * Charge a non-priority message against the credit we granted, by the
   * sender's own rule (a message may go while a message and a byte of credit
   * are left). False, and the link closed, when the peer had none left.
   */
  takeCredit(peer: Peer, link: Link, frame: RequestFrame | OneWayFrame, size: number): boolean {
    const ls = peer.linkState.get(link);
    if (!ls) return false;
    const first = !ls.granted.has(frame.channel);
    const g = this.grantedOf(ls, frame.channel);
    if (first) this.grantWindow(peer, link, frame.channel);
    if (g.messages < 1 || g.bytes <= 0) {
      this.violation(peer, link, `node ${peer.nodeNum} sent more than the window granted on channel ${frame.channel}`);
      return false;
    }
    g.messages--;
    g.bytes -= size;
    if (frame.type === FrameType.Request) ls.unanswered.set(frame.id, { channel: frame.channel, size });
    return true;
  }

  /** Bulk bytes arrived on `link`: false, and the link closed, when they were more than granted. */
  takeBulkCredit(peer: Peer, link: Link, bytes: number): boolean {
    const ls = peer.linkState.get(link);
    if (!ls) return false;
    if (!ls.bulkWindowSent) {
      ls.bulkWindowSent = true;
      this.grantWindow(peer, link, BULK_LANE);
    }
    if (ls.bulkGranted <= 0) {
      this.violation(peer, link, `node ${peer.nodeNum} sent more out-of-line bytes than the bulk window granted`);
      return false;
    }
    ls.bulkGranted -= bytes;
    return true;
  }

  private giveBack(ls: LinkState, channel: number, messages: number, bytes: number): void {
    const g = this.grantedOf(ls, channel);
    g.messages += messages;
    g.bytes += bytes;
  }

  /** A request is answered (or cancelled): the peer gets its credit back. */
  answered(ls: LinkState, id: number): void {
    const r = ls.unanswered.get(id);
    if (!r) return;
    ls.unanswered.delete(id);
    this.giveBack(ls, r.channel, 1, r.size);
  }

  /**
   * Return credit for work we finished (one-way messages, bulk chunks) once
   * an eighth of the channel's window (a quarter of the bulk window) is
   * owed: one Credit frame per batch, not per message. Never a deadlock: a
   * sender that ran out of credit has its whole window here, so the owed
   * amount reaches the threshold as that work finishes.
   */
  owe(peer: Peer, link: Link, channel: number, bytes: number): void {
    const ls = peer.linkState.get(link);
    if (!ls || link.state !== 'open') return;
    let o = ls.owed.get(channel);
    if (!o) {
      o = { messages: 0, bytes: 0 };
      ls.owed.set(channel, o);
    }
    o.bytes += bytes;
    let due: boolean;
    if (channel === BULK_LANE) {
      due = o.bytes >= this.env.opts.bulkWindow / 4;
    } else {
      o.messages += 1;
      const w = this.registry.windowOf(channel);
      due = o.messages >= Math.ceil(w.messages / 8) || o.bytes >= w.bytes / 8;
    }
    if (!due) return;
    this.sendControl(peer, link, encodeFrame({ type: FrameType.Credit, channel, messages: o.messages, bytes: o.bytes }));
    if (channel === BULK_LANE) ls.bulkGranted += o.bytes;
    else this.giveBack(ls, channel, o.messages, o.bytes);
    o.messages = 0;
    o.bytes = 0;
  }
}
