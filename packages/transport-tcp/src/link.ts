/**
 * A TCP link: moves frames between a socket and LinkBase, which does the
 * state machine, the single close event and paused delivery.
 *
 * Writes are coalesced: frames sent in one tick are staged and handed to the
 * socket in one corked batch on `process.nextTick` (one writev). Small
 * frames are copied with their headers into a slab; large ones are written
 * as they are, after their header, without a copy.
 *
 * Closing:
 * - `close()` flushes, sends GOODBYE, ends our side, and keeps reading until
 *   the peer answers with its GOODBYE: then everything we sent was read, and
 *   the reason is `closed`. No answer within `closeTimeoutMs` is a `reset`.
 * - A GOODBYE from the peer: we answer with ours (after anything already
 *   sent), end, and close with `remote-closed`.
 * - EOF or a socket error without a GOODBYE is `reset`: a crashed process's
 *   kernel sends a FIN too, and that is not a graceful close.
 * - A protocol violation destroys the socket; the reason is `error`.
 *
 * Encrypted links (`records`): everything after the handshake, GOODBYE
 * included, goes through the record layer (record.ts). Writes are sealed
 * at flush time, one or more records per batch; reads are opened before the
 * frame decoder sees them, so a record that fails its check closes the link
 * with IntegrityError before any of its bytes is delivered.
 */
import type { Socket } from 'node:net';
import {
  type ClusterInfraError,
  type Clock,
  FrameDeadlineError,
  LinkBase,
  type LinkCloseInfo,
  type LinkInit,
  LinkResetError,
  MalformedFrameError,
  type TimerHandle,
  isClusterInfraError,
} from '@clusterinfra/core';
import { COALESCE_MAX_FRAME, ControlType, HEADER_SIZE, SLAB_SIZE } from './constants.js';
import { FrameDeadline, type ReadProgress } from './deadline.js';
import { type FrameDecoder, encodeControl, writeDataHeader } from './frame.js';
import type { RecordOpener, RecordSealer } from './record.js';

export interface TcpLinkWiring {
  /** The stream frames travel on (a TLS socket over `raw`, or `raw` itself). */
  readonly socket: Socket;
  /** The TCP socket underneath, for an abortive reset. */
  readonly raw: Socket;
  /** The decoder the handshake used; it may hold frames that followed it. */
  readonly decoder: FrameDecoder;
  readonly clock: Clock;
  readonly highWaterMark: number;
  readonly frameDeadlineMs: number;
  readonly closeTimeoutMs: number;
  /** Called once, when the link has closed. */
  readonly onClosed: (link: TcpLink) => void;
  /** The record layer of an encrypted link. */
  readonly records?: { readonly sealer: RecordSealer; readonly opener: RecordOpener };
}

export class TcpLink extends LinkBase {
  private readonly socket: Socket;
  private readonly raw: Socket;
  private readonly decoder: FrameDecoder;
  private readonly clock: Clock;
  private readonly closeTimeoutMs: number;
  private readonly deadline: FrameDeadline;
  private readonly sealer: RecordSealer | undefined;
  private readonly opener: RecordOpener | undefined;

  // Coalescing: bytes in [slabStart, slabPos) of `slab` are staged; `out` holds sealed chunks.
  private slab: Buffer | undefined;
  private slabStart = 0;
  private slabPos = 0;
  private out: Uint8Array[] = [];
  private staged = 0;
  private flushScheduled = false;

  /** We sent GOODBYE (we started the close, or answered the peer's). */
  private sentGoodbye = false;
  private gotGoodbye = false;
  /** We started the close (vs. answering the peer). */
  private closer = false;
  private closeTimer: TimerHandle | undefined;
  private gone = false;
  /** We tore the connection down; its own events no longer decide the close reason. */
  private tornDown = false;

  constructor(init: LinkInit, private readonly wiring: TcpLinkWiring) {
    super({ ...init, highWaterMark: wiring.highWaterMark });
    this.socket = wiring.socket;
    this.raw = wiring.raw;
    this.decoder = wiring.decoder;
    this.clock = wiring.clock;
    this.closeTimeoutMs = wiring.closeTimeoutMs;
    this.sealer = wiring.records?.sealer;
    const opener = (this.opener = wiring.records?.opener);
    const decoder = this.decoder;
    // With records, a record in progress counts as a frame in progress.
    const progress: ReadProgress = opener
      ? {
          get partial() {
            return opener.partial || decoder.partial;
          },
          get completed() {
            return opener.completed + decoder.completed;
          },
          get failed() {
            return opener.failed || decoder.failed;
          },
        }
      : decoder;
    this.deadline = new FrameDeadline(wiring.clock, wiring.frameDeadlineMs, progress, () =>
      this.protocolError(new FrameDeadlineError(wiring.frameDeadlineMs)),
    );
    // A link starts paused (LinkBase): do not read until resume().
    this.socket.pause();
    this.deadline.suspend();
    this.socket.on('data', this.onData);
    this.socket.on('end', this.onEnd);
    this.socket.on('error', this.onError);
    this.socket.on('close', this.onSocketClose);
    this.socket.on('drain', this.checkDrain);
    // Frames (or records) that arrived with the end of the handshake.
    if (opener) {
      try {
        for (const chunk of decoder.drain()) this.feed(chunk);
      } catch (err) {
        this.protocolError(err);
        return;
      }
    }
    this.pump();
  }

  /** Key updates so far in each direction (0 on a link without encryption). */
  get keyUpdates(): { sent: number; received: number } {
    return { sent: this.sealer?.updates ?? 0, received: this.opener?.updates ?? 0 };
  }

  /** Whether the frames of this link are sealed by the record layer. */
  get encrypted(): boolean {
    return this.sealer !== undefined;
  }

  private readonly feedPlain = (plain: Uint8Array): void => this.decoder.feed(plain);

  /** Socket bytes into the decoder, through the record layer when there is one. */
  private feed(chunk: Uint8Array): void {
    if (this.opener === undefined) this.decoder.feed(chunk);
    else this.opener.open(chunk, this.feedPlain);
  }

  get bufferedBytes(): number {
    return this.staged + (this.gone ? 0 : this.socket.writableLength);
  }

  protected sendFrame(frame: Uint8Array): boolean {
    const length = frame.byteLength;
    if (length <= COALESCE_MAX_FRAME) {
      const at = this.reserve(HEADER_SIZE + length);
      writeDataHeader(this.slab!, at, length);
      this.slab!.set(frame, at + HEADER_SIZE);
    } else {
      const at = this.reserve(HEADER_SIZE);
      writeDataHeader(this.slab!, at, length);
      this.seal();
      this.out.push(frame); // written as is: the contract says the caller will not modify it
    }
    this.staged += HEADER_SIZE + length;
    this.scheduleFlush();
    return this.bufferedBytes < this.highWaterMark;
  }

  /**
   * Large parts go to the socket as they are (writev), small ones are
   * copied into the slab (no joined copy first, whatever the frame's size).
   */
  protected override sendFrameParts(parts: readonly Uint8Array[], size: number): boolean {
    const at = this.reserve(HEADER_SIZE);
    writeDataHeader(this.slab!, at, size);
    for (const part of parts) {
      if (part.byteLength <= COALESCE_MAX_FRAME) {
        const to = this.reserve(part.byteLength);
        this.slab!.set(part, to);
      } else {
        this.seal();
        this.out.push(part); // written as is: the caller will not modify it
      }
    }
    this.staged += HEADER_SIZE + size;
    this.scheduleFlush();
    return this.bufferedBytes < this.highWaterMark;
  }

  protected beginClose(): void {
    this.closer = true;
    this.sendGoodbyeAndEnd();
    // Read the peer's answer even if the application paused the link.
    this.deadline.unsuspend();
    this.socket.resume();
    this.closeTimer = this.clock.setTimeout(() => {
      this.closeTimer = undefined;
      this.teardown();
      this.finish({ reason: 'reset', error: new LinkResetError(`peer did not confirm the close within ${this.closeTimeoutMs} ms`) });
    }, this.closeTimeoutMs);
  }

  protected abort(_error?: ClusterInfraError): void {
    this.teardown();
  }

  protected onPause(): void {
    if (this.closer) return; // a close in progress keeps reading for the peer's GOODBYE
    this.socket.pause();
    this.deadline.suspend();
  }

  protected onResume(): void {
    this.socket.resume();
    this.deadline.unsuspend();
  }

  /** Test hook: die like a crashed process (FIN or RST from the kernel, no GOODBYE). */
  crash(): void {
    this.teardown(false);
    this.finish({ reason: 'destroyed' });
  }

  // ---- reading ----

  private readonly onData = (chunk: Buffer): void => {
    if (this.state === 'closed') return;
    let failure: unknown;
    try {
      this.feed(chunk);
    } catch (err) {
      failure = err ?? new MalformedFrameError('unknown read failure');
    }
    // Frames of the records that checked out come first, then the failure closes the link.
    this.pump();
    if (failure !== undefined && (this.state as string) !== 'closed') this.protocolError(failure);
  };

  /** Take every whole frame out of the decoder. */
  private pump(): void {
    const decoder = this.decoder;
    try {
      for (let f = decoder.take(); f !== undefined; f = decoder.take()) {
        if (!decoder.takenControl) {
          if (this.gotGoodbye) throw new MalformedFrameError('data frame after GOODBYE');
          this.receive(f);
        } else if (f[0] === ControlType.GOODBYE && f.byteLength === 1 && !this.gotGoodbye) {
          this.onGoodbye();
        } else {
          throw new MalformedFrameError(`unexpected control frame type ${f[0]}`);
        }
        if (this.state === 'closed') return;
      }
    } catch (err) {
      this.protocolError(err);
      return;
    }
    this.deadline.update();
  }

  private onGoodbye(): void {
    this.gotGoodbye = true;
    if (this.closer) {
      // The peer read our GOODBYE, so it read everything before it.
      this.clearCloseTimer();
      this.finish({ reason: 'closed' });
      // Our FIN is queued after the GOODBYE; release the socket once it is out.
      if (this.socket.writableFinished) this.socket.destroy();
      else this.socket.once('finish', () => this.socket.destroy());
      return;
    }
    this.markClosing();
    this.sendGoodbyeAndEnd();
    this.finish({ reason: 'remote-closed' });
  }

  private readonly onEnd = (): void => {
    if (this.tornDown) return;
    if (this.state === 'closed') {
      this.socket.destroy();
      return;
    }
    if (this.gotGoodbye) return; // the graceful path already finished (or waits for the inbox)
    this.teardown();
    this.finish({ reason: 'reset', error: new LinkResetError('connection ended without a goodbye') });
  };

  private readonly onError = (err: Error): void => {
    if (this.tornDown) return;
    this.teardown();
    if (this.state === 'closed') return;
    this.finish({ reason: 'reset', error: new LinkResetError(`connection lost: ${err.message}`, { cause: err }) });
  };

  private readonly onSocketClose = (): void => {
    this.gone = true;
    this.clearCloseTimer();
    this.deadline.cancel();
    if (this.state !== 'closed' && !this.tornDown) {
      if (this.gotGoodbye && !this.closer) return; // remote-closed waits only for the inbox
      this.finish({ reason: 'reset', error: new LinkResetError('connection closed without a goodbye') });
    }
  };

  private protocolError(err: unknown): void {
    const error = isClusterInfraError(err) ? err : new MalformedFrameError(String(err));
    this.teardown();
    this.finish({ reason: 'error', error });
  }

  // ---- writing ----

  /** Room for `n` bytes in the slab; returns the offset. Seals and replaces a full slab. */
  private reserve(n: number): number {
    if (this.slab === undefined || this.slabPos + n > this.slab.byteLength) {
      this.seal();
      this.slab = Buffer.allocUnsafeSlow(Math.max(SLAB_SIZE, n));
      this.slabStart = 0;
      this.slabPos = 0;
    }
    const at = this.slabPos;
    this.slabPos += n;
    return at;
  }

  /** Move the staged part of the slab to `out`; the slab's later bytes stay free for reuse. */
  private seal(): void {
    if (this.slab !== undefined && this.slabPos > this.slabStart) {
      this.out.push(this.slab.subarray(this.slabStart, this.slabPos));
      this.slabStart = this.slabPos;
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    process.nextTick(this.flush);
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    this.seal();
    const chunks = this.out;
    if (chunks.length === 0) return;
    this.out = [];
    this.staged = 0;
    if (this.gone || this.socket.destroyed || this.socket.writableEnded) return;
    if (this.sealer !== undefined) {
      const sealed: Uint8Array[] = [];
      this.sealer.seal(chunks, sealed);
      this.write(sealed);
      // The records are copies: the slab is free again (no new slab per 64 KiB sent, less for the GC).
      this.slabStart = this.slabPos = 0;
    } else {
      this.write(chunks);
      // Written through to the kernel at once: the slab is free again.
      if (this.socket.writableLength === 0) this.slabStart = this.slabPos = 0;
    }
  };

  private write(chunks: Uint8Array[]): void {
    this.socket.cork();
    const last = chunks.length - 1;
    for (let i = 0; i < last; i++) this.socket.write(chunks[i]!);
    // Writes complete in order: when the last one is done, all are.
    this.socket.write(chunks[last]!, this.checkDrain);
    this.socket.uncork();
  }

  private readonly checkDrain = (): void => {
    if (this.needDrain && this.state !== 'closed' && this.bufferedBytes < this.highWaterMark) this.drained();
  };

  private sendGoodbyeAndEnd(): void {
    if (this.sentGoodbye) return;
    this.sentGoodbye = true;
    const goodbye = encodeControl(ControlType.GOODBYE);
    const at = this.reserve(goodbye.byteLength);
    this.slab!.set(goodbye, at);
    this.flush();
    if (!this.gone && !this.socket.destroyed) this.socket.end();
  }

  private clearCloseTimer(): void {
    this.closeTimer?.cancel();
    this.closeTimer = undefined;
  }

  /** Drop the connection now: an RST when possible, so the peer learns at once. */
  private teardown(reset = true): void {
    this.tornDown = true;
    this.clearCloseTimer();
    this.deadline.cancel();
    this.out = [];
    this.staged = 0;
    if (this.gone) return;
    this.gone = true;
    const raw = this.raw;
    if (reset && !raw.destroyed && typeof raw.resetAndDestroy === 'function' && !raw.connecting) {
      try {
        raw.resetAndDestroy();
      } catch {
        raw.destroy();
      }
    } else {
      raw.destroy();
    }
    if (this.socket !== raw) this.socket.destroy();
  }

  protected override finish(info: LinkCloseInfo, immediate?: boolean): void {
    const wasClosed = this.state === 'closed';
    super.finish(info, immediate);
    if (!wasClosed && (this.state as string) === 'closed') {
      this.deadline.cancel();
      this.clearCloseTimer();
      this.wiring.onClosed(this);
    }
  }
}
