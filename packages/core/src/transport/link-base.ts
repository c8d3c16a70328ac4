/**
 * The bookkeeping every link shares, so that a transport implements only
 * moving bytes: the state machine (open → closing → closed), the single
 * `close` event, delivery that starts paused, the `closed` promise,
 * `waitDrain`, and the frame-size check.
 *
 * A subclass calls `receive(frame)` for each whole frame, `drained()` when
 * its buffer fell below the high-water mark, and `finish(info)` once the
 * underlying connection is gone.
 */
import { EventEmitter } from 'eventemitter3';
import type { Link, LinkCloseInfo, LinkEvents, LinkState, NodeIdentity } from '../contracts/transport.js';
import {
  AbortedError,
  type ClusterInfraError,
  FrameTooLargeError,
  InvalidOptionError,
  LinkClosedError,
} from '../errors/index.js';

const DEFAULT_HIGH_WATER_MARK = 1024 * 1024;

export interface LinkInit {
  id: string;
  direction: 'inbound' | 'outbound';
  local: NodeIdentity;
  remote: NodeIdentity;
  remoteAddress: string;
  maxFrameSize: number;
  /** Bytes buffered before `send` returns false. @default 1 MiB */
  highWaterMark?: number;
}

export abstract class LinkBase extends EventEmitter<LinkEvents> implements Link {
  readonly id: string;
  readonly direction: 'inbound' | 'outbound';
  readonly local: NodeIdentity;
  readonly remote: NodeIdentity;
  readonly remoteAddress: string;
  readonly closed: Promise<LinkCloseInfo>;
  protected readonly maxFrameSize: number;

  private hwm: number;
  private linkState: LinkState = 'open';
  /** deliverInbox is walking the inbox (a resume() from a frame handler must not start a second walk). */
  private delivering = false;
  private isFlowing = false;
  private wantDrain = false;
  /** Frames that arrived while paused; bounded because paused transports stop reading. */
  private inbox: Uint8Array[] = [];
  /** A graceful close that waits for the inbox to be delivered first. */
  private pendingFinish: LinkCloseInfo | undefined;
  private resolveClosed!: (info: LinkCloseInfo) => void;

  constructor(init: LinkInit) {
    super();
    this.id = init.id;
    this.direction = init.direction;
    this.local = init.local;
    this.remote = init.remote;
    this.remoteAddress = init.remoteAddress;
    this.maxFrameSize = init.maxFrameSize;
    this.hwm = init.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
  }

  get state(): LinkState {
    return this.linkState;
  }

  get flowing(): boolean {
    return this.isFlowing;
  }

  get needDrain(): boolean {
    return this.wantDrain;
  }

  abstract get bufferedBytes(): number;

  get highWaterMark(): number {
    return this.hwm;
  }

  setHighWaterMark(bytes: number): void {
    if (!Number.isSafeInteger(bytes) || bytes < 1) {
      throw new InvalidOptionError('highWaterMark', `highWaterMark must be a positive integer, got ${bytes}`);
    }
    this.hwm = bytes;
    if (this.wantDrain && this.bufferedBytes < bytes) this.drained();
  }

  /** Hand one frame to the network; return false past the high-water mark. */
  protected abstract sendFrame(frame: Uint8Array): boolean;
  /** Begin a graceful close: flush, tell the peer, end. Call `finish` when done. */
  protected abstract beginClose(): void;
  /** Tear the connection down at once (no goodbye to the peer). */
  protected abstract abort(error?: ClusterInfraError): void;
  /** Stop / restart reading from the network. */
  protected abstract onPause(): void;
  protected abstract onResume(): void;

  send(frame: Uint8Array): boolean {
    if (this.linkState !== 'open') throw new LinkClosedError(`link ${this.id} is ${this.linkState}`);
    if (frame.byteLength > this.maxFrameSize) throw new FrameTooLargeError(frame.byteLength, this.maxFrameSize);
    const ok = this.sendFrame(frame);
    if (!ok) this.wantDrain = true;
    return ok;
  }

  sendv(parts: readonly Uint8Array[]): boolean {
    if (this.linkState !== 'open') throw new LinkClosedError(`link ${this.id} is ${this.linkState}`);
    let size = 0;
    for (const p of parts) size += p.byteLength;
    if (size > this.maxFrameSize) throw new FrameTooLargeError(size, this.maxFrameSize);
    const ok = this.sendFrameParts(parts, size);
    if (!ok) this.wantDrain = true;
    return ok;
  }

  /**
   * Hand one frame made of `parts` to the network. The default joins them
   * (one copy); a transport that can write them as they are overrides it.
   */
  protected sendFrameParts(parts: readonly Uint8Array[], size: number): boolean {
    if (parts.length === 1) return this.sendFrame(parts[0]!);
    const frame = new Uint8Array(size);
    let at = 0;
    for (const p of parts) {
      frame.set(p, at);
      at += p.byteLength;
    }
    return this.sendFrame(frame);
  }

  waitDrain(signal?: AbortSignal): Promise<void> {
    if (this.linkState === 'closed') return Promise.reject(new LinkClosedError(`link ${this.id} is closed`));
    if (!this.wantDrain) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        this.off('drain', onDrain);
        this.off('close', onClose);
        signal?.removeEventListener('abort', onAbort);
      };
      const onDrain = (): void => {
        cleanup();
        resolve();
      };
      const onClose = (info: LinkCloseInfo): void => {
        cleanup();
        reject(new LinkClosedError(`link ${this.id} closed (${info.reason})`, { cause: info.error }));
      };
      const onAbort = (): void => {
        cleanup();
        reject(new AbortedError('waitDrain aborted', { cause: signal?.reason }));
      };
      if (signal?.aborted) return onAbort();
      this.on('drain', onDrain);
      this.on('close', onClose);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  resume(): void {
    if (this.isFlowing || this.linkState === 'closed') return;
    this.isFlowing = true;
    this.deliverInbox();
    if (this.isFlowing && this.state !== 'closed') this.onResume();
  }

  pause(): void {
    if (!this.isFlowing) return;
    this.isFlowing = false;
    if (this.linkState !== 'closed') this.onPause();
  }

  close(): Promise<LinkCloseInfo> {
    if (this.linkState === 'open') {
      this.linkState = 'closing';
      this.beginClose();
    }
    return this.closed;
  }

  destroy(error?: ClusterInfraError): void {
    if (this.linkState === 'closed') return;
    this.abort(error);
    this.finish(error ? { reason: 'destroyed', error } : { reason: 'destroyed' }, true);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Deliver one received frame (or keep it until `resume`). */
  protected receive(frame: Uint8Array): void {
    if (this.linkState === 'closed' || this.pendingFinish) return;
    if (this.isFlowing && this.inbox.length === 0) this.emit('frame', frame);
    else this.inbox.push(frame);
  }

  /** Frames waiting for `resume`. */
  protected get inboxLength(): number {
    return this.inbox.length;
  }

  /** The buffer went below the high-water mark. */
  protected drained(): void {
    if (!this.wantDrain || this.linkState === 'closed') return;
    this.wantDrain = false;
    this.emit('drain');
  }

  /** Mark the link closing without starting a close (the peer started it). */
  protected markClosing(): void {
    if (this.linkState === 'open') this.linkState = 'closing';
  }

  /**
   * The connection is gone. A graceful end waits until frames already
   * received are delivered; an abrupt one (`immediate`) drops them.
   */
  protected finish(info: LinkCloseInfo, immediate = info.reason !== 'closed' && info.reason !== 'remote-closed'): void {
    if (this.linkState === 'closed') return;
    if (!immediate && this.inbox.length > 0) {
      this.linkState = 'closing';
      this.pendingFinish ??= info;
      return;
    }
    this.inbox = [];
    this.pendingFinish = undefined;
    this.linkState = 'closed';
    this.isFlowing = false;
    this.resolveClosed(info);
    this.emit('close', info);
  }

  private deliverInbox(): void {
    // A handler that pauses and resumes the link (handing it to a new owner,
    // say) lands here again: the walk below carries on where it is, since a
    // second walk from index 0 would deliver the same frames twice.
    if (this.delivering) return;
    // Index walk, then one splice: shift() per frame would be quadratic.
    let i = 0;
    this.delivering = true;
    try {
      while (this.isFlowing && i < this.inbox.length && this.linkState !== 'closed') {
        this.emit('frame', this.inbox[i++]!);
      }
    } finally {
      this.delivering = false;
    }
    if (this.linkState === 'closed') return;
    this.inbox.splice(0, i);
    if (this.inbox.length === 0 && this.pendingFinish) this.finish(this.pendingFinish, true);
  }
}
