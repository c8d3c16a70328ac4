/** Raw-socket peers that speak (or abuse) the wire protocol byte by byte. */
import { randomBytes } from 'node:crypto';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { ControlType, Flags, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN } from '../src/constants.js';
import { type DecodedFrame, FrameDecoder, encodeControl } from '../src/frame.js';
import {
  type Hello,
  type Ready,
  type Welcome,
  computeProof,
  deriveHandshakeKey,
  encodeAuth,
  encodeHello,
  encodeReady,
  encodeWelcome,
  parseHello,
  parseReady,
  parseWelcome,
  transcriptHash,
} from '../src/handshake.js';

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

export interface RawClientOptions {
  nodeNum?: number;
  /** Prove with this secret (the HELLO then carries the PSK flag, without ENCRYPT unless `flags` says so). */
  secret?: string;
  clusterName?: string;
  flags?: number;
}

export interface RawHandshake {
  socket: Socket;
  reader: FrameReader;
  welcome: Welcome;
  welcomeBody: Uint8Array;
  ready: Ready;
}

/** The client's proof for `secret`, as a client of incarnation 1 that sent `hello` and got `welcome`. */
export function clientProof(secret: string, clusterName: string, nodeNum: number, hello: Uint8Array, welcome: Uint8Array): Uint8Array {
  const key = deriveHandshakeKey(new Uint8Array(Buffer.from(secret)), parseHello(hello).nonce, parseWelcome(welcome).nonce, {
    clusterName: new Uint8Array(Buffer.from(clusterName)),
    clientNodeNum: nodeNum,
    clientIncarnation: 1,
  });
  return computeProof(key, 'client', transcriptHash([[ControlType.HELLO, hello], [ControlType.WELCOME2, welcome]]));
}

/**
 * Handshake as a client by hand: HELLO, WELCOME, AUTH (with a proof when
 * `secret` is given), READY, FINISH. Returns the socket and reader, ready
 * for frames. Throws when the server refuses.
 */
export async function rawClientHandshake(address: string, options: number | RawClientOptions = {}): Promise<RawHandshake> {
  const o = typeof options === 'number' ? { nodeNum: options } : options;
  const nodeNum = o.nodeNum ?? 77;
  const clusterName = o.clusterName ?? 'test';
  const socket = await rawConnect(address);
  const reader = new FrameReader(socket);
  const nonce = new Uint8Array(randomBytes(32));
  const hello = helloBody({ nodeNum, nonce, flags: o.flags ?? (o.secret !== undefined ? Flags.PSK : 0) }, clusterName);
  socket.write(encodeControl(ControlType.HELLO, hello));
  const welcomeBody = await reader.control(ControlType.WELCOME2);
  const welcome = parseWelcome(welcomeBody);
  const proof = o.secret === undefined ? new Uint8Array(0) : clientProof(o.secret, clusterName, nodeNum, hello, welcomeBody);
  socket.write(encodeControl(ControlType.AUTH, encodeAuth(proof)));
  const ready = parseReady(await reader.control(ControlType.READY2));
  socket.write(encodeControl(ControlType.FINISH));
  return { socket, reader, welcome, welcomeBody, ready };
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
      const welcome = encodeWelcome({ version: PROTOCOL_VERSION_MAX, flags: 0, nonce: new Uint8Array(randomBytes(32)) });
      socket.write(encodeControl(ControlType.WELCOME2, welcome));
      await reader.control(ControlType.AUTH);
      const ready = encodeReady({ nodeNum, incarnation: 5, maxFrameSize: hello.maxFrameSize, proof: new Uint8Array(0) });
      socket.write(encodeControl(ControlType.READY2, ready));
      await reader.control(ControlType.FINISH);
      onPeer(socket, reader);
    })().catch(() => socket.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { server, address: `127.0.0.1:${port}`, sockets };
}
