/**
 * A peer that speaks the ICS wire format by hand over the memory transport:
 * it passes the handshake like any node, then sends whatever frames a test
 * builds (a buggy or compromised member looks exactly like this).
 */
import { cryptoRandom, type Ics, type Link, realClock, silentLogger, type Transport } from '@clusterinfra/core';
import { type MemoryNetwork, memory } from '@clusterinfra/transport-mem';
import { BulkRef, decodeFrame, encodeBulkChunkHeader, encodeFrame, FrameType, type IcsFrame } from '../../src/ics/wire/index.js';
import { serviceId } from '../../src/ics/ics.js';

export interface Rogue {
  link: Link;
  /** Frames the target sent, decoded. */
  frames: IcsFrame[];
  transport: Transport;
  /** Send one ICS frame. */
  send(frame: IcsFrame): boolean;
  /** A Request (or OneWay) with `refs` out-of-line values of `length` bytes each, streams numbered from `firstStream`. */
  bulkMessage(o: { id: number; service: number; refs: number; length?: number; firstStream?: number; oneWay?: boolean; method?: string }): boolean;
  /** One whole chunk for `stream`. */
  chunk(stream: number, data: Uint8Array): boolean;
  close(): void;
}

export async function rogue(network: MemoryNetwork, target: Ics, nodeNum: number, incarnation = 1): Promise<Rogue> {
  const transport = memory({ network, address: `rogue-${nodeNum}-${incarnation}` }).create({
    identity: { clusterName: 'test', nodeNum, incarnation },
    clock: realClock,
    random: cryptoRandom,
    logger: silentLogger,
  });
  const link = await transport.connect(target.address!);
  const frames: IcsFrame[] = [];
  link.on('frame', (b) => frames.push(decodeFrame(b).frame));
  link.resume();
  const send = (frame: IcsFrame): boolean => link.send(encodeFrame(frame).slice());
  return {
    link,
    frames,
    transport,
    send,
    bulkMessage: ({ id, service, refs, length = 1, firstStream = 1, oneWay = false, method = 'put' }) => {
      const body = Array.from({ length: refs }, (_, i) => new BulkRef(firstStream + i, length));
      const channel = service >>> 16;
      return send(
        oneWay
          ? { type: FrameType.OneWay, id, channel, service, method, priority: false, body }
          : { type: FrameType.Request, id, channel, service, method, priority: false, timeoutMs: 60_000, body },
      );
    },
    chunk: (stream, data) => link.sendv([encodeBulkChunkHeader(stream, 0, true).slice(), data]),
    close: () => transport.destroy(),
  };
}

/** Service id of subservice `sub` on the default channel. */
export const onDefault = (sub: number): number => serviceId(16, sub);
