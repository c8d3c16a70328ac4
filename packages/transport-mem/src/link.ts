/**
 * One end of a simulated connection. The network moves frames between the
 * two ends; this class keeps the receiving side's queue and the sending
 * side's byte count.
 *
 * Backpressure: `bufferedBytes` counts the bytes this end sent that the peer
 * has not yet *consumed* (delivered to its `frame` listeners): frames in
 * flight, held by a network pause, or waiting in the peer's queue while the
 * peer link is paused. A paused receiver therefore makes `send` return false
 * once the high-water mark is reached, and `drain` fires when the peer
 * catches up (or when frames are lost to faults, which frees their bytes).
 */
import {
  type ClusterInfraError,
  type LinkCloseInfo,
  LinkBase,
  type LinkInit,
  LinkResetError,
} from '@clusterinfra/core';
import { Fifo } from './heap.js';
import type { MemoryNetwork } from './network.js';

/** @internal What the network needs to schedule a link's traffic. */
export interface LinkWire {
  /** Queue a frame copy; returns the bytes counted against this link (0 when dropped). */
  transmitFrame(link: MemoryLink, frame: Uint8Array): number;
  /** Queue a graceful-close or reset signal behind everything this link sent. */
  transmitSignal(link: MemoryLink, kind: 'fin' | 'rst'): void;
  linkClosed(link: MemoryLink, info: LinkCloseInfo): void;
}

/** @internal */
export interface MemoryLinkInit extends LinkInit {
  network: MemoryNetwork;
  wire: LinkWire;
  /** The network-wide number of this connection (both ends share it). */
  pair: number;
  localAddress: string;
  highWaterMark: number;
  /** Called once when this end closes, before the `close` event. */
  onClosed: (link: MemoryLink) => void;
}

interface Arrival {
  frame: Uint8Array;
  /** Bytes to give back to the sender once this frame is consumed or dropped. */
  release: number;
}

/** A link of the memory transport. See the Link contract in @clusterinfra/core. */
export class MemoryLink extends LinkBase {
  /** The network this link lives in. */
  readonly network: MemoryNetwork;
  /** This end's address (the transport's address). */
  readonly localAddress: string;
  /** @internal Network-wide connection number, shared by both ends. */
  readonly pair: number;
  /** @internal The other end; set by the network right after both ends exist. */
  peer!: MemoryLink;
  /** @internal Due time of the last item this end queued (keeps a direction FIFO under jitter). */
  outLastDue = Number.NEGATIVE_INFINITY;
  /** @internal The last item this end queued, for reordering. */
  outLast: unknown = undefined;
  /** @internal Frames this end sent, for trace numbering. */
  outFrames = 0;

  private readonly wire: LinkWire;
  private readonly onClosed: (link: MemoryLink) => void;
  private buffered = 0;
  /** Frames received and not yet consumed (the link is paused, or finishing). */
  private readonly arrivals = new Fifo<Arrival>();
  /** We started a graceful close ourselves. */
  private closingLocally = false;
  /** A graceful end that waits until `arrivals` has been consumed. */
  private deferredFinish: LinkCloseInfo | undefined;
  /** This end's node crashed: the reset went to the peer and nothing more leaves (see `silence`). */
  private silenced = false;

  /** @internal Links are made by the network during the simulated handshake. */
  constructor(init: MemoryLinkInit) {
    super(init);
    this.network = init.network;
    this.wire = init.wire;
    this.pair = init.pair;
    this.localAddress = init.localAddress;
    this.onClosed = init.onClosed;
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  /** @internal False once nothing more can be delivered to this end. */
  get receiving(): boolean {
    return this.state !== 'closed' && this.deferredFinish === undefined;
  }

  protected sendFrame(frame: Uint8Array): boolean {
    // A crashed node sends nothing more, even from what its own links' ends make it do.
    if (this.silenced) return true;
    this.buffered += this.wire.transmitFrame(this, frame);
    return this.buffered < this.highWaterMark;
  }

  protected beginClose(): void {
    this.closingLocally = true;
    this.wire.transmitSignal(this, 'fin');
  }

  protected abort(_error?: ClusterInfraError): void {
    this.wire.transmitSignal(this, 'rst');
  }

  protected onPause(): void {
    // Nothing to stop: the network hands frames over and they wait in `arrivals`.
  }

  protected onResume(): void {
    this.pump();
  }

  protected override finish(info: LinkCloseInfo, _immediate?: boolean): void {
    if (this.state === 'closed') return;
    this.deferredFinish = undefined;
    // Frames never consumed are lost: give their bytes back to the sender.
    for (const a of this.arrivals.drain()) this.peer.release(a.release);
    this.onClosed(this);
    this.wire.linkClosed(this, info);
    super.finish(info, true);
  }

  /** @internal A frame arrived from the peer (already a private copy). */
  arrive(frame: Uint8Array, release: number): void {
    if (!this.receiving) {
      this.peer.release(release);
      return;
    }
    if (this.flowing && this.arrivals.length === 0) {
      this.receive(frame);
      this.peer.release(release);
    } else {
      this.arrivals.push({ frame, release });
    }
  }

  /** @internal The peer consumed (or the network lost) `bytes` this end sent. */
  release(bytes: number): void {
    if (bytes === 0) return;
    this.buffered -= bytes;
    if (this.buffered < this.highWaterMark && this.state !== 'closed') this.drained();
  }

  /** @internal The peer's graceful-close signal arrived. */
  remoteClosed(): void {
    if (this.state === 'closed' || this.closingLocally) return; // simultaneous close: our own FIN ends us
    this.markClosing();
    this.finishWhenConsumed({ reason: 'remote-closed' });
  }

  /** @internal Our own graceful-close signal left (it was delivered or lost to the network). */
  localCloseSent(): void {
    if (this.state === 'closed') return;
    this.finishWhenConsumed({ reason: 'closed' });
  }

  /** @internal The peer's reset signal arrived. */
  resetByPeer(): void {
    this.finish({ reason: 'reset', error: new LinkResetError(`link ${this.id} reset by ${this.remoteAddress}`) });
  }

  /** @internal The network killed this connection (`killLinks`): no signal, both ends reset. */
  kill(detail: string): void {
    this.finish({ reason: 'reset', error: new LinkResetError(`link ${this.id} killed: ${detail}`) });
  }

  /**
   * @internal This end's node crashed: the peer gets a reset signal, and
   * nothing this end sends from now on leaves. The node's links are all
   * silenced before any of them ends (`crash`), so what the node does on
   * hearing its first links end (a suspicion reported over another one)
   * goes nowhere, as nothing leaves a killed process.
   */
  silence(): void {
    if (this.state === 'closed' || this.silenced) return;
    this.wire.transmitSignal(this, 'rst');
    this.silenced = true;
  }

  /** @internal This end's node crashed: the peer gets a reset signal (unless `silence` sent it), this end resets at once. */
  crash(): void {
    if (this.state === 'closed') return;
    this.silence();
    this.finish({ reason: 'reset', error: new LinkResetError(`link ${this.id} lost: local node crashed`) });
  }

  private finishWhenConsumed(info: LinkCloseInfo): void {
    if (this.arrivals.length === 0) this.finish(info);
    else this.deferredFinish ??= info;
  }

  /** Deliver queued frames while flowing; each is taken before its event, so re-entry keeps order. */
  private pump(): void {
    while (this.flowing && this.state !== 'closed' && this.arrivals.length > 0) {
      const a = this.arrivals.shift()!;
      this.receive(a.frame);
      this.peer.release(a.release);
    }
    if (this.arrivals.length === 0 && this.deferredFinish !== undefined && this.state !== 'closed') {
      this.finish(this.deferredFinish);
    }
  }
}
