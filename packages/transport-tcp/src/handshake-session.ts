/**
 * The handshake state machines, one per side, over an established stream
 * (plain TCP, or TLS after its own handshake). Protocol version 2 and 3
 * (3 allows larger records: record.ts):
 *
 *   client                                     server
 *   HELLO    magic, versions, flags, client identity, nonce, cluster name  →
 *                                           ←  WELCOME  magic, version, flags, server nonce
 *   AUTH     client proof                                                  →
 *                                           ←  READY    server identity, server proof
 *   FINISH                                                                 →
 *
 * The client proves first: until it has, the server says nothing that
 * depends on the secret, its cluster name or its identity, so a stranger
 * learns nothing from a HELLO and cannot test guesses at the secret offline
 * from the server's answer (only by connecting, once per guess). A wrong
 * cluster name with a secret fails the proof like a wrong secret (the key is
 * bound to the name each side knows), and the same REJECT `auth` goes back.
 *
 * Either side may answer with REJECT(reason) instead and close. The server
 * checks version, identity format and secret presence on HELLO; the proof,
 * the cluster name, its own node number and its admission policy on AUTH.
 * The client checks version and secret presence on WELCOME; the server's
 * proof, identity and its policy on READY. `connect()` resolves when FINISH
 * is sent; the listener emits `link` on FINISH. No data frame is accepted
 * before that (the decoder refuses them), and handshake messages are bounded
 * by MAX_CONTROL_SIZE. With a secret and no TLS, both sides then derive
 * per-direction traffic keys and the link is encrypted (record.ts) unless
 * both sides turned `encrypt` off.
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
  READY_CORE,
  computeProof,
  deriveHandshakeKey,
  deriveTrafficKeys,
  encodeAuth,
  encodeHello,
  encodeReady,
  encodeReject,
  encodeWelcome,
  negotiateVersion,
  parseAuth,
  parseEmpty,
  parseHello,
  parseReady,
  parseReject,
  parseWelcome,
  transcriptHash,
  validIncarnation,
  validNodeNum,
  verifyProof,
} from './handshake.js';
import { kKeys } from './keyring.js';
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
  /** Traffic keys when the link is encrypted (a secret, no TLS, and either side asked). */
  readonly keys?: { readonly send: Uint8Array; readonly receive: Uint8Array };
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

  protected complete(remote: NodeIdentity, remoteMaxFrameSize: number, version: number, keys: HandshakeResult['keys']): void {
    const socket = this.socket!;
    this.settle();
    this.decoder.allowData = true;
    this.onDone({ socket, raw: this.raw, decoder: this.decoder, remote, remoteMaxFrameSize, version, ...(keys ? { keys } : {}) });
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
    const o = this.core.options;
    if (o.secret === undefined) return 0;
    return Flags.PSK | (o.encrypt && o.tls === undefined ? Flags.ENCRYPT : 0);
  }

  /** A secret link without TLS is encrypted when either side asks. */
  protected encrypted(remoteFlags: number): boolean {
    const o = this.core.options;
    return o.secret !== undefined && o.tls === undefined && ((this.flags() | remoteFlags) & Flags.ENCRYPT) !== 0;
  }
}

function noop(): void {}


type Message = readonly [type: number, body: Uint8Array];

const RETIRED_VERSION_HINT = `protocol 1 is retired (the server proved first and frames were not encrypted): run the same release on every node`;

export class ServerSession extends Session {
  private stage: 'hello' | 'auth' | 'finish' = 'hello';
  private hello: Hello | undefined;
  private welcomeBody: Uint8Array = EMPTY;
  private version = 0;
  private remote: NodeIdentity | undefined;
  private keys: HandshakeResult['keys'];

  /** Bytes the peer sent so far (the listener evicts the connections that sent nothing first). */
  get bytesRead(): number {
    return this.raw.bytesRead;
  }

  protected onMessage(f: DecodedFrame & { kind: 'control' }): void {
    if (f.type === ControlType.REJECT && this.stage !== 'hello') {
      this.rejectedByPeer(parseReject(f.body));
      return;
    }
    const expected = { hello: ControlType.HELLO, auth: ControlType.AUTH, finish: ControlType.FINISH }[this.stage];
    if (f.type !== expected) throw new MalformedFrameError(`expected ${this.stage.toUpperCase()}, got control type ${f.type}`);
    if (this.stage === 'hello') this.onHello(f.body);
    else if (this.stage === 'auth') this.onAuth(f.body);
    else {
      parseEmpty(f.body, 'FINISH');
      this.complete(this.remote!, this.hello!.maxFrameSize, this.version, this.keys);
    }
  }

  /** Structure, version, identity format and secret presence: nothing that tells a stranger about us. */
  private onHello(body: Uint8Array): void {
    const hello = parseHello(body);
    this.hello = hello;
    this.helloBody = new Uint8Array(body);
    this.remoteIdentity = { nodeNum: hello.nodeNum, incarnation: hello.incarnation, clusterName: utf8.decode(hello.clusterName) };
    const version = negotiateVersion(PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX, hello.minVersion, hello.maxVersion);
    if (version === undefined)
      throw new HandshakeRejectedError(
        'version',
        'local',
        `peer speaks protocol ${hello.minVersion}..${hello.maxVersion}, this node ${PROTOCOL_VERSION_MIN}..${PROTOCOL_VERSION_MAX}; ${RETIRED_VERSION_HINT}`,
      );
    this.version = version;
    if (!validNodeNum(hello.nodeNum) || !validIncarnation(hello.incarnation))
      throw new HandshakeRejectedError('identity', 'local', 'invalid node number or incarnation');
    this.checkSecretPresence(hello.flags);
    if (hello.maxFrameSize < 1 || hello.maxFrameSize > 0x7fff_ffff) throw new MalformedFrameError('HELLO: bad max frame size');
    this.nonce = this.core.random.bytes(NONCE_SIZE);
    this.welcomeBody = encodeWelcome({ version, flags: this.flags(), nonce: this.nonce });
    this.stage = 'auth';
    this.send(ControlType.WELCOME2, this.welcomeBody);
  }

  private onAuth(body: Uint8Array): void {
    const proof = parseAuth(body);
    const hello = this.hello!;
    const seen: Message[] = [
      [ControlType.HELLO, this.helloBody],
      [ControlType.WELCOME2, this.welcomeBody],
    ];
    const sameName = Buffer.from(hello.clusterName).equals(this.core.clusterNameBytes);
    let key: Uint8Array | undefined;
    if (this.core.options.secret !== undefined) {
      key = this.findKey(proof, transcriptHash(seen));
      // With a secret, another cluster name fails the proof like another secret, and gets the same answer.
      if (key === undefined)
        throw new HandshakeRejectedError(
          'auth',
          'local',
          `client proof did not verify${sameName ? '' : ` (the peer also names another cluster, ${JSON.stringify(this.remoteIdentity?.clusterName)})`}`,
        );
    } else {
      if (proof.byteLength !== 0) throw new MalformedFrameError('AUTH: proof without a secret');
      if (!sameName)
        throw new HandshakeRejectedError('cluster-name', 'local', `peer is in cluster ${JSON.stringify(this.remoteIdentity?.clusterName)}`);
    }
    if (hello.nodeNum === this.core.identity.nodeNum)
      throw new HandshakeRejectedError('identity', 'local', `peer claims our own node number ${hello.nodeNum}`);
    const remote: NodeIdentity = { clusterName: this.core.identity.clusterName, nodeNum: hello.nodeNum, incarnation: hello.incarnation };
    this.checkPolicy(remote);

    const me = this.core.identity;
    const ready = { nodeNum: me.nodeNum, incarnation: me.incarnation, maxFrameSize: this.core.options.maxFrameSize, proof: EMPTY };
    seen.push([ControlType.AUTH, new Uint8Array(body)]);
    let readyBody = encodeReady(ready);
    if (key !== undefined) {
      const proven = transcriptHash([...seen, [ControlType.READY2, readyBody.subarray(0, READY_CORE)]]);
      readyBody = encodeReady({ ...ready, proof: computeProof(key, 'server', proven) });
      if (this.encrypted(hello.flags)) {
        const t = deriveTrafficKeys(key, transcriptHash([...seen, [ControlType.READY2, readyBody]]));
        this.keys = { send: t.serverToClient, receive: t.clientToServer };
      }
    }
    this.remote = remote;
    this.stage = 'finish';
    this.send(ControlType.READY2, readyBody);
  }

  /** The handshake key of the first keyring key under which the client's proof verifies. */
  private findKey(proof: Uint8Array, transcript: Uint8Array): Uint8Array | undefined {
    const hello = this.hello!;
    const binding = { clusterName: this.core.clusterNameBytes, clientNodeNum: hello.nodeNum, clientIncarnation: hello.incarnation };
    for (const secret of this.core.options.secret![kKeys]()) {
      const key = deriveHandshakeKey(secret, hello.nonce, this.nonce, binding);
      if (verifyProof(key, 'client', transcript, proof)) return key;
    }
    return undefined;
  }
}

export class ClientSession extends Session {
  private stage: 'welcome' | 'ready' = 'welcome';
  private seen: Message[] = [];
  private key: Uint8Array | undefined;
  private welcomeFlags = 0;
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
    this.seen = [[ControlType.HELLO, this.helloBody]];
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
      const reason = parseReject(f.body);
      if (reason === 'version')
        this.abandon(
          new HandshakeRejectedError(
            'version',
            'remote',
            `the peer does not speak protocol ${PROTOCOL_VERSION_MIN}..${PROTOCOL_VERSION_MAX}: it probably runs an older release; ${RETIRED_VERSION_HINT}`,
          ),
        );
      else this.rejectedByPeer(reason);
      return;
    }
    if (this.stage === 'welcome') {
      if (f.type === ControlType.WELCOME)
        throw new HandshakeRejectedError('version', 'local', `the peer answered with a protocol 1 WELCOME; ${RETIRED_VERSION_HINT}`);
      if (f.type !== ControlType.WELCOME2) throw new MalformedFrameError(`expected WELCOME, got control type ${f.type}`);
      this.onWelcome(f.body);
    } else {
      if (f.type !== ControlType.READY2) throw new MalformedFrameError(`expected READY, got control type ${f.type}`);
      this.onReady(f.body);
    }
  }

  /** Prove first: the server has said nothing yet that depends on the secret. */
  private onWelcome(body: Uint8Array): void {
    const w = parseWelcome(body);
    if (w.version < PROTOCOL_VERSION_MIN || w.version > PROTOCOL_VERSION_MAX)
      throw new HandshakeRejectedError('version', 'local', `server chose version ${w.version}`);
    this.checkSecretPresence(w.flags);
    this.welcomeFlags = w.flags;
    this.version = w.version;
    this.seen.push([ControlType.WELCOME2, new Uint8Array(body)]);
    let proof: Uint8Array = EMPTY;
    const secret = this.core.options.secret;
    if (secret !== undefined) {
      const me = this.core.identity;
      this.key = deriveHandshakeKey(secret[kKeys]()[0]!, this.nonce, w.nonce, {
        clusterName: this.core.clusterNameBytes,
        clientNodeNum: me.nodeNum,
        clientIncarnation: me.incarnation,
      });
      proof = computeProof(this.key, 'client', transcriptHash(this.seen));
    }
    const auth = encodeAuth(proof);
    this.seen.push([ControlType.AUTH, auth]);
    this.stage = 'ready';
    this.send(ControlType.AUTH, auth);
  }

  private onReady(body: Uint8Array): void {
    const r = parseReady(body);
    this.remoteIdentity = { nodeNum: r.nodeNum, incarnation: r.incarnation };
    let keys: HandshakeResult['keys'];
    if (this.key !== undefined) {
      const proven = transcriptHash([...this.seen, [ControlType.READY2, body.subarray(0, READY_CORE)]]);
      if (!verifyProof(this.key, 'server', proven, r.proof)) throw new HandshakeRejectedError('auth', 'local', 'server proof did not verify');
      if (this.encrypted(this.welcomeFlags)) {
        const t = deriveTrafficKeys(this.key, transcriptHash([...this.seen, [ControlType.READY2, body]]));
        keys = { send: t.clientToServer, receive: t.serverToClient };
      }
    } else if (r.proof.byteLength !== 0) {
      throw new MalformedFrameError('READY: proof without a secret');
    }
    this.checkIdentity(r.nodeNum, r.incarnation);
    if (r.maxFrameSize < 1 || r.maxFrameSize > 0x7fff_ffff) throw new MalformedFrameError('READY: bad max frame size');
    const remote: NodeIdentity = { clusterName: this.core.identity.clusterName, nodeNum: r.nodeNum, incarnation: r.incarnation };
    this.checkPolicy(remote);
    this.send(ControlType.FINISH);
    this.complete(remote, r.maxFrameSize, this.version, keys);
  }
}

export type { TLSSocket };
