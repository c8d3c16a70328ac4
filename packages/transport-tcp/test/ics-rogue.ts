/**
 * A member that speaks ICS over TCP by hand: the raw handshake of raw.ts,
 * then ICS frames built with the core codec, for the hostile-peer tests of
 * ICS (ics-hostile.test.ts) and the RSS figures of bench/hostile.ts.
 */
import type { Socket } from 'node:net';
import { BulkRef, decodeFrame, encodeFrame, FrameType, type IcsFrame } from '../../core/src/ics/wire/index.js';
import { encodeDataFrame } from '../src/frame.js';
import { type FrameReader, rawClientHandshake } from './raw.js';

/** Service id of subservice `sub` on the default channel (16). */
export const onDefault = (sub: number): number => (16 << 16) + sub;

export interface TcpRogue {
  socket: Socket;
  reader: FrameReader;
  /** Write one ICS frame; false when the socket's buffer is full. */
  send(frame: IcsFrame): boolean;
  /** A Request to subservice `sub` of the default channel. */
  request(id: number, sub: number, method: string, body?: unknown, priority?: boolean): boolean;
  /** A Request (or OneWay) carrying `refs` out-of-line values of one byte, streams from `firstStream`. */
  tinyRefs(id: number, sub: number, refs: number, firstStream: number, oneWay?: boolean): boolean;
  /** Read frames in the background; `frames` holds them decoded. */
  collect(): IcsFrame[];
  /** Resolves when the node closed the connection. */
  closed: Promise<void>;
}

export async function tcpRogue(address: string, nodeNum: number): Promise<TcpRogue> {
  const { socket, reader } = await rawClientHandshake(address, nodeNum);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const send = (frame: IcsFrame): boolean => (socket.destroyed ? false : socket.write(encodeDataFrame(encodeFrame(frame))));
  return {
    socket,
    reader,
    send,
    closed,
    request: (id, sub, method, body = null, priority = false) =>
      send({ type: FrameType.Request, id, channel: 16, service: onDefault(sub), method, priority, timeoutMs: 60_000, body }),
    tinyRefs: (id, sub, refs, firstStream, oneWay = false) => {
      const body = Array.from({ length: refs }, (_, i) => new BulkRef(firstStream + i, 1));
      const service = onDefault(sub);
      return send(
        oneWay
          ? { type: FrameType.OneWay, id, channel: 16, service, method: 'put', priority: false, body }
          : { type: FrameType.Request, id, channel: 16, service, method: 'put', priority: false, timeoutMs: 60_000, body },
      );
    },
    collect: () => {
      const frames: IcsFrame[] = [];
      void (async () => {
        for (let f = await reader.next(); f !== undefined; f = await reader.next()) {
          if (f.kind === 'data') frames.push(decodeFrame(f.data).frame);
        }
      })();
      return frames;
    },
  };
}
