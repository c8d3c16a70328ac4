/** Raw-socket peers that speak (or abuse) the wire protocol byte by byte. */
import { randomBytes } from 'node:crypto';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { ControlType, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN } from '../src/constants.js';
import { type DecodedFrame, FrameDecoder, encodeControl } from '../src/frame.js';
import { type Hello, encodeAuth, encodeHello, encodeWelcome, parseHello } from '../src/handshake.js';

export function hostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

export function rawConnect(address: string, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ ...hostPort(address), ...(localAddress ? { localAddress } : {}) }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Reads frames off a raw socket, one at a time. */
export class FrameReader {
  private readonly decoder = new FrameDecoder({ maxFrameSize: 64 * 1024 * 1024 });
  private readonly frames: DecodedFrame[] = [];
  private waiting: ((f: DecodedFrame | undefined) => void) | undefined;
  closed = false;
  chunks = 0;

  constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      this.chunks++;
      this.frames.push(...this.decoder.push(c));
      this.wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiting;
    if (!w) return;
    if (this.frames.length > 0) {
      this.waiting = undefined;
      w(this.frames.shift());
    } else if (this.closed) {
      this.waiting = undefined;
      w(undefined);
    }
  }

  /** The next frame, or undefined when the socket closed first. */
  next(): Promise<DecodedFrame | undefined> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.wake();
    });
  }

  async control(type: number): Promise<Uint8Array> {
    const f = await this.next();
    if (f === undefined) throw new Error(`connection closed; expected control ${type}`);
    if (f.kind !== 'control' || f.type !== type) throw new Error(`expected control ${type}, got ${JSON.stringify(f)}`);
    return f.body;
  }
}

export function helloBody(overrides: Partial<Hello> = {}, clusterName = 'test'): Uint8Array {
  return encodeHello({
    minVersion: PROTOCOL_VERSION_MIN,
    maxVersion: PROTOCOL_VERSION_MAX,
    flags: 0,
    nodeNum: 77,
    incarnation: 1,
    maxFrameSize: 1024 * 1024,
    nonce: new Uint8Array(randomBytes(32)),
    clusterName: new Uint8Array(Buffer.from(clusterName)),
    ...overrides,
  });
}

/** Handshake as a client without a secret; returns the socket and reader, ready for frames. */
export async function rawClientHandshake(address: string, nodeNum = 77): Promise<{ socket: Socket; reader: FrameReader }> {
  const socket = await rawConnect(address);
  const reader = new FrameReader(socket);
  socket.write(encodeControl(ControlType.HELLO, helloBody({ nodeNum })));
  await reader.control(ControlType.WELCOME);
  socket.write(encodeControl(ControlType.AUTH, encodeAuth(new Uint8Array(0))));
  await reader.control(ControlType.READY);
  return { socket, reader };
}

/** A server that does the handshake by hand (no secret) and hands each accepted peer to `onPeer`. */
export async function rawServer(
  onPeer: (socket: Socket, reader: FrameReader) => void,
  nodeNum = 1,
): Promise<{ server: Server; address: string; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const reader = new FrameReader(socket);
    void (async () => {
      const hello = parseHello(await reader.control(ControlType.HELLO));
      const welcome = encodeWelcome({
        version: PROTOCOL_VERSION_MAX,
        flags: 0,
        nodeNum,
        incarnation: 5,
        maxFrameSize: hello.maxFrameSize,
        nonce: new Uint8Array(randomBytes(32)),
        proof: new Uint8Array(0),
      });
      socket.write(encodeControl(ControlType.WELCOME, welcome));
      await reader.control(ControlType.AUTH);
      socket.write(encodeControl(ControlType.READY));
      onPeer(socket, reader);
    })().catch(() => socket.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { server, address: `127.0.0.1:${port}`, sockets };
}
