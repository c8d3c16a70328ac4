/**
 * Receiving: one frame from a link, checked against the incarnation gate,
 * decoded, checked for duplicates (R4) and charged to the window, held until
 * its out-of-line values are in, and handed to the part it is for: serving
 * (Request, OneWay, Cancel), the call table (Response) or flow (Credit,
 * bulk chunks).
 */
import type { Link } from '../contracts/transport.js';
import { CancelledError, ClusterInfraError, NotFoundError, ResourceExhaustedError } from '../errors/index.js';
import { type IncomingBulk, substituteBulk } from './bulk.js';
import type { CallTable } from './calls.js';
import { BULK_LANE, type Flow } from './flow.js';
import type { Peer } from './peer.js';
import type { Registry } from './registry.js';
import type { Serving } from './serving.js';
import { dropped, type Env } from './shared.js';
import { resolveDecodeLimits } from './wire/codec.js';
import { decodeFrame, FRAME_HEADER_BYTES } from './wire/frame.js';
import type { RefusedReasonName } from './types.js';
import { type BulkRef, FrameType, type IcsFrame, type OneWayFrame, RefusedReason, type RefusedReasonCode, type RequestFrame, type ResponseFrame } from './wire/types.js';

/** The `refused` event's name for each RefusedReason on the wire. */
const REFUSED_NAMES: Record<RefusedReasonCode, RefusedReasonName> = {
  [RefusedReason.IncarnationDown]: 'incarnation-down',
  [RefusedReason.NewerIncarnation]: 'newer-incarnation',
  [RefusedReason.NodeNumberInUse]: 'node-number-in-use',
};

export class Receiver {
  private readonly decodeLimits: ReturnType<typeof resolveDecodeLimits>;

  constructor(
    private readonly env: Env,
    private readonly registry: Registry,
    private readonly flow: Flow,
    private readonly serving: Serving,
    private readonly calls: CallTable,
  ) {
    this.decodeLimits = resolveDecodeLimits({ maxBulkRefs: env.opts.maxBulkRefsPerMessage });
  }

  onFrame(peer: Peer, link: Link, bytes: Uint8Array): void {
    // A refusal is the only frame of its link (it closes next): said before anything else is checked.
    if (bytes.byteLength === FRAME_HEADER_BYTES[FrameType.Refused] && bytes[0] === FrameType.Refused) {
      this.onRefused(peer, link, bytes);
      return;
    }
    if (link.remote.incarnation !== peer.incarnation || peer.gate.isDown(link.remote.incarnation)) {
      dropped(this.env, peer.nodeNum, 'frame from a former incarnation');
      return;
    }
    let frame: IcsFrame;
    let bulkRefs: readonly BulkRef[];
    try {
      ({ frame, bulkRefs } = decodeFrame(bytes, this.decodeLimits));
    } catch (err) {
      dropped(this.env, peer.nodeNum, `undecodable frame: ${(err as Error).message}`);
      this.env.log.warn({ node: peer.nodeNum, err: (err as Error).message }, 'closing a link that sent an undecodable frame');
      link.destroy(err instanceof ClusterInfraError ? err : undefined);
      return;
    }
    this.env.counters.messagesReceived++;
    if (frame.type === FrameType.Request || frame.type === FrameType.OneWay) {
      // At most once per (sender incarnation, id), even when the network
      // duplicates frames (R4); checked before anything is charged or held.
      if (!peer.firstSight(frame.id)) {
        dropped(this.env, peer.nodeNum, `duplicate message ${frame.id}`);
        return;
      }
      // What it costs the window, as the sender counted it: the frame, and
      // for a one-way message its out-of-line values too.
      let size = bytes.byteLength;
      if (frame.type === FrameType.OneWay) for (const r of bulkRefs) size += r.length;
      if (!frame.priority && !this.flow.takeCredit(peer, link, frame, size)) return;
      // Out-of-line values follow their message: hold it until they are in.
      if (bulkRefs.length > 0) this.awaitBulk(peer, link, frame, size, bulkRefs);
      else this.serving.admit(peer, link, frame, size);
      return;
    }
    if (bulkRefs.length > 0 && frame.type === FrameType.Response) {
      this.awaitBulk(peer, link, frame, bytes.byteLength, bulkRefs);
      return;
    }
    this.dispatch(peer, link, frame, bytes.byteLength);
  }

  private onRefused(peer: Peer, link: Link, bytes: Uint8Array): void {
    let frame: IcsFrame;
    try {
      frame = decodeFrame(bytes).frame;
    } catch (err) {
      link.destroy(err instanceof ClusterInfraError ? err : undefined);
      return;
    }
    if (frame.type !== FrameType.Refused) return;
    const reason = REFUSED_NAMES[frame.reason];
    this.env.log.warn({ node: peer.nodeNum, reason }, 'a node refused our link');
    this.env.emit('refused', { node: peer.nodeNum, incarnation: link.remote.incarnation, reason });
  }

  private dispatch(peer: Peer, link: Link, frame: IcsFrame, size: number): void {
    switch (frame.type) {
      case FrameType.Request:
      case FrameType.OneWay:
        this.serving.admit(peer, link, frame, size);
        return;
      case FrameType.Response:
        this.calls.answered(peer, link, frame);
        return;
      case FrameType.Cancel:
        this.serving.cancelled(peer, link, frame.id, frame.status);
        return;
      case FrameType.Credit:
        this.flow.credited(peer, link, frame.channel, frame.messages, frame.bytes);
        return;
      case FrameType.BulkChunk: {
        if (!this.flow.takeBulkCredit(peer, link, frame.data.byteLength)) return;
        const consumed = peer.bulkIn.chunk(frame.stream, frame.offset, frame.data, frame.last);
        this.env.counters.bulkBytesReceived += consumed;
        this.flow.owe(peer, link, BULK_LANE, consumed);
        return;
      }
      case FrameType.BulkAbort:
        peer.bulkIn.abort(frame.stream);
        return;
    }
  }

  /**
   * A message with out-of-line values: register its streams within the
   * receive budgets, and dispatch it once they are complete. Duplicates
   * were dropped before, so a duplicated envelope never claims streams.
   */
  private awaitBulk(peer: Peer, link: Link, frame: RequestFrame | OneWayFrame | ResponseFrame, size: number, refs: readonly BulkRef[]): void {
    if (frame.type !== FrameType.Response) {
      // Nobody to deliver it to: refused before a byte of its values is held.
      const found = this.registry.handlerOf(frame);
      if (found instanceof NotFoundError) {
        this.refuseBulk(peer, link, frame, size, found);
        return;
      }
      peer.awaitingBulk.add(frame.id);
    }
    const owner: IncomingBulk = {
      missing: 0,
      done: false,
      streams: [],
      charged: 0,
      complete: () => {
        if (frame.type !== FrameType.Response) peer.awaitingBulk.delete(frame.id);
        frame.body = substituteBulk(frame.body, (ref) => peer.bulkIn.bufferOf(ref.stream));
        // The buffers now belong to the application.
        peer.bulkIn.release(owner);
        if (link.state !== 'closed' || frame.type === FrameType.Response) this.dispatch(peer, link, frame, size);
      },
      fail: (why) => {
        if (frame.type !== FrameType.Response) peer.awaitingBulk.delete(frame.id);
        this.refuseBulk(peer, link, frame, size, new CancelledError(`message abandoned: ${why}`));
      },
    };
    const refused = peer.bulkIn.expect(refs, owner);
    if (refused !== undefined) {
      owner.done = true;
      if (frame.type !== FrameType.Response) peer.awaitingBulk.delete(frame.id);
      this.refuseBulk(peer, link, frame, size, new ResourceExhaustedError(`node ${this.env.nodeNum} refused the message: ${refused}`));
    }
  }

  /** A message whose out-of-line values cannot be received: answer or drop it, and return its credit. */
  private refuseBulk(peer: Peer, link: Link, frame: RequestFrame | OneWayFrame | ResponseFrame, size: number, err: ClusterInfraError): void {
    if (frame.type !== FrameType.Response) {
      this.serving.refuse(peer, link, frame, size, err);
      return;
    }
    dropped(this.env, peer.nodeNum, err.message);
    this.calls.unreceivable(peer, frame.id, err);
  }
}
