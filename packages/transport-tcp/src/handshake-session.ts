/**
 * The handshake state machines, one per side, over an established stream
 * (plain TCP, or TLS after its own handshake):
 *
 *   client                                  server
 *   HELLO   magic, versions, identity, nonce  →
 *                                         ←  WELCOME magic, version, identity, nonce, server proof
 *   AUTH    client proof                      →
 *                                         ←  READY
 *
 * Either side may answer with REJECT(reason) instead and close. The server
 * checks version, cluster name, identity and secret presence on HELLO, and
 * the client's proof and its admission policy on AUTH; the client checks the
 * version, identity, secret presence, the server's proof and its policy on
 * WELCOME. `connect()` resolves on READY; the listener emits `link` after
 * sending READY. No data frame is accepted before that (the decoder refuses
 * them), and handshake messages are bounded by MAX_CONTROL_SIZE.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import {
  type ClusterInfraError,
  FrameDeadlineError,
  type HandshakeRejectReason,
  HandshakeRejectedError,
  HandshakeTimeoutError,
  LinkResetError,
  MalformedFrameError,
  type NodeIdentity,
  type TimerHandle,
  isClusterInfraError,
} from '@clusterinfra/core';
import { ControlType, Flags, NONCE_SIZE, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN } from './constants.js';
import { FrameDeadline } from './deadline.js';
import { type DecodedFrame, FrameDecoder, encodeControl } from './frame.js';
import {
  type Hello,
  computeProof,
  deriveSessionKey,
  encodeAuth,
  encodeHello,
  encodeReject,
  encodeWelcome,
  negotiateVersion,
  parseAuth,
  parseEmpty,
  parseHello,
  parseReject,
  parseWelcome,
  transcriptOf,
  validIncarnation,
  validNodeNum,
  verifyProof,
} from './handshake.js';
import type { TransportCore } from './core.js';

const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder();

/** What a successful handshake hands to the link. */
export interface HandshakeResult {
  readonly socket: Socket;
  readonly raw: Socket;
  readonly decoder: FrameDecoder;
  readonly remote: NodeIdentity;
  /** Largest frame the peer accepts. */
  readonly remoteMaxFrameSize: number;
  readonly version: number;
}

export interface HandshakeFailure {
  readonly error: ClusterInfraError;
  /** What the peer claimed to be, as far as the handshake got. */
  readonly remote?: Partial<NodeIdentity>;
}

const TLS_ERROR = /^(ERR_SSL_|ERR_TLS_|UNABLE_TO_|CERT_|DEPTH_ZERO|SELF_SIGNED|HOSTNAME_MISMATCH|ERR_OSSL)/;

export function isTlsErrorCode(code: unknown): boolean {
  return typeof code === 'string' && TLS_ERROR.test(code);
}

abstract class Session {
  protected readonly decoder: FrameDecoder;
  protected socket: Socket | undefined;
  private readonly deadline: FrameDeadline;
  private timer: TimerHandle | undefined;
  protected settled = false;
  protected nonce: Uint8Array = EMPTY;
  protected helloBody: Uint8Array = EMPTY;
  protected remoteIdentity: Partial<{ -readonly [K in keyof NodeIdentity]: NodeIdentity[K] }> | undefined;

  constructor(
    protected readonly core: TransportCore,
    protected readonly raw: Socket,
    protected readonly remoteAddress: string,
    private readonly onDone: (result: HandshakeResult) => void,
    private readonly onFail: (failure: HandshakeFailure) => void,
  ) {
    this.decoder = new FrameDecoder({ maxFrameSize: core.options.maxFrameSize, allowData: false });
    this.deadline = new FrameDeadline(core.clock, core.options.frameDeadlineMs, this.decoder, () =>
      this.abandon(new FrameDeadlineError(core.options.frameDeadlineMs), 'malformed'),
    );
    // Until the stream is attached (and after, for TLS), the TCP socket itself can fail.
    raw.on('error', this.onError);
    raw.on('close', this.onClose);
  }

  /** Start the handshake timeout (covers TLS too when started before it). */
  startTimer(): void {
    const ms = this.core.options.handshakeTimeoutMs;
    this.timer ??= this.core.clock.setTimeout(() => {
      this.timer = undefined;
      this.abandon(new HandshakeTimeoutError(this.remoteAddress, ms));
    }, ms);
  }

  /** Run the handshake on `socket` (the TLS socket, or `raw`). */
  attach(socket: Socket): void {
    if (this.settled) {
      socket.destroy();
      return;
    }
    this.socket = socket;
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  /** Give up on this connection from outside (transport destroyed, listener closed, aborted). */
  cancel(error: ClusterInfraError): void {
    this.abandon(error);
  }

  protected abstract onMessage(frame: DecodedFrame & { kind: 'control' }): void;

  /** Errors on the connection before a socket-level handshake finished. */
  protected mapSocketError(err: NodeJS.ErrnoException): ClusterInfraError {
    if (isTlsErrorCode(err.code)) return this.core.tlsError(err);
    return new LinkResetError(`connection lost during the handshake: ${err.message}`, { cause: err });
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.settled) return;
    try {
      this.decoder.feed(chunk);
      for (let f = this.decoder.next(); f !== undefined && !this.settled; f = this.decoder.next()) {
        if (f.kind !== 'control') throw new MalformedFrameError('data frame during the handshake');
        this.onMessage(f);
        if (this.settled) return;
      }
    } catch (err) {
      if (err instanceof HandshakeRejectedError) this.refuse(err.reason, err);
      else this.refuse('malformed', isClusterInfraError(err) ? err : new MalformedFrameError(String(err)));
      return;
    }
    this.deadline.update();
  };

  private readonly onEnd = (): void => {
    this.abandon(new LinkResetError('connection closed during the handshake'));
  };

  private readonly onError = (err: NodeJS.ErrnoException): void => {
    this.abandon(this.mapSocketError(err));
  };

  private readonly onClose = (): void => {
    this.abandon(new LinkResetError('connection closed during the handshake'));
  };

  protected send(type: number, body?: Uint8Array): void {
    this.socket?.write(encodeControl(type, body));
  }

  /**
   * Refuse the peer: send REJECT(reason), close, and report `error` (by
   * default HandshakeRejectedError(reason, 'local')).
   */
  refuse(reason: HandshakeRejectReason, error?: ClusterInfraError): void {
    if (this.settled) return;
    const err = error ?? new HandshakeRejectedError(reason, 'local');
    const socket = this.socket;
    this.settle();
    if (socket && !socket.destroyed && !socket.writableEnded) {
      // Flush the REJECT, then drop the connection whatever the peer does.
      const safety = this.core.clock.setTimeout(() => this.destroyAll(), this.core.options.closeTimeoutMs);
      socket.end(encodeControl(ControlType.REJECT, encodeReject(reason)), () => {
        safety.cancel();
        this.destroyAll();
      });
    } else {
      this.destroyAll();
    }
    this.onFail({ error: err, remote: this.remoteIdentity });
  }

  /** The peer refused us. */
  protected rejectedByPeer(reason: HandshakeRejectReason): void {
    this.abandon(new HandshakeRejectedError(reason, 'remote'));
  }

  /** Fail without a word to the peer, or with REJECT(reason) when a reason is given. */
  protected abandon(error: ClusterInfraError, reason?: HandshakeRejectReason): void {
    if (this.settled) return;
    if (reason !== undefined && this.socket !== undefined) {
      this.refuse(reason, error);
      return;
    }
    this.settle();
    this.destroyAll();
    this.onFail({ error, remote: this.remoteIdentity });
  }

  protected complete(remote: NodeIdentity, remoteMaxFrameSize: number, version: number): void {
    const socket = this.socket!;
    this.settle();
    this.decoder.allowData = true;
    this.onDone({ socket, raw: this.raw, decoder: this.decoder, remote, remoteMaxFrameSize, version });
  }

  private settle(): void {
    this.settled = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.deadline.cancel();
    const s = this.socket;
    if (s) {
      s.off('data', this.onData);
      s.off('end', this.onEnd);
      s.off('error', this.onError);
      s.off('close', this.onClose);
      // A late error must not become an unhandled 'error' event.
      s.on('error', noop);
    }
    this.raw.off('error', this.onError);
    this.raw.off('close', this.onClose);
    this.raw.on('error', noop);
  }

  private destroyAll(): void {
    this.socket?.destroy();
    this.raw.destroy();
  }

  protected checkIdentity(nodeNum: number, incarnation: number): void {
    if (!validNodeNum(nodeNum) || !validIncarnation(incarnation))
      throw new HandshakeRejectedError('identity', 'local', 'invalid node number or incarnation');
    if (nodeNum === this.core.identity.nodeNum)
      throw new HandshakeRejectedError('identity', 'local', `peer claims our own node number ${nodeNum}`);
  }

  protected checkSecretPresence(remoteFlags: number): void {
    const remotePsk = (remoteFlags & Flags.PSK) !== 0;
    const localPsk = this.core.options.secret !== undefined;
    if (remotePsk !== localPsk)
      throw new HandshakeRejectedError('auth', 'local', localPsk ? 'peer has no secret' : 'we have no secret');
  }

  protected checkPolicy(remote: NodeIdentity): void {
    const admit = this.core.options.admit;
    if (!admit) return;
    let ok = false;
    try {
      ok = admit(remote, this.remoteAddress) === true;
    } catch (err) {
      this.core.logger.warn({ err }, 'admit() threw; refusing the peer');
    }
    if (!ok) throw new HandshakeRejectedError('policy', 'local', `node ${remote.nodeNum} not admitted`);
  }

  protected flags(): number {
    return this.core.options.secret !== undefined ? Flags.PSK : 0;
  }

  protected sessionKey(hello: Hello, serverNonce: Uint8Array, server: { nodeNum: number; incarnation: number }): Uint8Array {
    return deriveSessionKey(this.core.options.secret!, hello.nonce, serverNonce, {
      clusterName: hello.clusterName,
      clientNodeNum: hello.nodeNum,
      clientIncarnation: hello.incarnation,
      serverNodeNum: server.nodeNum,
      serverIncarnation: server.incarnation,
    });
  }
}

function noop(): void {}

export class ServerSession extends Session {
  private stage: 'hello' | 'auth' = 'hello';
  private hello: Hello | undefined;
  private key: Uint8Array | undefined;
  private transcript: Uint8Array = EMPTY;
  private version = 0;

  protected onMessage(f: DecodedFrame & { kind: 'control' }): void {
    if (f.type === ControlType.REJECT && this.stage === 'auth') {
      this.rejectedByPeer(parseReject(f.body));
      return;
    }
    if (this.stage === 'hello') {
      if (f.type !== ControlType.HELLO) throw new MalformedFrameError(`expected HELLO, got control type ${f.type}`);
      this.onHello(f.body);
    } else {
      if (f.type !== ControlType.AUTH) throw new MalformedFrameError(`expected AUTH, got control type ${f.type}`);
      this.onAuth(f.body);
    }
  }

  private onHello(body: Uint8Array): void {
    const hello = parseHello(body);
    this.hello = hello;
    this.helloBody = new Uint8Array(body);
    this.remoteIdentity = { nodeNum: hello.nodeNum, incarnation: hello.incarnation };
    const version = negotiateVersion(PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX, hello.minVersion, hello.maxVersion);
    if (version === undefined)
      throw new HandshakeRejectedError('version', 'local', `peer speaks ${hello.minVersion}..${hello.maxVersion}`);
    this.version = version;
    const name = utf8.decode(hello.clusterName);
    this.remoteIdentity.clusterName = name;
    if (!Buffer.from(hello.clusterName).equals(this.core.clusterNameBytes))
      throw new HandshakeRejectedError('cluster-name', 'local', `peer is in cluster ${JSON.stringify(name)}`);
    this.checkIdentity(hello.nodeNum, hello.incarnation);
    this.checkSecretPresence(hello.flags);
    if (hello.maxFrameSize < 1 || hello.maxFrameSize > 0x7fff_ffff) throw new MalformedFrameError('HELLO: bad max frame size');

    this.nonce = this.core.random.bytes(NONCE_SIZE);
    const me = this.core.identity;
    const welcome = {
      version,
      flags: this.flags(),
      nodeNum: me.nodeNum,
      incarnation: me.incarnation,
      maxFrameSize: this.core.options.maxFrameSize,
      nonce: this.nonce,
      proof: EMPTY,
    };
    let welcomeBody = encodeWelcome(welcome);
    this.transcript = transcriptOf(this.helloBody, welcomeBody);
    if (this.core.options.secret !== undefined) {
      this.key = this.sessionKey(hello, this.nonce, me);
      welcomeBody = encodeWelcome({ ...welcome, proof: computeProof(this.key, 'server', this.transcript) });
    }
    this.stage = 'auth';
    this.send(ControlType.WELCOME, welcomeBody);
  }

  private onAuth(body: Uint8Array): void {
    const proof = parseAuth(body);
    const hello = this.hello!;
    if (this.key !== undefined) {
      if (!verifyProof(this.key, 'client', this.transcript, proof))
        throw new HandshakeRejectedError('auth', 'local', 'client proof did not verify');
    } else if (proof.byteLength !== 0) {
      throw new MalformedFrameError('AUTH: proof without a secret');
    }
    const remote: NodeIdentity = {
      clusterName: this.core.identity.clusterName,
      nodeNum: hello.nodeNum,
      incarnation: hello.incarnation,
    };
    this.checkPolicy(remote);
    this.send(ControlType.READY);
    this.complete(remote, hello.maxFrameSize, this.version);
  }
}

export class ClientSession extends Session {
  private stage: 'welcome' | 'ready' = 'welcome';
  private remote: NodeIdentity | undefined;
  private remoteMax = 0;
  private version = 0;

  /** Send HELLO; call once the stream (and TLS) is up. */
  begin(): void {
    const me = this.core.identity;
    this.nonce = this.core.random.bytes(NONCE_SIZE);
    this.helloBody = encodeHello({
      minVersion: PROTOCOL_VERSION_MIN,
      maxVersion: PROTOCOL_VERSION_MAX,
      flags: this.flags(),
      nodeNum: me.nodeNum,
      incarnation: me.incarnation,
      maxFrameSize: this.core.options.maxFrameSize,
      nonce: this.nonce,
      clusterName: this.core.clusterNameBytes,
    });
    this.send(ControlType.HELLO, this.helloBody);
  }

  protected override mapSocketError(err: NodeJS.ErrnoException): ClusterInfraError {
    // With TLS, a server that refuses our certificate just drops the connection.
    if (this.core.options.tls && this.stage === 'welcome' && !isTlsErrorCode(err.code))
      return this.core.tlsError(err, 'connection dropped during the TLS/handshake exchange (is our certificate trusted by the peer?)');
    return super.mapSocketError(err);
  }

  protected onMessage(f: DecodedFrame & { kind: 'control' }): void {
    if (f.type === ControlType.REJECT) {
      this.rejectedByPeer(parseReject(f.body));
      return;
    }
    if (this.stage === 'welcome') {
      if (f.type !== ControlType.WELCOME) throw new MalformedFrameError(`expected WELCOME, got control type ${f.type}`);
      this.onWelcome(f.body);
    } else {
      if (f.type !== ControlType.READY) throw new MalformedFrameError(`expected READY, got control type ${f.type}`);
      parseEmpty(f.body, 'READY');
      this.complete(this.remote!, this.remoteMax, this.version);
    }
  }

  private onWelcome(body: Uint8Array): void {
    const w = parseWelcome(body);
    this.remoteIdentity = { nodeNum: w.nodeNum, incarnation: w.incarnation };
    if (w.version < PROTOCOL_VERSION_MIN || w.version > PROTOCOL_VERSION_MAX)
      throw new HandshakeRejectedError('version', 'local', `server chose version ${w.version}`);
    this.checkIdentity(w.nodeNum, w.incarnation);
    this.checkSecretPresence(w.flags);
    if (w.maxFrameSize < 1 || w.maxFrameSize > 0x7fff_ffff) throw new MalformedFrameError('WELCOME: bad max frame size');
    const me = this.core.identity;
    const transcript = transcriptOf(this.helloBody, body);
    let proof: Uint8Array = EMPTY;
    if (this.core.options.secret !== undefined) {
      const hello = parseHello(this.helloBody);
      const key = this.sessionKey(hello, w.nonce, w);
      if (!verifyProof(key, 'server', transcript, w.proof))
        throw new HandshakeRejectedError('auth', 'local', 'server proof did not verify');
      proof = computeProof(key, 'client', transcript);
    } else if (w.proof.byteLength !== 0) {
      throw new MalformedFrameError('WELCOME: proof without a secret');
    }
    const remote: NodeIdentity = { clusterName: me.clusterName, nodeNum: w.nodeNum, incarnation: w.incarnation };
    this.checkPolicy(remote);
    this.remote = remote;
    this.remoteMax = w.maxFrameSize;
    this.version = w.version;
    this.stage = 'ready';
    this.send(ControlType.AUTH, encodeAuth(proof));
  }
}

export type { TLSSocket };
