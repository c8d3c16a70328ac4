/**
 * One logical link over one connection per path.
 *
 * Invariants (per direction of the link):
 * - every frame gets the next sequence number when `send` accepts it and is
 *   kept until the peer acknowledges it; an acknowledgement is cumulative
 *   and says the peer's application has *consumed* every frame up to it;
 * - a frame is transmitted on one path; when that path fails, every frame
 *   it carried that is not yet acknowledged is transmitted again on a path
 *   that is up (or as soon as one comes up);
 * - the receiver delivers frames strictly in sequence order, exactly once:
 *   a frame below the next expected number, or already held, is dropped as
 *   a duplicate; a frame ahead of a gap waits until the gap is filled;
 * - the sender transmits no more than the peer's receive window beyond what
 *   the peer consumed, so what a receiver holds is bounded whatever its
 *   application does, and a peer that exceeds it is a protocol violation.
 *
 * So a path failure loses, duplicates and reorders nothing, and the link
 * closes only when every path has been down for `linkTimeoutMs`, when the
 * peer no longer knows the session (it restarted or closed it), or by a
 * FIN/RST from the peer.
 */
import {
  type ClusterInfraError,
  type Clock,
  every,
  type Link,
  LinkBase,
  type LinkCloseInfo,
  type LinkInit,
  LinkResetError,
  MalformedFrameError,
  type RandomSource,
  type TimerHandle,
} from '@clusterinfra/core';
import type { ResolvedMultipathOptions } from './options.js';
import { Queue } from './queue.js';
import { DATA_HEADER, decode, encodeAck, encodeRst, Kind, putSequencedHeader, dataAck, dataSeq } from './wire.js';

/**
 * What one frame costs against a window besides its bytes, so that empty
 * frames are bounded too (both ends count the same way).
 */
export const FRAME_COST = 64;

/** Out-of-order frames a receiver holds at most (besides the byte bound). */
const MAX_OUT_OF_ORDER = 65_536;

export type PathState = 'up' | 'down' | 'connecting';

/** One path of one logical link, as `health()` reports it. */
export interface PathHealth {
  /** Position of the path in the list given to `multipath()`. */
  readonly index: number;
  readonly state: PathState;
  /** Whether this path carries the link's data now (active/standby: the active one). */
  readonly active: boolean;
  /** Times the path went down (reset, silent past `pathTimeoutMs`, closed). */
  readonly failures: number;
  /** Times the path came up (1 after the first connection). */
  readonly ups: number;
  /** Milliseconds since something last arrived on the path (undefined when it never was up). */
  readonly silentMs: number | undefined;
  /** Milliseconds since the path last changed state. */
  readonly sinceMs: number;
  readonly framesSent: number;
  readonly framesReceived: number;
  /** Frames this path carried again after another path failed. */
  readonly retransmitted: number;
  /** Why the path last went down. */
  readonly lastError: string | undefined;
}

/** One logical link, as `health()` reports it. */
export interface LinkHealth {
  readonly id: string;
  readonly remoteNode: number;
  readonly remoteIncarnation: number;
  readonly direction: 'inbound' | 'outbound';
  readonly state: 'open' | 'closing' | 'closed';
  readonly paths: readonly PathHealth[];
  /** Frames sent and not yet acknowledged. */
  readonly unacknowledged: number;
  /** Bytes received and not yet consumed by the application, counting 64 per frame besides its bytes (at most the receive window and one frame). */
  readonly receiveBuffered: number;
  /** Frames sent again after a path failed. */
  readonly retransmitted: number;
  /** Duplicate frames the receiver dropped. */
  readonly duplicatesDropped: number;
}

/** A path going up or down, as the transport reports it. */
export interface PathEvent {
  readonly link: string;
  readonly remoteNode: number;
  readonly path: number;
  readonly state: PathState;
  readonly reason?: string;
}

/** What a link needs from its transport: a narrow view, not the transport. */
export interface LinkHost {
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly options: ResolvedMultipathOptions;
  /**
   * Open path `index` again for this (outbound) link. Resolves with the
   * new path link (paused) and the peer's acknowledgement from its WELCOME.
   * Rejects with `SessionUnknownError` when the peer no longer knows the session.
   */
  redial(link: MultipathLink, index: number): Promise<{ link: Link; ack: number }>;
  pathEvent(event: PathEvent): void;
  linkClosed(link: MultipathLink): void;
}

/** The peer answered a HELLO for this session with "unknown session": it restarted or closed the link. */
export class SessionUnknownError extends LinkResetError {
  constructor(detail: string) {
    super(`the peer no longer knows this link: ${detail}`);
  }
}

interface Outgoing {
  readonly seq: number;
  /** The frame, or its parts (`sendv`). */
  readonly parts: Uint8Array | readonly Uint8Array[];
  readonly size: number;
  readonly weight: number;
  readonly fin: boolean;
  /** Path of the last transmission (-1 before the first). */
  path: number;
  /** Which connection of that path carried it (`PathSlot.generation`). */
  generation: number;
  /** The heartbeat tick of the last transmission. */
  sentTick: number;
}

/** A received frame that waits (out of order, or for a paused application). */
interface Incoming {
  readonly seq: number;
  readonly payload: Uint8Array;
  readonly fin: boolean;
}

interface PathSlot {
  readonly index: number;
  link: Link | undefined;
  /** Counts the connections this path has had: a frame sent on an earlier one is not on the current one. */
  generation: number;
  state: PathState;
  lastHeard: number;
  lastSent: number;
  /** Something arrived / was sent since the last tick (cheaper than reading the clock per frame). */
  heard: boolean;
  sent: boolean;
  changedAt: number;
  everUp: boolean;
  failures: number;
  ups: number;
  framesSent: number;
  framesReceived: number;
  retransmitted: number;
  lastError: string | undefined;
  redialTimer: TimerHandle | undefined;
  attempts: number;
  detach: (() => void) | undefined;
}

export interface MultipathLinkInit extends LinkInit {
  host: LinkHost;
  pathCount: number;
  /** The peer's receive window (from its HELLO or WELCOME). */
  peerWindow: number;
}

const EMPTY = new Uint8Array(0);

/** A link of the multipath transport. See the Link contract in @clusterinfra/core. */
export class MultipathLink extends LinkBase {
  private readonly host: LinkHost;
  private readonly clock: Clock;
  private readonly opts: ResolvedMultipathOptions;
  private readonly paths: PathSlot[];
  private readonly peerWindow: number;

  // --- sending
  private readonly out = new Queue<Outgoing>();
  /** Entries of `out` (from its head) transmitted at least once. */
  private transmitted = 0;
  private nextSeq = 1;
  /** Highest seq the peer consumed. */
  private peerAck = 0;
  /** Highest seq below which the peer has every frame (from its ACK and PING). */
  private peerReceived = 0;
  /** Heartbeat ticks so far: the clock of loss recovery. */
  private ticks = 0;
  /** The `received` we last reported. */
  private receivedReported = 0;
  /** Bytes of frames not yet transmitted on any path. */
  private untransmitted = 0;
  private inflight = 0;
  private roundRobin = 0;
  private pumping = false;
  private closingLocally = false;

  // --- receiving
  private readonly ready = new Queue<Incoming>();
  private readonly ahead = new Map<number, Incoming>();
  private nextExpected = 1;
  private held = 0;
  /** Highest seq our application consumed, and what of it the peer was told. */
  private consumed = 0;
  private ackSent = 0;
  private consumedSinceAck = 0;
  private ackQueued = false;
  private finConsumed = false;

  // --- counters and timers
  private retransmittedFrames = 0;
  private duplicates = 0;
  private readonly heartbeat: TimerHandle;
  private lastTick: number;
  private linkTimer: TimerHandle | undefined;
  private closeTimer: TimerHandle | undefined;

  /** @internal Made by the transport once the first path finished its HELLO/WELCOME. */
  constructor(init: MultipathLinkInit) {
    super({ ...init, highWaterMark: init.highWaterMark ?? init.host.options.highWaterMark });
    this.host = init.host;
    this.clock = init.host.clock;
    this.opts = init.host.options;
    this.peerWindow = init.peerWindow;
    const now = this.clock.now();
    this.paths = Array.from({ length: init.pathCount }, (_, index) => ({
      index,
      link: undefined,
      generation: 0,
      state: 'down' as PathState,
      lastHeard: now,
      lastSent: now,
      heard: false,
      sent: false,
      changedAt: now,
      everUp: false,
      failures: 0,
      ups: 0,
      framesSent: 0,
      framesReceived: 0,
      retransmitted: 0,
      lastError: undefined,
      redialTimer: undefined,
      attempts: 0,
      detach: undefined,
    }));
    this.lastTick = now;
    this.heartbeat = every(this.clock, this.opts.heartbeatIntervalMs, () => this.tick()).unref();
  }

  /**
   * Bytes not yet handed to a path, plus what the path connections still
   * hold. Frames kept only for a possible resend (at most the peer's
   * receive window) do not count: the network took them, as TCP's kernel
   * buffer does not count for the TCP transport.
   */
  get bufferedBytes(): number {
    let n = this.untransmitted;
    for (const p of this.paths) if (p.link !== undefined) n += p.link.bufferedBytes;
    return n;
  }

  /** Path connections follow the link's high-water mark, so that their `drain` is ours. */
  override setHighWaterMark(bytes: number): void {
    super.setHighWaterMark(bytes);
    for (const p of this.paths) p.link?.setHighWaterMark(bytes);
  }

  /** @internal Highest seq our application consumed (what a HELLO or WELCOME acknowledges). */
  get consumedSeq(): number {
    return this.consumed;
  }

  /** The path that carries data now under active/standby (the first one up), or undefined. */
  get activePath(): number | undefined {
    return this.firstUp()?.index;
  }

  /** A snapshot of this link and its paths. */
  health(): LinkHealth {
    const now = this.clock.now();
    const active = this.opts.policy === 'both-active' ? undefined : this.activePath;
    return {
      id: this.id,
      remoteNode: this.remote.nodeNum,
      remoteIncarnation: this.remote.incarnation,
      direction: this.direction,
      state: this.state,
      unacknowledged: this.out.length,
      receiveBuffered: this.held,
      retransmitted: this.retransmittedFrames,
      duplicatesDropped: this.duplicates,
      paths: this.paths.map((p) => ({
        index: p.index,
        state: p.state,
        active: p.state === 'up' && (active === undefined || active === p.index),
        failures: p.failures,
        ups: p.ups,
        silentMs: p.everUp ? (p.heard ? 0 : now - p.lastHeard) : undefined,
        sinceMs: now - p.changedAt,
        framesSent: p.framesSent,
        framesReceived: p.framesReceived,
        retransmitted: p.retransmitted,
        lastError: p.lastError,
      })),
    };
  }

  // ------------------------------------------------------------ paths

  /**
   * @internal A path connection finished its HELLO/WELCOME for this link.
   * `ack` is the peer's acknowledgement from that exchange. The path link
   * may be paused; it is resumed here, after the listeners are on.
   */
  attachPath(index: number, link: Link, ack: number): void {
    const p = this.paths[index];
    if (p === undefined || this.state === 'closed' || link.state !== 'open') {
      link.destroy();
      return;
    }
    if (p.link !== undefined) this.pathDown(p, 'replaced by a new connection', false);
    p.redialTimer?.cancel();
    p.redialTimer = undefined;
    p.attempts = 0;
    const now = this.clock.now();
    Object.assign(p, { link, state: 'up', lastHeard: now, lastSent: now, heard: false, sent: false, changedAt: now, everUp: true });
    p.ups++;
    p.generation++;
    const onFrame = (bytes: Uint8Array): void => this.onPathFrame(p, link, bytes);
    const onClose = (info: LinkCloseInfo): void => {
      if (p.link === link) this.pathDown(p, `connection ${info.reason}${info.error ? `: ${info.error.message}` : ''}`);
    };
    const onDrain = (): void => this.pump();
    link.setHighWaterMark(this.highWaterMark);
    link.on('frame', onFrame);
    link.on('close', onClose);
    link.on('drain', onDrain);
    p.detach = () => {
      link.off('frame', onFrame);
      link.off('close', onClose);
      link.off('drain', onDrain);
    };
    this.linkTimer?.cancel();
    this.linkTimer = undefined;
    this.host.pathEvent({ link: this.id, remoteNode: this.remote.nodeNum, path: index, state: 'up' });
    if (!this.onAck(ack)) return;
    this.resendOrphans();
    this.pump();
    link.resume();
  }

  /** @internal Path `index` is being dialled for the first time. */
  pathConnecting(index: number): void {
    const p = this.paths[index];
    if (p !== undefined && p.state === 'down' && p.link === undefined) p.state = 'connecting';
  }

  /** @internal The first connection of path `index` (or a redial) failed: keep trying (outbound links). */
  pathFailedToOpen(index: number, error: ClusterInfraError): void {
    const p = this.paths[index];
    if (p === undefined || this.state === 'closed') return;
    if (error instanceof SessionUnknownError) {
      this.finish({ reason: 'reset', error });
      return;
    }
    p.state = 'down';
    p.lastError = error.message;
    this.scheduleRedial(p);
  }

  private pathDown(p: PathSlot, why: string, redial = true): void {
    const link = p.link;
    p.detach?.();
    p.detach = undefined;
    p.link = undefined;
    p.state = 'down';
    p.failures++;
    p.changedAt = this.clock.now();
    p.lastError = why;
    if (link !== undefined && link.state !== 'closed') link.destroy();
    this.host.pathEvent({ link: this.id, remoteNode: this.remote.nodeNum, path: p.index, state: 'down', reason: why });
    if (this.state === 'closed') return;
    if (!redial) return;
    // What the failed path carried moves to a surviving one; the peer's view
    // of our acknowledgements may have been lost with it.
    this.resendOrphans();
    this.flushAck(true);
    this.pump();
    if (this.firstUp() === undefined && this.linkTimer === undefined) {
      this.linkTimer = this.clock.setTimeout(() => {
        this.linkTimer = undefined;
        if (this.firstUp() !== undefined) return;
        this.finish({
          reason: 'reset',
          error: new LinkResetError(`every path to node ${this.remote.nodeNum} was down for ${this.opts.linkTimeoutMs} ms`),
        });
      }, this.opts.linkTimeoutMs);
      this.linkTimer.unref();
    }
    this.scheduleRedial(p);
  }

  /** Outbound links redial a failed path with exponential backoff and jitter; inbound ones wait for the peer. */
  private scheduleRedial(p: PathSlot): void {
    if (this.direction !== 'outbound' || this.state === 'closed' || p.redialTimer !== undefined || p.state !== 'down') return;
    const cap = Math.min(this.opts.redialMaxMs, this.opts.redialMinMs * 2 ** Math.min(p.attempts, 20));
    const delay = Math.ceil(cap / 2 + this.host.random.next() * (cap / 2));
    p.attempts++;
    p.redialTimer = this.clock.setTimeout(() => {
      p.redialTimer = undefined;
      if (this.state === 'closed' || p.state !== 'down') return;
      p.state = 'connecting';
      p.changedAt = this.clock.now();
      this.host.redial(this, p.index).then(
        ({ link, ack }) => {
          if (p.state !== 'connecting') {
            link.destroy();
            return;
          }
          this.attachPath(p.index, link, ack);
        },
        (err: ClusterInfraError) => {
          if (p.state === 'connecting') this.pathFailedToOpen(p.index, err);
        },
      );
    }, delay);
    p.redialTimer.unref();
  }

  private firstUp(): PathSlot | undefined {
    for (const p of this.paths) if (p.state === 'up' && p.link?.state === 'open') return p;
    return undefined;
  }

  /** Where the next new frame goes, or undefined to wait (no path up, or its buffer is full). */
  private pickPath(forResend: boolean): PathSlot | undefined {
    if (this.opts.policy === 'active-standby') {
      const p = this.firstUp();
      return p && (forResend || !p.link!.needDrain) ? p : undefined;
    }
    const n = this.paths.length;
    for (let k = 0; k < n; k++) {
      const p = this.paths[(this.roundRobin + k) % n]!;
      if (p.state === 'up' && p.link?.state === 'open' && (forResend || !p.link.needDrain)) {
        this.roundRobin = (p.index + 1) % n;
        return p;
      }
    }
    return undefined;
  }

  /** Every 'heartbeat': declare silent paths failed, and keep idle ones heard. */
  private tick(): void {
    const now = this.clock.now();
    // A tick that ran late means this process stalled (GC, a busy loop, a
    // loaded machine): for that long input may have waited unread, so the
    // lateness is taken off the silence. The process's own trouble is no
    // evidence against a path.
    const lateness = Math.max(0, now - this.lastTick - this.opts.heartbeatIntervalMs);
    this.lastTick = now;
    this.ticks++;
    for (const p of this.paths) {
      if (p.state !== 'up' || p.link === undefined) continue;
      if (p.heard) p.lastHeard = now;
      if (p.sent) p.lastSent = now;
      p.heard = p.sent = false;
      if (now - p.lastHeard - lateness > this.opts.pathTimeoutMs) {
        this.pathDown(p, `nothing heard for ${now - p.lastHeard} ms`);
      } else if (now - p.lastSent >= this.opts.heartbeatIntervalMs) {
        this.sendControl(p, encodeAck(Kind.Ping, this.consumed, this.nextExpected - 1));
        this.ackSent = this.consumed;
        this.receivedReported = this.nextExpected - 1;
      }
    }
    if (this.state === 'closed') return;
    // Frames received but not yet consumed (a paused or busy application) are reported once a tick, so the sender does not take them for lost.
    if (this.nextExpected - 1 > this.receivedReported) this.flushAck(true);
    this.recoverLost();
  }

  /**
   * A path is trusted to be reliable while it is up, but one that loses
   * frames on a connection that stays open (a cut shorter than the path
   * timeout, on a network that does not retransmit) must not stall the
   * link: a frame the peer still lacks after about a path timeout of
   * heartbeats, while the peer keeps reporting, is sent again. The receiver
   * drops it if it had it after all.
   */
  private recoverLost(): void {
    if (this.transmitted === 0 || this.out.at(this.transmitted - 1)!.seq <= this.peerReceived) return;
    const patience = Math.ceil(this.opts.pathTimeoutMs / this.opts.heartbeatIntervalMs) + 1;
    for (let i = 0; i < this.transmitted; i++) {
      const e = this.out.at(i)!;
      if (e.seq <= this.peerReceived || this.ticks - e.sentTick < patience) continue;
      const p = this.pickPath(true);
      if (p === undefined) return;
      if (!this.transmit(e, p)) {
        i--;
        continue;
      }
      p.retransmitted++;
      this.retransmittedFrames++;
    }
  }

  /** The peer has every frame up to `received`. */
  private onReceivedReport(received: number): void {
    if (received <= this.peerReceived) return;
    const lastSent = this.transmitted > 0 ? this.out.at(this.transmitted - 1)!.seq : this.peerAck;
    if (received > lastSent) {
      this.fail(new MalformedFrameError(`multipath: node ${this.remote.nodeNum} reports frame ${received} received, beyond the last sent (${lastSent})`));
      return;
    }
    this.peerReceived = received;
  }

  // ------------------------------------------------------------ sending

  protected sendFrame(frame: Uint8Array): boolean {
    return this.enqueue(frame, frame.byteLength, false);
  }

  protected override sendFrameParts(parts: readonly Uint8Array[], size: number): boolean {
    return this.enqueue(parts.slice(), size, false);
  }

  private enqueue(parts: Uint8Array | readonly Uint8Array[], size: number, fin: boolean): boolean {
    this.out.push({ seq: this.nextSeq++, parts, size, weight: size + FRAME_COST, fin, path: -1, generation: 0, sentTick: 0 });
    this.untransmitted += size;
    this.pump();
    return this.bufferedBytes < this.highWaterMark;
  }

  /** Transmit new frames while the peer's window and a path allow. */
  private pump(): void {
    if (this.pumping || this.state === 'closed') return;
    this.pumping = true;
    try {
      while (this.transmitted < this.out.length) {
        const e = this.out.at(this.transmitted)!;
        if (this.inflight > 0 && this.inflight + e.weight > this.peerWindow) break;
        const p = this.pickPath(false);
        if (p === undefined) break;
        if (!this.transmit(e, p)) continue;
        this.transmitted++;
        this.inflight += e.weight;
        this.untransmitted -= e.size;
      }
    } finally {
      this.pumping = false;
    }
    if (this.needDrain && this.bufferedBytes < this.highWaterMark) this.drained();
  }

  /** Send one frame on `p`; false when the path failed under us (the caller picks another). */
  private transmit(e: Outgoing, p: PathSlot): boolean {
    try {
      // Header and payload as parts: a path that coalesces (tcp) copies small
      // ones straight into its write batch, large ones go without a copy. A
      // 17-byte Uint8Array lives on V8's heap: cheaper than Buffer's pool.
      const header = new Uint8Array(DATA_HEADER);
      putSequencedHeader(header, e.fin ? Kind.Fin : Kind.Data, e.seq, this.consumed);
      p.link!.sendv(e.parts instanceof Uint8Array ? [header, e.parts] : [header, ...e.parts]);
    } catch (err) {
      this.pathDown(p, `send failed: ${(err as Error).message}`);
      return false;
    }
    e.path = p.index;
    e.generation = p.generation;
    e.sentTick = this.ticks;
    p.framesSent++;
    p.sent = true;
    this.ackSent = this.consumed;
    // The ack a DATA frame carries also says "received" when nothing received is waiting to be consumed.
    if (this.consumed === this.nextExpected - 1) this.receivedReported = this.consumed;
    this.consumedSinceAck = 0;
    return true;
  }

  /** Transmit again every unacknowledged frame whose path is no longer up. */
  private resendOrphans(): void {
    for (let i = 0; i < this.transmitted; i++) {
      const e = this.out.at(i)!;
      const on = this.paths[e.path];
      if (on !== undefined && on.generation === e.generation && on.state === 'up' && on.link?.state === 'open') continue;
      const p = this.pickPath(true);
      if (p === undefined) return;
      if (!this.transmit(e, p)) {
        i--; // that path just went down; try the frame again on the next one
        continue;
      }
      p.retransmitted++;
      this.retransmittedFrames++;
    }
  }

  /** The peer consumed everything up to `ack`. False when that is a protocol violation (the link is then closed). */
  private onAck(ack: number): boolean {
    if (ack <= this.peerAck) return true;
    if (ack > this.peerReceived) this.peerReceived = ack;
    const lastSent = this.transmitted > 0 ? this.out.at(this.transmitted - 1)!.seq : this.peerAck;
    if (ack > lastSent) {
      this.fail(new MalformedFrameError(`multipath: acknowledgement ${ack} beyond the last frame sent (${lastSent})`));
      return false;
    }
    while (this.out.length > 0 && this.out.at(0)!.seq <= ack) {
      const e = this.out.shift()!;
      this.inflight -= e.weight;
      this.transmitted--;
    }
    this.peerAck = ack;
    if (this.closingLocally && this.out.length === 0) {
      this.finish({ reason: 'closed' });
      return false;
    }
    this.pump();
    return true;
  }

  private sendControl(p: PathSlot, frame: Uint8Array): void {
    try {
      p.link!.send(frame);
      p.sent = true;
    } catch (err) {
      this.pathDown(p, `send failed: ${(err as Error).message}`);
    }
  }

  // ------------------------------------------------------------ receiving

  private onPathFrame(p: PathSlot, link: Link, bytes: Uint8Array): void {
    if (p.link !== link || this.state === 'closed') return;
    p.heard = true;
    p.framesReceived++;
    // DATA, nearly every frame, is read in place (no message object).
    if (bytes[0] === Kind.Data && bytes.byteLength >= DATA_HEADER) {
      let seq: number;
      let ack: number;
      try {
        seq = dataSeq(bytes);
        ack = dataAck(bytes);
      } catch (err) {
        this.fail(err as ClusterInfraError);
        return;
      }
      if (this.onAck(ack)) this.onSequenced(seq, bytes.subarray(DATA_HEADER), false);
      return;
    }
    let m;
    try {
      m = decode(bytes);
    } catch (err) {
      this.fail(err as ClusterInfraError);
      return;
    }
    switch (m.kind) {
      case Kind.Data:
        if (this.onAck(m.ack)) this.onSequenced(m.seq, m.payload, false);
        return;
      case Kind.Fin:
        if (this.onAck(m.ack)) this.onSequenced(m.seq, EMPTY, true);
        return;
      case Kind.Ack:
      case Kind.Ping:
        if (this.onAck(m.ack)) this.onReceivedReport(m.received);
        return;
      case Kind.Rst:
        this.finish({ reason: 'reset', error: new LinkResetError(`link ${this.id} reset by node ${this.remote.nodeNum}`) });
        return;
      default:
        this.fail(new MalformedFrameError(`multipath: frame type ${m.kind} on an open path`));
    }
  }

  private onSequenced(seq: number, payload: Uint8Array, fin: boolean): void {
    if (seq < this.nextExpected || (this.ahead.size > 0 && this.ahead.has(seq))) {
      this.duplicates++;
      return;
    }
    this.held += payload.byteLength + FRAME_COST;
    if (this.held > this.opts.receiveWindow + this.maxFrameSize + FRAME_COST || this.ahead.size >= MAX_OUT_OF_ORDER) {
      this.fail(new MalformedFrameError(`multipath: node ${this.remote.nodeNum} sent past the receive window`));
      return;
    }
    if (seq !== this.nextExpected) {
      this.ahead.set(seq, { seq, payload, fin });
      return;
    }
    this.nextExpected++;
    if (this.ahead.size === 0 && this.ready.length === 0 && this.flowing && !fin) {
      // The common case, in order with nothing waiting: straight to the application.
      this.consume(seq, payload);
      this.receive(payload);
      this.scheduleAck();
      return;
    }
    this.ready.push({ seq, payload, fin });
    for (let next = this.ahead.get(this.nextExpected); next !== undefined; next = this.ahead.get(this.nextExpected)) {
      this.ahead.delete(this.nextExpected);
      this.ready.push(next);
      this.nextExpected++;
    }
    this.deliver();
  }

  /** Hand frames to the application in order while it is flowing; each is taken before its event, so re-entry keeps order. */
  private deliver(): void {
    while (this.flowing && this.state !== 'closed' && this.ready.length > 0) {
      const item = this.ready.shift()!;
      this.consume(item.seq, item.payload);
      if (item.fin) {
        this.onFinConsumed();
        return;
      }
      this.receive(item.payload);
    }
    this.scheduleAck();
  }

  private consume(seq: number, payload: Uint8Array): void {
    const weight = payload.byteLength + FRAME_COST;
    this.held -= weight;
    this.consumed = seq;
    this.consumedSinceAck += weight;
  }

  private onFinConsumed(): void {
    this.finConsumed = true;
    this.flushAck(true);
    // Both ends closing at once: our own FIN, once acknowledged, ends us.
    if (this.closingLocally) return;
    this.markClosing();
    this.finish({ reason: 'remote-closed' });
  }

  /** Acknowledge soon: at once past a quarter of our window, else once the current burst of input is handled. */
  private scheduleAck(): void {
    if (this.consumed <= this.ackSent) return;
    if (this.consumedSinceAck >= this.opts.receiveWindow / 4) {
      this.flushAck(false);
      return;
    }
    if (this.ackQueued) return;
    this.ackQueued = true;
    queueMicrotask(this.flushQueuedAck);
  }

  private readonly flushQueuedAck = (): void => {
    this.ackQueued = false;
    if (this.state !== 'closed') this.flushAck(false);
  };

  private flushAck(force: boolean): void {
    if (!force && this.consumed <= this.ackSent) return;
    const p = this.firstUp();
    if (p === undefined) return;
    this.sendControl(p, encodeAck(Kind.Ack, this.consumed, this.nextExpected - 1));
    this.ackSent = this.consumed;
    this.receivedReported = this.nextExpected - 1;
    this.consumedSinceAck = 0;
  }

  // ------------------------------------------------------------ LinkBase

  protected onPause(): void {
    // Paths keep being read: acknowledgements and heartbeats must flow. What
    // arrives waits in `ready`, bounded by the receive window.
  }

  protected onResume(): void {
    this.deliver();
  }

  protected beginClose(): void {
    this.closingLocally = true;
    if (this.finConsumed && this.out.length === 0) {
      this.finish({ reason: 'closed' });
      return;
    }
    this.enqueue(EMPTY, 0, true);
    this.closeTimer = this.clock.setTimeout(() => {
      this.closeTimer = undefined;
      this.sendRst();
      this.finish({
        reason: 'reset',
        error: new LinkResetError(`node ${this.remote.nodeNum} did not confirm the close within ${this.opts.closeTimeoutMs} ms`),
      });
    }, this.opts.closeTimeoutMs);
    this.closeTimer.unref();
  }

  protected abort(_error?: ClusterInfraError): void {
    this.sendRst();
  }

  /** A protocol violation by the peer: tell it (RST) and close with `error`. */
  private fail(error: ClusterInfraError): void {
    if (this.state === 'closed') return;
    this.sendRst();
    this.finish({ reason: 'error', error });
  }

  private sendRst(): void {
    for (const p of this.paths) if (p.state === 'up' && p.link?.state === 'open') this.sendControl(p, encodeRst());
  }

  protected override finish(info: LinkCloseInfo, _immediate?: boolean): void {
    if (this.state === 'closed') return;
    this.heartbeat.cancel();
    this.linkTimer?.cancel();
    this.closeTimer?.cancel();
    // Anything queued for the peer (an acknowledgement, a RST) leaves before the path closes.
    for (const p of this.paths) {
      p.redialTimer?.cancel();
      p.redialTimer = undefined;
      const link = p.link;
      p.detach?.();
      p.detach = undefined;
      p.link = undefined;
      p.state = 'down';
      if (link !== undefined) void link.close();
    }
    this.out.clear();
    this.ready.clear();
    this.ahead.clear();
    this.untransmitted = 0;
    this.inflight = 0;
    this.transmitted = 0;
    this.held = 0;
    this.host.linkClosed(this);
    super.finish(info, true);
  }
}
