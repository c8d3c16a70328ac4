/**
 * `multipath([pathA, pathB], options)`: one transport made of several.
 *
 * Each path is a transport of its own (TCP over two networks, two memory
 * networks, …) and does its own handshake, so every path connection is
 * authenticated before the multipath layer reads a byte of it. On top, a
 * path connection says HELLO (session id, path number, window) and gets a
 * WELCOME: the first HELLO of a new session makes a logical link, later
 * ones (the other paths, redials after a failure) join it. Only the side
 * that dialled redials; the other waits for it.
 */
import {
  AbortedError,
  checkTransportCallOptions,
  type ClusterInfraError,
  type Clock,
  type ConnectOptions,
  HandshakeRejectedError,
  HandshakeTimeoutError,
  type Link,
  type LinkCloseInfo,
  LinkResetError,
  type Listener,
  type ListenerEvents,
  type Logger,
  MalformedFrameError,
  type NodeIdentity,
  type RandomSource,
  type TimerHandle,
  TooManyPendingError,
  type Transport,
  type TransportCapabilities,
  TransportClosedError,
  type TransportContext,
  type TransportFactory,
} from '@clusterinfra/core';
import { EventEmitter } from 'eventemitter3';
import { formatMultipathAddress, parseMultipathAddress } from './address.js';
import { MULTIPATH_DEFAULTS, MULTIPATH_KIND, WIRE_VERSION } from './constants.js';
import { type LinkHealth, type LinkHost, MultipathLink, type PathEvent, SessionUnknownError } from './link.js';
import type { ResolvedMultipathOptions } from './options.js';
import { DATA_HEADER, decode, encodeHello, encodeRefuse, encodeWelcome, Kind, RefuseReason, type Welcome } from './wire.js';

export interface MultipathTransportEvents {
  /** A path of a logical link went up or down. Emitted in the order it happened, per link. */
  path: (event: PathEvent) => void;
}

/** A finished client-side HELLO/WELCOME on one path. */
interface Dialled {
  link: Link;
  welcome: Welcome;
}

function sameNode(a: NodeIdentity, b: NodeIdentity): boolean {
  return a.nodeNum === b.nodeNum && a.incarnation === b.incarnation && a.clusterName === b.clusterName;
}

/** The error a failed connect reports: a refusal by the peer says most, then the first path's error. */
function mostTelling(errors: ClusterInfraError[]): ClusterInfraError {
  return errors.find((e) => e instanceof HandshakeRejectedError) ?? errors[0]!;
}

/** A random session id below 2^53. */
function sessionId(random: RandomSource): number {
  return random.int(2 ** 21) * 2 ** 32 + random.int(2 ** 32);
}

/** One node's multipath transport. See the Transport contract in @clusterinfra/core. */
export class MultipathTransport extends EventEmitter<MultipathTransportEvents> implements Transport, LinkHost {
  readonly kind = MULTIPATH_KIND;
  readonly capabilities: TransportCapabilities;
  readonly identity: NodeIdentity;
  /** The path transports, in the order given to `multipath()` (for tests and tools). */
  readonly paths: readonly Transport[];
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly options: ResolvedMultipathOptions;

  private readonly logger: Logger;
  private phase: 'open' | 'closing' | 'closed' = 'open';
  private closing: Promise<void> | undefined;
  private listener: MultipathListener | undefined;
  private readonly links = new Set<MultipathLink>();
  /** Inbound sessions by `sessionKey`. */
  private readonly sessions = new Map<string, MultipathLink>();
  private readonly sessionOf = new Map<MultipathLink, string>();
  /** Keys of closed inbound sessions, oldest first (bounded), so a late path cannot reopen one. */
  private readonly closedSessions = new Set<string>();
  /** Where each outbound link's paths are dialled, and its session id. */
  private readonly dialPlan = new Map<MultipathLink, { addresses: string[]; session: number }>();
  private pendingPaths = 0;
  private linkSeq = 0;

  /** @internal Made by `multipath(...).create(context)`. */
  constructor(
    factories: readonly TransportFactory[],
    options: ResolvedMultipathOptions,
    context: TransportContext,
    private readonly onGone: () => void = () => {},
  ) {
    super();
    this.options = options;
    this.identity = context.identity;
    this.clock = context.clock;
    this.random = context.random;
    this.logger = context.logger.child({ component: 'transport-multipath' });
    this.paths = factories.map((f, i) => f.create({ ...context, logger: context.logger.child({ component: `path-${i}` }) }));
    const caps = this.paths.map((p) => p.capabilities);
    this.capabilities = Object.freeze({
      maxFrameSize: Math.min(...caps.map((c) => c.maxFrameSize)) - DATA_HEADER,
      nativeBulk: false,
      authentication: caps.every((c) => c.authentication),
      encryption: caps.every((c) => c.encryption),
      crashSimulation: caps.every((c) => c.crashSimulation),
    });
  }

  /** Health of every open logical link and its paths. */
  health(): LinkHealth[] {
    return [...this.links].map((l) => l.health());
  }

  /**
   * Listen on every path. The listener's address names all of them
   * (`multipath:<path 0>,<path 1>`): it is what peers dial.
   */
  async listen(options: { signal?: AbortSignal } = {}): Promise<MultipathListener> {
    // Once, before any path is asked: the paths would each fail on them their own way.
    checkTransportCallOptions('multipath', 'listen', options);
    if (this.phase !== 'open') throw new TransportClosedError();
    if (this.listener !== undefined) return this.listener;
    const made = await Promise.allSettled(this.paths.map((p) => p.listen(options)));
    const failed = made.find((r) => r.status === 'rejected');
    const ok = made.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    if (failed !== undefined || this.phase !== 'open') {
      await Promise.all(ok.map((l) => l.close()));
      throw failed ? (failed as PromiseRejectedResult).reason : new TransportClosedError();
    }
    const listener = new MultipathListener(ok, (i, link) => this.onPathLink(i, link), () => {
      if (this.listener === listener) this.listener = undefined;
    });
    this.listener = listener;
    return listener;
  }

  /**
   * Open a logical link to the node at `address` (a multipath address).
   * Every path is dialled at once; this resolves when the first one
   * finished its handshakes, and the others join as they come up (or are
   * redialled until they do). Fails when every path failed, with the most
   * telling of their errors (a handshake refusal first).
   */
  connect(address: string, options: ConnectOptions = {}): Promise<MultipathLink> {
    if (this.phase !== 'open') return Promise.reject(new TransportClosedError());
    let addresses: string[];
    try {
      addresses = parseMultipathAddress(address).slice(0, this.paths.length);
      checkTransportCallOptions('multipath', 'connect', options);
    } catch (err) {
      return Promise.reject(err);
    }
    if (options.signal?.aborted) return Promise.reject(new AbortedError('connect aborted', { cause: options.signal.reason }));
    const session = sessionId(this.random);
    return new Promise<MultipathLink>((resolve, reject) => {
      let link: MultipathLink | undefined;
      const errors: ClusterInfraError[] = [];
      let failed = 0;
      addresses.forEach((pathAddress, i) => {
        this.dialPath(i, pathAddress, session, true, 0, options).then(
          ({ link: pathLink, welcome }) => {
            if (link === undefined) {
              if (failed === addresses.length || this.phase !== 'open') {
                pathLink.destroy();
                return;
              }
              link = this.makeLink('outbound', pathLink.remote, address, Math.min(this.capabilities.maxFrameSize, welcome.maxFrameSize - DATA_HEADER), welcome.receiveWindow);
              this.dialPlan.set(link, { addresses, session });
              const made = link;
              addresses.forEach((_, j) => {
                // Paths that failed already are redialled; those still dialling say so in health().
                if (errors[j] !== undefined) made.pathFailedToOpen(j, errors[j]!);
                else if (j !== i) made.pathConnecting(j);
              });
              link.attachPath(i, pathLink, welcome.ack);
              resolve(link);
            } else if (!sameNode(pathLink.remote, link.remote)) {
              pathLink.destroy();
              link.pathFailedToOpen(i, new LinkResetError(`path ${i} of ${address} leads to node ${pathLink.remote.nodeNum}, not ${link.remote.nodeNum}`));
            } else {
              link.attachPath(i, pathLink, welcome.ack);
            }
          },
          (err: ClusterInfraError) => {
            errors[i] = err;
            if (link !== undefined) link.pathFailedToOpen(i, err);
            else if (++failed === addresses.length) reject(mostTelling(errors.filter(Boolean)));
          },
        );
      });
    });
  }

  /** Stop listening, close every link gracefully, then close the paths. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.phase === 'closed') return;
      this.phase = 'closing';
      await this.listener?.close();
      await Promise.all([...this.links].map((l) => l.close()));
      await Promise.all(this.paths.map((p) => p.close()));
      this.phase = 'closed';
      this.onGone();
    })();
    return this.closing;
  }

  /** Destroy every link (peers see `reset`) and the paths. */
  destroy(error?: ClusterInfraError): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    void this.listener?.close();
    for (const l of [...this.links]) l.destroy(error);
    for (const p of this.paths) p.destroy(error);
    this.onGone();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ------------------------------------------------------------ LinkHost

  /** @internal */
  redial(link: MultipathLink, index: number): Promise<{ link: Link; ack: number }> {
    const plan = this.dialPlan.get(link);
    if (plan === undefined || this.phase === 'closed') return Promise.reject(new TransportClosedError());
    return this.dialPath(index, plan.addresses[index]!, plan.session, false, link.consumedSeq, {}).then(({ link: pathLink, welcome }) => {
      if (!sameNode(pathLink.remote, link.remote)) {
        pathLink.destroy();
        throw new SessionUnknownError(`path ${index} now leads to node ${pathLink.remote.nodeNum} incarnation ${pathLink.remote.incarnation}`);
      }
      return { link: pathLink, ack: welcome.ack };
    });
  }

  /** @internal */
  pathEvent(event: PathEvent): void {
    this.logger.debug({ ...event }, 'path %d to node %d %s', event.path, event.remoteNode, event.state);
    this.emit('path', event);
  }

  /** @internal */
  linkClosed(link: MultipathLink): void {
    this.links.delete(link);
    this.dialPlan.delete(link);
    const key = this.sessionOf.get(link);
    if (key === undefined) return;
    this.sessionOf.delete(link);
    this.sessions.delete(key);
    this.closedSessions.add(key);
    if (this.closedSessions.size > MULTIPATH_DEFAULTS.closedSessionMemory) {
      this.closedSessions.delete(this.closedSessions.values().next().value!);
    }
  }

  // ------------------------------------------------------------ handshakes

  private makeLink(direction: 'inbound' | 'outbound', remote: NodeIdentity, remoteAddress: string, maxFrameSize: number, peerWindow: number): MultipathLink {
    const link = new MultipathLink({
      id: `${direction === 'inbound' ? 'in' : 'out'}-${++this.linkSeq}`,
      direction,
      local: this.identity,
      remote,
      remoteAddress,
      maxFrameSize,
      host: this,
      pathCount: this.paths.length,
      peerWindow,
    });
    this.links.add(link);
    return link;
  }

  /**
   * Connect path `i` and say HELLO. Resolves with the path link, paused
   * right after the WELCOME so that nothing the peer sends next is missed.
   */
  private async dialPath(i: number, address: string, session: number, open: boolean, ack: number, options: ConnectOptions): Promise<Dialled> {
    const pathLink = await this.paths[i]!.connect(address, options);
    const timeoutMs = this.options.handshakeTimeoutMs;
    return new Promise<Dialled>((resolve, reject) => {
      let timer: TimerHandle | undefined;
      const done = (): void => {
        timer?.cancel();
        pathLink.off('frame', onFrame);
        pathLink.off('close', onClose);
      };
      const fail = (error: ClusterInfraError): void => {
        done();
        pathLink.destroy();
        reject(error);
      };
      const onFrame = (bytes: Uint8Array): void => {
        pathLink.pause();
        let m;
        try {
          m = decode(bytes);
        } catch (err) {
          return fail(err as ClusterInfraError);
        }
        if (m.kind === Kind.Welcome) {
          if (m.version !== WIRE_VERSION) return fail(new HandshakeRejectedError('version', 'local', `multipath version ${m.version}`));
          if (m.maxFrameSize <= DATA_HEADER || m.receiveWindow < 1) return fail(new HandshakeRejectedError('malformed', 'local', 'WELCOME with no room for a frame'));
          done();
          resolve({ link: pathLink, welcome: m });
          return;
        }
        if (m.kind === Kind.Refuse) {
          if (m.reason === RefuseReason.UnknownSession) return fail(new SessionUnknownError(`path ${i} refused session`));
          return fail(new HandshakeRejectedError(m.reason === RefuseReason.Version ? 'version' : 'malformed', 'remote', 'multipath HELLO refused'));
        }
        fail(new MalformedFrameError(`multipath: frame type ${m.kind} instead of WELCOME`));
      };
      const onClose = (info: LinkCloseInfo): void => {
        done();
        reject(new LinkResetError(`path ${i} to ${address} closed during the multipath handshake (${info.reason})`));
      };
      pathLink.on('frame', onFrame);
      pathLink.on('close', onClose);
      timer = this.clock.setTimeout(() => fail(new HandshakeTimeoutError(address, timeoutMs)), timeoutMs);
      timer.unref();
      pathLink.send(
        encodeHello({
          version: WIRE_VERSION,
          open,
          path: i,
          session,
          maxFrameSize: this.capabilities.maxFrameSize + DATA_HEADER,
          receiveWindow: this.options.receiveWindow,
          ack,
        }),
      );
      pathLink.resume();
    });
  }

  private welcome(ack: number): Uint8Array {
    return encodeWelcome({ version: WIRE_VERSION, maxFrameSize: this.capabilities.maxFrameSize + DATA_HEADER, receiveWindow: this.options.receiveWindow, ack });
  }

  /** A path connection was accepted by path listener `i`: wait (bounded) for its HELLO. */
  private onPathLink(i: number, pathLink: Link): void {
    const listener = this.listener;
    if (listener === undefined || this.phase !== 'open') {
      pathLink.destroy();
      return;
    }
    if (this.pendingPaths >= this.options.maxPendingPaths) {
      pathLink.destroy();
      listener.emit('rejected', {
        remoteAddress: pathLink.remoteAddress,
        remote: pathLink.remote,
        error: new TooManyPendingError(`too many path connections waiting for HELLO (${this.options.maxPendingPaths})`),
      });
      return;
    }
    this.pendingPaths++;
    const timeoutMs = this.options.handshakeTimeoutMs;
    let settled = false;
    const done = (): void => {
      if (settled) return;
      settled = true;
      this.pendingPaths--;
      timer.cancel();
      pathLink.off('frame', onFrame);
      pathLink.off('close', done);
    };
    const onFrame = (bytes: Uint8Array): void => {
      done();
      pathLink.pause();
      this.onHello(i, pathLink, bytes);
    };
    const timer = this.clock.setTimeout(() => {
      done();
      pathLink.destroy();
      listener.emit('rejected', { remoteAddress: pathLink.remoteAddress, remote: pathLink.remote, error: new HandshakeTimeoutError(pathLink.remoteAddress, timeoutMs) });
    }, timeoutMs);
    timer.unref();
    pathLink.on('frame', onFrame);
    pathLink.on('close', done);
    pathLink.resume();
  }

  private onHello(i: number, pathLink: Link, bytes: Uint8Array): void {
    const refuse = (reason: RefuseReason, error?: ClusterInfraError): void => {
      pathLink.send(encodeRefuse(reason));
      void pathLink.close();
      if (error) this.listener?.emit('rejected', { remoteAddress: pathLink.remoteAddress, remote: pathLink.remote, error });
    };
    let m;
    try {
      m = decode(bytes);
    } catch (err) {
      return refuse(RefuseReason.Malformed, new HandshakeRejectedError('malformed', 'local', (err as Error).message));
    }
    if (m.kind !== Kind.Hello) return refuse(RefuseReason.Malformed, new HandshakeRejectedError('malformed', 'local', `frame type ${m.kind} instead of HELLO`));
    if (m.version !== WIRE_VERSION) return refuse(RefuseReason.Version, new HandshakeRejectedError('version', 'local', `multipath version ${m.version}`));
    if (m.path !== i) return refuse(RefuseReason.Malformed, new HandshakeRejectedError('malformed', 'local', `HELLO for path ${m.path} on path ${i}`));
    if (m.maxFrameSize <= DATA_HEADER || m.receiveWindow < 1) return refuse(RefuseReason.Malformed, new HandshakeRejectedError('malformed', 'local', 'HELLO with no room for a frame'));
    const r = pathLink.remote;
    const key = `${r.clusterName}\0${r.nodeNum}\0${r.incarnation}\0${m.session}`;
    const known = this.sessions.get(key);
    if (known !== undefined) {
      pathLink.send(this.welcome(known.consumedSeq));
      known.attachPath(i, pathLink, m.ack);
      return;
    }
    if (!m.open || this.closedSessions.has(key) || this.listener === undefined) return refuse(RefuseReason.UnknownSession);
    pathLink.send(this.welcome(0));
    const link = this.makeLink('inbound', r, pathLink.remoteAddress, Math.min(this.capabilities.maxFrameSize, m.maxFrameSize - DATA_HEADER), m.receiveWindow);
    this.sessions.set(key, link);
    this.sessionOf.set(link, key);
    link.attachPath(i, pathLink, m.ack);
    this.listener.emit('link', link);
  }
}

/** Listens on every path; emits `link` once per logical link (not per path). */
export class MultipathListener extends EventEmitter<ListenerEvents> implements Listener {
  readonly address: string;
  private open = true;

  /** @internal Made by `MultipathTransport.listen()`. */
  constructor(
    private readonly pathListeners: readonly Listener[],
    onPathLink: (index: number, link: Link) => void,
    private readonly onClose: () => void,
  ) {
    super();
    this.address = formatMultipathAddress(pathListeners.map((l) => l.address));
    pathListeners.forEach((l, i) => {
      l.on('link', (link) => onPathLink(i, link));
      l.on('rejected', (info) => this.emit('rejected', info));
    });
  }

  /** Stop accepting on every path. Links already accepted stay open (a path they lose cannot come back). */
  async close(): Promise<void> {
    if (!this.open) return;
    this.open = false;
    this.onClose();
    await Promise.all(this.pathListeners.map((l) => l.close()));
    this.emit('close');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
