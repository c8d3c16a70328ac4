/**
 * `memory({ network, ... })`: the in-memory transport factory, its
 * transports and listeners. The handshake is simulated but real in effect:
 * cluster name, shared secret and node identity are checked by the
 * listening side before any link exists, and the dialling side learns the
 * verdict only when the answer has travelled back across the network.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import {
  AbortedError,
  checkTransportCallOptions,
  AddressInUseError,
  type ClusterInfraError,
  type ConnectOptions,
  ConnectTimeoutError,
  type HandshakeRejectedError,
  type HandshakeRejectReason,
  InvalidAddressError,
  InvalidOptionError,
  type Listener,
  type ListenerEvents,
  LinkResetError,
  type Logger,
  type NodeIdentity,
  parseOptions,
  type TimerHandle,
  type Transport,
  type TransportCapabilities,
  TransportClosedError,
  type TransportContext,
  type TransportFactory,
} from '@clusterinfra/core';
import { EventEmitter } from 'eventemitter3';
import { z } from 'zod';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HIGH_WATER_MARK,
  DEFAULT_MAX_FRAME_SIZE,
  HIGH_WATER_MARK_LIMIT,
  MAX_FRAME_SIZE_LIMIT,
  MAX_TIMER_MS,
  MEMORY_KIND,
} from './constants.js';
import type { MemoryLink } from './link.js';
import { type ConnectAttempt, MemoryNetwork } from './network.js';

/** Options of `memory()`. */
export interface MemoryTransportOptions {
  /** The network to live in (from `createMemoryNetwork()`). Required. */
  network: MemoryNetwork;
  /** The address this node listens on and sends from. @default `node-<nodeNum>` */
  address?: string;
  /**
   * Shared secret. When either side of a connection has one, both must have
   * the same, or the handshake fails with reason `auth`. @default none
   */
  secret?: string;
  /** Largest frame `send` accepts, in bytes (at most 64 MiB). A link uses the smaller of its two ends'. @default 1 MiB */
  maxFrameSize?: number;
  /** Unconsumed bytes per link after which `send` returns false. @default 1 MiB */
  highWaterMark?: number;
  /** How long `connect` waits for the handshake, in ms (overridden per call by `timeoutMs`). @default 3000 */
  connectTimeoutMs?: number;
}

/** The schema of `MemoryTransportOptions` (exported for the docs test, not from the package entry point). */
export const transportSchema = z.strictObject({
  network: z.custom<MemoryNetwork>((v) => v instanceof MemoryNetwork, {
    message: 'expected a MemoryNetwork from createMemoryNetwork()',
  }),
  address: z.string().min(1).max(1024).optional(),
  secret: z.string().min(1).optional(),
  maxFrameSize: z.number().int().min(1).max(MAX_FRAME_SIZE_LIMIT).optional(),
  highWaterMark: z.number().int().min(1).max(HIGH_WATER_MARK_LIMIT).optional(),
  connectTimeoutMs: z.number().min(0).max(MAX_TIMER_MS).optional(),
});

const contextSchema = z.object({
  identity: z.object({
    clusterName: z.string().min(1),
    nodeNum: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
    incarnation: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  }),
});

type ResolvedOptions = z.output<typeof transportSchema>;

/** The factory `memory()` returns. */
export interface MemoryTransportFactory extends TransportFactory {
  readonly kind: 'memory';
  create(context: TransportContext): MemoryTransport;
}

/**
 * A transport factory for the in-memory network. Options are validated at
 * once (InvalidOptionError names the bad option).
 *
 * @example
 * const network = createMemoryNetwork({ seed: 1, clock: new VirtualClock() });
 * const node1 = memory({ network }).create({ identity, clock, random, logger });
 */
export function memory(options: MemoryTransportOptions): MemoryTransportFactory {
  const resolved = parseOptions('memory transport', transportSchema, options);
  return {
    kind: MEMORY_KIND,
    create: (context: TransportContext) => new MemoryTransport(resolved, context),
  };
}

/** One node's transport on a MemoryNetwork. See the Transport contract in @clusterinfra/core. */
export class MemoryTransport implements Transport {
  readonly kind = MEMORY_KIND;
  readonly capabilities: TransportCapabilities;
  readonly identity: NodeIdentity;
  /** This node's address: where it listens, and where its outbound links come from. */
  readonly address: string;
  readonly network: MemoryNetwork;
  /** @internal */
  readonly highWaterMark: number;

  private readonly connectTimeoutMs: number;
  /** SHA-256 of the secret: the secret itself is not kept. */
  readonly #secretDigest: Buffer | undefined;
  private readonly logger: Logger;
  private phase: 'open' | 'closing' | 'closed' = 'open';
  private listener: MemoryListener | undefined;
  private readonly links = new Set<MemoryLink>();
  private readonly attempts = new Set<ConnectAttempt>();
  private closing: Promise<void> | undefined;

  /** @internal Made by `memory(...).create(context)`. */
  constructor(options: ResolvedOptions, context: TransportContext) {
    parseOptions('memory transport', contextSchema, { identity: context?.identity });
    this.network = options.network;
    this.identity = context.identity;
    this.address = options.address ?? `node-${context.identity.nodeNum}`;
    this.highWaterMark = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#secretDigest = options.secret === undefined ? undefined : createHash('sha256').update(options.secret).digest();
    this.logger = context.logger.child({ component: 'transport-mem', address: this.address });
    this.capabilities = Object.freeze({
      maxFrameSize: options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE,
      nativeBulk: false,
      authentication: true,
      encryption: false,
      crashSimulation: true,
    });
    this.network.attach(this);
  }

  /** Links open (or closing) on this transport, both directions. */
  get linkCount(): number {
    return this.links.size;
  }

  /** Whether the transport was closed, destroyed or crashed. */
  get closed(): boolean {
    return this.phase !== 'open';
  }

  /**
   * Listen on this transport's address. Fails with AddressInUseError when
   * another transport (or this one) already listens there.
   */
  async listen(options: { signal?: AbortSignal } = {}): Promise<MemoryListener> {
    checkTransportCallOptions('memory transport', 'listen', options);
    if (options.signal?.aborted) throw new AbortedError('listen aborted', { cause: options.signal.reason });
    if (this.phase !== 'open') throw new TransportClosedError();
    if (!this.network.bind(this)) throw new AddressInUseError(this.address);
    const listener = new MemoryListener(this.address, () => {
      this.network.unbind(this);
      if (this.listener === listener) this.listener = undefined;
    });
    this.listener = listener;
    return listener;
  }

  /**
   * Open a link to `address`. Resolves when the listener's acceptance came
   * back; fails with ConnectionRefusedError (nothing listens),
   * HandshakeRejectedError (`by: 'remote'`), ConnectTimeoutError (e.g.
   * across a partition), AbortedError, or TransportClosedError.
   */
  async connect(address: string, options: ConnectOptions = {}): Promise<MemoryLink> {
    if (this.phase !== 'open') throw new TransportClosedError();
    if (typeof address !== 'string' || address.length === 0) {
      throw new InvalidAddressError(String(address), 'must be a non-empty string');
    }
    checkTransportCallOptions('memory transport', 'connect', options);
    const { signal } = options;
    if (signal?.aborted) throw new AbortedError('connect aborted', { cause: signal.reason });
    const timeoutMs = options.timeoutMs ?? this.connectTimeoutMs;
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0 && timeoutMs <= MAX_TIMER_MS)) {
      throw new InvalidOptionError('timeoutMs', `memory transport: invalid option timeoutMs: ${String(timeoutMs)}`);
    }
    return new Promise<MemoryLink>((resolve, reject) => {
      let timer: TimerHandle | undefined;
      const settle = (): void => {
        attempt.settled = true;
        timer?.cancel();
        signal?.removeEventListener('abort', onAbort);
        this.attempts.delete(attempt);
      };
      const attempt: ConnectAttempt & { settled: boolean } = {
        client: this,
        from: this.address,
        to: address,
        settled: false,
        link: undefined,
        succeed: (link) => {
          if (attempt.settled) return;
          settle();
          if (link.state === 'closed') {
            reject(new LinkResetError(`connection to ${address} was reset during the handshake`));
            return;
          }
          this.links.add(link);
          resolve(link);
        },
        fail: (error) => {
          if (attempt.settled) return;
          settle();
          // The listener may have accepted already: its end learns by a reset.
          attempt.link?.destroy(error);
          reject(error);
        },
      };
      const onAbort = (): void => attempt.fail(new AbortedError('connect aborted', { cause: signal?.reason }));
      this.attempts.add(attempt);
      timer = this.network.clock.setTimeout(
        () => attempt.fail(new ConnectTimeoutError(address, timeoutMs)),
        timeoutMs,
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      this.network.startConnect(attempt);
    });
  }

  /** Stop listening, fail pending connects, and close every link gracefully. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.closeGracefully();
    return this.closing;
  }

  /** Stop listening and destroy every link at once (peers see `reset`). */
  destroy(error?: ClusterInfraError): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.listener?.stop();
    this.failAttempts();
    for (const link of [...this.links]) link.destroy(error);
    this.network.detach(this);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ------------------------------------------------- called by the network

  /** @internal The listening side's handshake check; undefined admits `client`. */
  admit(client: MemoryTransport): HandshakeRejectReason | undefined {
    if (client.identity.clusterName !== this.identity.clusterName) return 'cluster-name';
    const mine = this.#secretDigest;
    const theirs = client.#secretDigest;
    if ((mine || theirs) && !(mine && theirs && timingSafeEqual(mine, theirs))) return 'auth';
    if (client.identity.nodeNum === this.identity.nodeNum) return 'identity';
    return undefined;
  }

  /** @internal */
  reportRejected(client: MemoryTransport, error: HandshakeRejectedError): void {
    this.logger.debug({ remoteAddress: client.address, reason: error.reason }, 'handshake rejected');
    this.listener?.emit('rejected', { remoteAddress: client.address, error, remote: client.identity });
  }

  /** @internal A peer passed the handshake. */
  adoptInbound(link: MemoryLink): void {
    this.links.add(link);
    this.listener?.emit('link', link);
  }

  /** @internal */
  forget(link: MemoryLink): void {
    this.links.delete(link);
  }

  /** @internal `network.crash(address)`: die without a goodbye. */
  crashNow(): void {
    if (this.phase === 'closed' && this.links.size === 0 && this.attempts.size === 0) return;
    this.phase = 'closed';
    this.listener?.stop();
    // Every link falls silent first (resets sent), then each ends: the node
    // reacts to the first ends while others are still open, and nothing it
    // sends then may leave a crashed process.
    const links = [...this.links];
    for (const link of links) link.silence();
    for (const attempt of [...this.attempts]) attempt.link?.silence();
    for (const attempt of [...this.attempts]) {
      attempt.link?.crash();
      attempt.fail(new TransportClosedError());
    }
    for (const link of links) link.crash();
    this.network.detach(this);
  }

  private async closeGracefully(): Promise<void> {
    if (this.phase === 'closed') return;
    this.phase = 'closing';
    this.listener?.stop();
    this.failAttempts();
    await Promise.all([...this.links].map((link) => link.close()));
    this.phase = 'closed';
    this.network.detach(this);
  }

  private failAttempts(): void {
    for (const attempt of [...this.attempts]) attempt.fail(new TransportClosedError());
  }
}

/** Accepts links at one address until closed. */
export class MemoryListener extends EventEmitter<ListenerEvents> implements Listener {
  readonly address: string;
  private listening = true;

  /** @internal Made by `MemoryTransport.listen()`. */
  constructor(
    address: string,
    private readonly onStop: () => void,
  ) {
    super();
    this.address = address;
  }

  /** Stop accepting (later connects are refused). Links already accepted stay open. */
  async close(): Promise<void> {
    this.stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** @internal */
  stop(): void {
    if (!this.listening) return;
    this.listening = false;
    this.onStop();
    this.emit('close');
  }
}
