/**
 * The TCP transport: a listener (node:net, optionally TLS on top) and
 * outbound connects, both running the handshake before a link exists.
 *
 * Limits on the accepting side, before any byte is parsed: at most
 * `maxPendingHandshakes` connections in their handshake in total,
 * `maxPendingPerAddress` per source network, and room kept for known
 * members (pending.ts). A new connection is never refused for want of room:
 * it displaces a pending one that sent nothing (else the oldest), which is
 * dropped (with a REJECT `busy` on plain TCP) and reported as `rejected`.
 * Every pending connection has a silent deadline (no byte at all), a
 * handshake timeout and a partial-frame deadline; every timer is cancelled
 * when its connection settles.
 */
import { type AddressInfo, type Server, type Socket, connect as netConnect, createServer } from 'node:net';
import * as tls from 'node:tls';
import {
  AbortedError,
  AddressInUseError,
  checkTransportCallOptions,
  type ClusterInfraError,
  type Clock,
  type ConnectOptions,
  ConnectTimeoutError,
  ConnectionRefusedError,
  HandshakeRejectedError,
  HandshakeTimeoutError,
  InvalidAddressError,
  InvalidOptionError,
  type Link,
  type Listener,
  type ListenerEvents,
  LinkResetError,
  type Logger,
  type NodeIdentity,
  type RandomSource,
  type TlsError,
  TooManyPendingError,
  type Transport,
  type TransportCapabilities,
  type TransportContext,
  TransportClosedError,
} from '@clusterinfra/core';
import { EventEmitter } from 'eventemitter3';
import { formatAddress, isValidHost, parseAddress } from './address.js';
import { MAX_KNOWN_ADDRESSES, RECORD_MAX_PER_KEY, recordMaxPlaintext } from './constants.js';
import { type TransportCore, makeTlsError } from './core.js';
import { validIncarnation, validNodeNum } from './handshake.js';
import { ClientSession, type HandshakeFailure, type HandshakeResult, ServerSession } from './handshake-session.js';
import { TcpLink } from './link.js';
import type { ResolvedTcpOptions } from './options.js';
import { PendingSlots, networkOf } from './pending.js';
import { RecordOpener, RecordSealer } from './record.js';

/** Internal: makes a transport die like a crashed process. Not part of the public API. */
export const kCrash: unique symbol = Symbol('clusterinfra.tcp.crash');

function noop(): void {}

/** `::ffff:10.0.0.1` and `10.0.0.1` are the same peer. */
function plainIp(ip: string): string {
  return ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
}

/** Failures that are just a peer going away or us stopping: not worth a `rejected` event. */
function isQuietFailure(err: ClusterInfraError): boolean {
  return err instanceof LinkResetError || err instanceof TransportClosedError || err instanceof AbortedError;
}

function mapConnectError(address: string, timeoutMs: number, err: NodeJS.ErrnoException): ClusterInfraError {
  switch (err.code) {
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ConnectionRefusedError(address, { cause: err });
    case 'ETIMEDOUT':
      return new ConnectTimeoutError(address, timeoutMs);
    default:
      return new LinkResetError(`connect to ${address} failed: ${err.message}`, { cause: err });
  }
}

export class TcpTransport implements Transport, TransportCore {
  readonly kind = 'tcp';
  readonly capabilities: TransportCapabilities;
  readonly identity: NodeIdentity;
  readonly clusterNameBytes: Buffer;
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly logger: Logger;

  private state: 'open' | 'closing' | 'closed' = 'open';
  private closing: Promise<void> | undefined;
  private listener: TcpListener | undefined;
  private readonly links = new Set<TcpLink>();
  /** Outbound connects in progress (TCP connect, TLS or handshake). */
  private readonly connecting = new Set<{ cancel(error: ClusterInfraError): void }>();
  private linkSeq = 0;
  /** Source addresses of members: configured, and learned from every authenticated link (bounded, oldest forgotten first). */
  private readonly known: Set<string>;

  constructor(
    readonly options: ResolvedTcpOptions,
    context: TransportContext,
  ) {
    const id = context.identity;
    this.clusterNameBytes = Buffer.from(String(id.clusterName), 'utf8');
    if (this.clusterNameBytes.byteLength < 1 || this.clusterNameBytes.byteLength > 255)
      throw new InvalidOptionError('identity.clusterName', 'tcp: the cluster name must be 1..255 UTF-8 bytes');
    if (!validNodeNum(id.nodeNum))
      throw new InvalidOptionError('identity.nodeNum', 'tcp: nodeNum must be an integer in 1..4294967295');
    if (!validIncarnation(id.incarnation))
      throw new InvalidOptionError('identity.incarnation', 'tcp: incarnation must be a positive safe integer');
    this.identity = { clusterName: id.clusterName, nodeNum: id.nodeNum, incarnation: id.incarnation };
    this.clock = context.clock;
    this.random = context.random;
    this.logger = context.logger.child({ component: 'transport-tcp', nodeNum: id.nodeNum });
    this.known = new Set(options.knownAddresses.map(plainIp));
    this.capabilities = {
      maxFrameSize: options.maxFrameSize,
      nativeBulk: false,
      authentication: true,
      encryption: options.tls !== undefined || (options.secret !== undefined && options.encrypt),
      crashSimulation: true,
    };
  }

  tlsError(cause: unknown, message?: string): TlsError {
    return makeTlsError(cause, message);
  }

  /** Whether `ip` belongs to a member we know (it may use the reserved pending slots). */
  isKnown(ip: string): boolean {
    return this.known.has(plainIp(ip));
  }

  private learn(ip: string | undefined): void {
    if (ip === undefined) return;
    const key = plainIp(ip);
    this.known.delete(key);
    this.known.add(key);
    if (this.known.size > MAX_KNOWN_ADDRESSES) this.known.delete(this.known.values().next().value!);
  }

  listen(options: { signal?: AbortSignal } = {}): Promise<Listener> {
    if (this.state !== 'open') return Promise.reject(new TransportClosedError());
    try {
      checkTransportCallOptions('tcp', 'listen', options);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (this.listener && !this.listener.isClosed) return Promise.resolve(this.listener);
    const { host, port } = this.options;
    const wanted = formatAddress(host, port);
    if (!isValidHost(host)) return Promise.reject(new InvalidAddressError(wanted, 'bad host'));
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(new AbortedError('listen aborted', { cause: signal.reason }));
    return new Promise<Listener>((resolve, reject) => {
      const server = createServer({ allowHalfOpen: true });
      const onAbort = (): void => {
        server.close();
        reject(new AbortedError('listen aborted', { cause: signal?.reason }));
      };
      const onError = (err: NodeJS.ErrnoException): void => {
        signal?.removeEventListener('abort', onAbort);
        server.close();
        if (err.code === 'EADDRINUSE') reject(new AddressInUseError(wanted, { cause: err }));
        else reject(new InvalidAddressError(wanted, `cannot listen: ${err.code ?? err.message}`));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      server.once('error', onError);
      server.listen({ host, port }, () => {
        server.off('error', onError);
        signal?.removeEventListener('abort', onAbort);
        if (signal?.aborted) return;
        if (this.state !== 'open') {
          server.close();
          reject(new TransportClosedError());
          return;
        }
        const bound = server.address() as AddressInfo;
        this.listener = new TcpListener(this, server, formatAddress(bound.address, bound.port));
        resolve(this.listener);
      });
    });
  }

  connect(address: string, options: ConnectOptions = {}): Promise<Link> {
    if (this.state !== 'open') return Promise.reject(new TransportClosedError());
    let target: { host: string; port: number };
    try {
      target = parseAddress(address);
      checkTransportCallOptions('tcp', 'connect', options);
    } catch (err) {
      return Promise.reject(err);
    }
    const timeoutMs = options.timeoutMs ?? this.options.connectTimeoutMs;
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(new AbortedError('connect aborted', { cause: signal.reason }));

    return new Promise<Link>((resolve, reject) => {
      let settled = false;
      let session: ClientSession | undefined;
      const raw = netConnect({ host: target.host, port: target.port, allowHalfOpen: true });
      const entry = {
        cancel: (error: ClusterInfraError): void => {
          if (session) session.cancel(error);
          else fail(error);
        },
      };
      const onAbort = (): void => entry.cancel(new AbortedError('connect aborted', { cause: signal?.reason }));
      const connectTimer = this.clock.setTimeout(() => fail(new ConnectTimeoutError(address, timeoutMs)), timeoutMs);
      const cleanup = (): void => {
        settled = true;
        connectTimer.cancel();
        signal?.removeEventListener('abort', onAbort);
        this.connecting.delete(entry);
      };
      const fail = (error: ClusterInfraError): void => {
        if (settled) return;
        cleanup();
        raw.on('error', noop);
        raw.destroy();
        reject(error);
      };
      const onConnectError = (err: NodeJS.ErrnoException): void => fail(mapConnectError(address, timeoutMs, err));
      this.connecting.add(entry);
      signal?.addEventListener('abort', onAbort, { once: true });
      raw.once('error', onConnectError);
      raw.once('connect', () => {
        raw.off('error', onConnectError);
        connectTimer.cancel();
        if (settled) return;
        raw.setNoDelay(this.options.noDelay);
        const remoteAddress = formatAddress(raw.remoteAddress ?? target.host, raw.remotePort ?? target.port);
        const s = new ClientSession(
          this,
          raw,
          remoteAddress,
          (result) => {
            cleanup();
            resolve(this.adopt(result, 'outbound', remoteAddress));
          },
          (failure) => {
            cleanup();
            reject(failure.error);
          },
        );
        session = s;
        s.startTimer();
        const t = this.options.tls;
        if (t === undefined) {
          s.attach(raw);
          s.begin();
          return;
        }
        const secure = tls.connect({
          socket: raw,
          host: target.host,
          ...(t.servername !== undefined ? { servername: t.servername } : {}),
          key: t.key,
          cert: t.cert,
          ca: t.ca,
          passphrase: t.passphrase,
          minVersion: t.minVersion ?? 'TLSv1.2',
          rejectUnauthorized: true,
        });
        s.attach(secure);
        secure.once('secureConnect', () => s.begin());
      });
    });
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    if (this.state === 'closed') return Promise.resolve();
    this.state = 'closing';
    this.closing = (async () => {
      for (const c of [...this.connecting]) c.cancel(new TransportClosedError());
      await this.listener?.close();
      await Promise.all([...this.links].map((l) => l.close()));
      this.state = 'closed';
    })();
    return this.closing;
  }

  destroy(error?: ClusterInfraError): void {
    this.state = 'closed';
    for (const c of [...this.connecting]) c.cancel(new TransportClosedError());
    this.listener?.shutdown();
    for (const l of [...this.links]) l.destroy(error);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Die like a crashed process: every socket ends at once, without a goodbye. */
  [kCrash](): void {
    this.state = 'closed';
    for (const c of [...this.connecting]) c.cancel(new TransportClosedError());
    this.listener?.shutdown();
    for (const l of [...this.links]) l.crash();
  }

  /** A finished handshake becomes a link. */
  adopt(result: HandshakeResult, direction: 'inbound' | 'outbound', remoteAddress: string): TcpLink {
    result.decoder.maxFrameSize = this.options.maxFrameSize;
    this.learn(result.raw.remoteAddress);
    const link = new TcpLink(
      {
        id: `${direction === 'inbound' ? 'in' : 'out'}-${++this.linkSeq}`,
        direction,
        local: this.identity,
        remote: result.remote,
        remoteAddress,
        // Send no more than the peer accepts; receive no more than we accept (the decoder).
        maxFrameSize: Math.min(this.options.maxFrameSize, result.remoteMaxFrameSize),
      },
      {
        socket: result.socket,
        raw: result.raw,
        decoder: result.decoder,
        clock: this.clock,
        highWaterMark: this.options.highWaterMark,
        frameDeadlineMs: this.options.frameDeadlineMs,
        closeTimeoutMs: this.options.closeTimeoutMs,
        onClosed: (l) => this.links.delete(l),
        ...(result.keys
          ? {
              records: {
                sealer: new RecordSealer(result.keys.send, this.options.rekeyAfterBytes, RECORD_MAX_PER_KEY, recordMaxPlaintext(result.version)),
                opener: new RecordOpener(result.keys.receive, RECORD_MAX_PER_KEY, recordMaxPlaintext(result.version)),
              },
            }
          : {}),
      },
    );
    if (link.state !== 'closed') this.links.add(link);
    return link;
  }
}

interface PendingEntry {
  readonly network: string;
  readonly known: boolean;
  readonly bytesRead: number;
  readonly session: ServerSession;
}

export class TcpListener extends EventEmitter<ListenerEvents> implements Listener {
  private readonly tlsServer: tls.Server | undefined;
  /** Connections in their handshake, by `ip|port` (how a TLS socket is matched to its TCP one). */
  private readonly pending = new Map<string, ServerSession>();
  private readonly slots: PendingSlots<PendingEntry>;
  private closed = false;

  constructor(
    private readonly transport: TcpTransport,
    private readonly server: Server,
    readonly address: string,
  ) {
    super();
    const o = transport.options;
    this.slots = new PendingSlots({ total: o.maxPendingHandshakes, perNetwork: o.maxPendingPerAddress, reserved: o.pendingReservedForKnown });
    const t = o.tls;
    if (t !== undefined) {
      // Client certificates are requested and checked by us (`authorized`) so
      // that a refused client gets a REJECT it can read, not a bare reset.
      this.tlsServer = tls.createServer({
        key: t.key,
        cert: t.cert,
        ca: t.ca,
        passphrase: t.passphrase,
        minVersion: t.minVersion ?? 'TLSv1.2',
        requestCert: true,
        rejectUnauthorized: false,
      });
      this.tlsServer.on('secureConnection', this.onSecure);
      this.tlsServer.on('tlsClientError', this.onTlsClientError);
    }
    server.on('connection', this.onConnection);
    server.on('error', (err) => transport.logger.error({ err }, 'listener error'));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Stop accepting; links already accepted stay open; handshakes in progress are dropped. */
  close(): Promise<void> {
    this.shutdown();
    return Promise.resolve();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    for (const s of [...this.pending.values()]) s.cancel(new TransportClosedError());
    this.emit('close');
  }

  private readonly onConnection = (raw: Socket): void => {
    raw.on('error', noop); // until a session owns it
    const ip = raw.remoteAddress;
    const port = raw.remotePort;
    if (this.closed || ip === undefined || port === undefined) {
      raw.destroy();
      return;
    }
    const remoteAddress = formatAddress(ip, port);
    const o = this.transport.options;
    const clock = this.transport.clock;
    const key = `${ip}|${port}`;
    let released = false;
    let silent: { cancel(): void } | undefined;
    const release = (): void => {
      if (released) return;
      released = true;
      silent?.cancel();
      this.pending.delete(key);
      this.slots.remove(entry);
    };
    const session = new ServerSession(
      this.transport,
      raw,
      remoteAddress,
      (result: HandshakeResult) => {
        release();
        const link = this.transport.adopt(result, 'inbound', remoteAddress);
        if (this.closed) link.destroy();
        else this.emit('link', link);
      },
      (failure: HandshakeFailure) => {
        release();
        if (isQuietFailure(failure.error)) {
          this.transport.logger.debug({ remoteAddress, err: failure.error }, 'handshake abandoned');
          return;
        }
        this.emit('rejected', { remoteAddress, error: failure.error, ...(failure.remote ? { remote: failure.remote } : {}) });
      },
    );
    const entry: PendingEntry = { network: networkOf(ip), known: this.transport.isKnown(ip), get bytesRead() { return raw.bytesRead; }, session };
    // Room for the newcomer: a pending connection gives way (pending.ts says which).
    for (const { victim, limit } of this.slots.admit(entry))
      victim.session.refuse('busy', new TooManyPendingError(`too many pending handshakes (${limit}); this one gave way to a newer connection`));
    this.slots.add(entry);
    this.pending.set(key, session);
    raw.setNoDelay(o.noDelay);
    session.startTimer();
    // A peer speaks at once; one that says nothing holds a slot for free, so it gets less time.
    if (o.silentTimeoutMs < o.handshakeTimeoutMs)
      silent = clock.setTimeout(() => {
        silent = undefined;
        if (raw.bytesRead === 0) session.cancel(new HandshakeTimeoutError(remoteAddress, o.silentTimeoutMs));
      }, o.silentTimeoutMs);
    if (this.tlsServer) this.tlsServer.emit('connection', raw);
    else session.attach(raw);
  };

  private readonly onSecure = (socket: tls.TLSSocket): void => {
    const session = this.pending.get(`${socket.remoteAddress}|${socket.remotePort}`);
    if (session === undefined) {
      socket.destroy();
      return;
    }
    session.attach(socket);
    if (!socket.authorized) {
      const why = String(socket.authorizationError ?? 'no client certificate');
      session.refuse('auth', new HandshakeRejectedError('auth', 'local', `client certificate refused: ${why}`));
    }
  };

  private readonly onTlsClientError = (err: Error, socket: tls.TLSSocket): void => {
    const session = this.pending.get(`${socket.remoteAddress}|${socket.remotePort}`);
    session?.cancel(this.transport.tlsError(err));
  };
}
