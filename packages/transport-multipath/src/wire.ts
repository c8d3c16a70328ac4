/**
 * The multipath layer's frames. Each travels as one frame of a path link
 * (which already gives whole, ordered, authenticated frames on that path);
 * the first byte is the type. Type numbers are append-only.
 *
 *   HELLO   1  version u8, flags u8 (bit 0: open a new session), path u8,
 *              session u64, maxFrameSize u32, receiveWindow u32, ack u64
 *   WELCOME 2  version u8, maxFrameSize u32, receiveWindow u32, ack u64
 *   REFUSE  3  reason u8 (RefuseReason)
 *   DATA    4  seq u64, ack u64, then the payload
 *   ACK     5  ack u64, received u64
 *   PING    6  ack u64, received u64
 *   FIN     7  seq u64, ack u64 (the sender's last frame; sequenced like DATA)
 *   RST     8  (the sender destroyed the logical link)
 *
 * `seq` numbers the frames of one direction of a logical link from 1;
 * `ack` is the highest seq the sender of the ack has *consumed* (handed to
 * its application), so it acknowledges and opens the window at once;
 * `received` is the highest seq below which it has every frame (consumed
 * or not), so the other side can tell a frame lost on a path that stayed up.
 * Numbers are below 2^53 and travel as two u32 (high, low).
 */
import { MalformedFrameError } from '@clusterinfra/core';

// Append-only: a number, once used, keeps its meaning.
export enum Kind {
  Hello = 1,
  Welcome = 2,
  Refuse = 3,
  Data = 4,
  Ack = 5,
  Ping = 6,
  Fin = 7,
  Rst = 8,
}

/** Why a HELLO was refused. Append-only. */
export enum RefuseReason {
  /** The session is not (or no longer) known: the peer restarted, or the link closed. */
  UnknownSession = 1,
  /** No wire version in common. */
  Version = 2,
  /** The HELLO was not understood, or named a path that does not match the connection. */
  Malformed = 3,
}

/** Bytes in front of every DATA payload. */
export const DATA_HEADER = 17;

export interface Hello {
  kind: Kind.Hello;
  version: number;
  open: boolean;
  path: number;
  session: number;
  maxFrameSize: number;
  receiveWindow: number;
  ack: number;
}

export interface Welcome {
  kind: Kind.Welcome;
  version: number;
  maxFrameSize: number;
  receiveWindow: number;
  ack: number;
}

export type Message =
  | Hello
  | Welcome
  | { kind: Kind.Refuse; reason: number }
  | { kind: Kind.Data; seq: number; ack: number; payload: Uint8Array }
  | { kind: Kind.Ack | Kind.Ping; ack: number; received: number }
  | { kind: Kind.Fin; seq: number; ack: number }
  | { kind: Kind.Rst };

const TWO32 = 2 ** 32;

// Numbers are written byte by byte: a DataView per frame costs more than the frame's other work.
function putU64(b: Uint8Array, at: number, n: number): void {
  const hi = Math.floor(n / TWO32);
  const lo = n >>> 0;
  b[at] = hi >>> 24;
  b[at + 1] = (hi >>> 16) & 0xff;
  b[at + 2] = (hi >>> 8) & 0xff;
  b[at + 3] = hi & 0xff;
  b[at + 4] = lo >>> 24;
  b[at + 5] = (lo >>> 16) & 0xff;
  b[at + 6] = (lo >>> 8) & 0xff;
  b[at + 7] = lo & 0xff;
}

function getU32(b: Uint8Array, at: number): number {
  return b[at]! * 0x1000000 + ((b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!);
}

function getU64(b: Uint8Array, at: number): number {
  const hi = getU32(b, at);
  if (hi >= 2 ** 21) throw new MalformedFrameError('multipath: a sequence number beyond 2^53');
  return hi * TWO32 + getU32(b, at + 4);
}

function frame(kind: Kind, size: number): [Uint8Array, DataView] {
  const b = new Uint8Array(size);
  b[0] = kind;
  return [b, new DataView(b.buffer)];
}

/** Write the 17-byte header of a DATA or FIN frame at the start of `b`. */
export function putSequencedHeader(b: Uint8Array, kind: Kind.Data | Kind.Fin, seq: number, ack: number): void {
  b[0] = kind;
  putU64(b, 1, seq);
  putU64(b, 9, ack);
}

export function encodeHello(h: Omit<Hello, 'kind'>): Uint8Array {
  const [b, v] = frame(Kind.Hello, 28);
  b[1] = h.version;
  b[2] = h.open ? 1 : 0;
  b[3] = h.path;
  putU64(b, 4, h.session);
  v.setUint32(12, h.maxFrameSize);
  v.setUint32(16, h.receiveWindow);
  putU64(b, 20, h.ack);
  return b;
}

export function encodeWelcome(w: Omit<Welcome, 'kind'>): Uint8Array {
  const [b, v] = frame(Kind.Welcome, 18);
  b[1] = w.version;
  v.setUint32(2, w.maxFrameSize);
  v.setUint32(6, w.receiveWindow);
  putU64(b, 10, w.ack);
  return b;
}

export function encodeRefuse(reason: RefuseReason): Uint8Array {
  const [b] = frame(Kind.Refuse, 2);
  b[1] = reason;
  return b;
}

/** The header of a DATA (or, with `Kind.Fin`, the whole FIN) frame. */
export function encodeSequenced(kind: Kind.Data | Kind.Fin, seq: number, ack: number): Uint8Array {
  const b = new Uint8Array(DATA_HEADER);
  putSequencedHeader(b, kind, seq, ack);
  return b;
}

export function encodeAck(kind: Kind.Ack | Kind.Ping, ack: number, received: number): Uint8Array {
  const [b] = frame(kind, 17);
  putU64(b, 1, ack);
  putU64(b, 9, received);
  return b;
}

export function encodeRst(): Uint8Array {
  return new Uint8Array([Kind.Rst]);
}

const SIZES: Record<number, number> = {
  [Kind.Hello]: 28,
  [Kind.Welcome]: 18,
  [Kind.Refuse]: 2,
  [Kind.Ack]: 17,
  [Kind.Ping]: 17,
  [Kind.Fin]: DATA_HEADER,
  [Kind.Rst]: 1,
};

/** The seq of a DATA frame (at least DATA_HEADER bytes), read in place: the receive path's common case makes no message object. */
export function dataSeq(b: Uint8Array): number {
  return getU64(b, 1);
}

/** The ack of a DATA frame (at least DATA_HEADER bytes), read in place. */
export function dataAck(b: Uint8Array): number {
  return getU64(b, 9);
}

/** Decode one path frame; MalformedFrameError for anything else. The payload of DATA is a view, not a copy. */
export function decode(b: Uint8Array): Message {
  const kind = b[0];
  if (kind === undefined) throw new MalformedFrameError('multipath: an empty frame');
  if (kind === Kind.Data) {
    if (b.byteLength < DATA_HEADER) throw new MalformedFrameError('multipath: a truncated DATA frame');
    return { kind, seq: dataSeq(b), ack: dataAck(b), payload: b.subarray(DATA_HEADER) };
  }
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const size = SIZES[kind];
  if (size === undefined) throw new MalformedFrameError(`multipath: unknown frame type ${kind}`);
  if (b.byteLength !== size) throw new MalformedFrameError(`multipath: frame type ${kind} of ${b.byteLength} bytes, expected ${size}`);
  switch (kind) {
    case Kind.Hello:
      if ((b[2]! & ~1) !== 0) throw new MalformedFrameError('multipath: unknown HELLO flags');
      return {
        kind,
        version: b[1]!,
        open: b[2] === 1,
        path: b[3]!,
        session: getU64(b, 4),
        maxFrameSize: v.getUint32(12),
        receiveWindow: v.getUint32(16),
        ack: getU64(b, 20),
      };
    case Kind.Welcome:
      return { kind, version: b[1]!, maxFrameSize: v.getUint32(2), receiveWindow: v.getUint32(6), ack: getU64(b, 10) };
    case Kind.Refuse:
      return { kind, reason: b[1]! };
    case Kind.Ack:
    case Kind.Ping:
      return { kind, ack: getU64(b, 1), received: getU64(b, 9) };
    case Kind.Fin:
      return { kind, seq: getU64(b, 1), ack: getU64(b, 9) };
    default:
      return { kind: Kind.Rst };
  }
}
