/**
 * The lower-layer transport contract. ICS is written against this and never
 * against a concrete transport; every transport runs the compliance suite
 * exported from `@clusterinfra/core/testing`.
 *
 * Guarantees a transport gives for each link:
 * - whole frames: a frame sent is delivered as one byte array of the same
 *   length and content, never split or merged;
 * - reliable and in order: frames arrive in the order sent, without gaps or
 *   duplicates, until the link closes (a closed link delivers nothing more);
 * - authenticated: no frame is delivered (or even parsed beyond its length)
 *   before the handshake has checked the cluster name, the protocol version
 *   and, when configured, the shared secret or certificates;
 * - backpressure: `send` returns false once the link's buffer passes its
 *   high-water mark, and `drain` fires when it is below it again;
 * - one `close` event per link, with the reason.
 *
 * Frames are delivered only while the link is flowing: a link starts
 * paused, and frames that arrive before `resume()` wait for it (transports
 * bound that wait by not reading from the network while paused).
 */
import type { EventEmitter } from 'eventemitter3';
import type { Clock } from '../clock/index.js';
import type { ClusterInfraError } from '../errors/index.js';
import type { Logger } from '../logging/index.js';
import type { RandomSource } from '../random/index.js';

/** Who a node is. `incarnation` is new at every start of the node. */
export interface NodeIdentity {
  readonly clusterName: string;
  /** Positive integer, fixed per node. */
  readonly nodeNum: number;
  /** Positive safe integer, new at every start, so a restart is never confused with its former self. */
  readonly incarnation: number;
}

/** What the node gives a transport when it creates it. */
export interface TransportContext {
  readonly identity: NodeIdentity;
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly logger: Logger;
}

/**
 * A transport is a value the user passes in (`tcp({...})`, `memory({...})`);
 * the node calls `create` with its identity, clock, randomness and logger.
 */
export interface TransportFactory {
  /** Short name, e.g. `tcp` or `memory`. */
  readonly kind: string;
  create(context: TransportContext): Transport;
  /**
   * Check an address of this transport before it is ever dialled (a node's
   * `seeds` are checked when the node is created, so `'localhost'` without
   * a port fails at once): what is wrong with it, or undefined when it is
   * fine. Optional: without it, a bad address fails only when dialled.
   */
  checkAddress?(address: string): string | undefined;
}

export interface TransportCapabilities {
  /** Largest frame `send` accepts, in bytes. */
  readonly maxFrameSize: number;
  /** The transport moves bulk (out-of-line) data natively, e.g. by RDMA; otherwise ICS chunks it. */
  readonly nativeBulk: boolean;
  /** The transport can refuse peers that do not prove a shared secret or certificate. */
  readonly authentication: boolean;
  /** Frames are encrypted on the wire. */
  readonly encryption: boolean;
  /** The transport can simulate the abrupt death of a node (compliance "remote crash"). */
  readonly crashSimulation: boolean;
}

export interface ConnectOptions {
  signal?: AbortSignal;
  /** Overrides the transport's connect timeout for this call. */
  timeoutMs?: number;
}

export interface Transport extends AsyncDisposable {
  readonly kind: string;
  readonly capabilities: TransportCapabilities;
  readonly identity: NodeIdentity;
  /** Start accepting links. One listener per transport. */
  listen(options?: { signal?: AbortSignal }): Promise<Listener>;
  /**
   * Open a link to `address`; resolves after the handshake succeeded. The
   * listener's `link` for it may come a moment later (after the last
   * handshake message reaches it), but always before any frame sent on it.
   */
  connect(address: string, options?: ConnectOptions): Promise<Link>;
  /** Stop listening and close every link gracefully. Idempotent. */
  close(): Promise<void>;
  /** Stop listening and destroy every link at once. */
  destroy(error?: ClusterInfraError): void;
}

/** A connection refused during its handshake, reported for observability. */
export interface RejectedConnection {
  readonly remoteAddress: string;
  readonly error: ClusterInfraError;
  readonly remote?: Partial<NodeIdentity>;
}

export interface ListenerEvents {
  /** A peer connected and passed the handshake. Attach listeners, then `resume()`. */
  link: (link: Link) => void;
  /** A peer was refused (wrong cluster, wrong secret, limits, bad bytes). */
  rejected: (info: RejectedConnection) => void;
  close: () => void;
}

export interface Listener extends EventEmitter<ListenerEvents>, AsyncDisposable {
  /** The address peers connect to, in the transport's own format. */
  readonly address: string;
  /** Stop accepting. Links already accepted stay open. */
  close(): Promise<void>;
}

/**
 * Why a link closed:
 * - `closed`: we closed it gracefully (everything sent before was delivered);
 * - `destroyed`: we destroyed it (frames still buffered may be lost);
 * - `remote-closed`: the peer closed gracefully after sending its last frame;
 * - `reset`: the link was lost without a graceful close (peer crash, network);
 * - `error`: a protocol violation or local failure; `error` says which.
 */
export type LinkCloseReason = 'closed' | 'destroyed' | 'remote-closed' | 'reset' | 'error';

export interface LinkCloseInfo {
  readonly reason: LinkCloseReason;
  readonly error?: ClusterInfraError;
}

export interface LinkEvents {
  /** One whole frame, in order. The array belongs to the receiver. */
  frame: (frame: Uint8Array) => void;
  /** The send buffer dropped below the high-water mark. */
  drain: () => void;
  /** Emitted exactly once. */
  close: (info: LinkCloseInfo) => void;
}

export type LinkState = 'open' | 'closing' | 'closed';

export interface Link extends EventEmitter<LinkEvents>, AsyncDisposable {
  /** Unique within the transport instance. */
  readonly id: string;
  readonly direction: 'inbound' | 'outbound';
  readonly local: NodeIdentity;
  readonly remote: NodeIdentity;
  readonly remoteAddress: string;
  readonly state: LinkState;
  /**
   * Bytes accepted by `send` that the transport still holds: not yet taken
   * by the network (TCP: not yet written to the kernel) or, for an in-process
   * network, not yet consumed by the peer. A paused receiver makes it grow
   * until `send` returns false.
   */
  readonly bufferedBytes: number;
  /** Bytes buffered before `send` returns false (the transport's option, until changed). */
  readonly highWaterMark: number;
  /**
   * Change the high-water mark of this link. ICS lowers it so that frames it
   * raised to priority wait behind little data already handed to the link.
   */
  setHighWaterMark(bytes: number): void;
  /** True after `send` returned false, until `drain`. */
  readonly needDrain: boolean;
  /** Whether frames are being delivered (false until `resume()`). */
  readonly flowing: boolean;
  /**
   * Queue `frame` for delivery. Returns false when the buffer is past its
   * high-water mark: the frame is still queued, but the caller should wait
   * for `drain`. Throws FrameTooLargeError for an oversize frame (the link
   * stays open) and LinkClosedError once the link is closing or closed.
   * The frame must not be modified after it is passed in.
   */
  send(frame: Uint8Array): boolean;
  /**
   * Send one frame made of `parts`, in order, as if they were joined: the
   * receiver gets a single frame. Transports that can write the parts
   * without joining them (TCP: writev) avoid a copy of large payloads.
   * Same return value and errors as `send`.
   */
  sendv(parts: readonly Uint8Array[]): boolean;
  /** Resolves at the next `drain` (at once when not needed); rejects if the link closes first. */
  waitDrain(signal?: AbortSignal): Promise<void>;
  /** Start (or restart) delivering frames. */
  resume(): void;
  /** Stop delivering frames; the transport stops reading from the network. */
  pause(): void;
  /**
   * Flush what is buffered, tell the peer, and close. Resolves with the
   * close info. Frames already received are delivered first, so a link that
   * is paused and never resumed finishes its graceful close only on
   * `resume()` or `destroy()`.
   */
  close(): Promise<LinkCloseInfo>;
  /** Close at once; buffered frames may be lost. The peer sees `reset`. */
  destroy(error?: ClusterInfraError): void;
  /** Resolves when the link has closed, for any reason. */
  readonly closed: Promise<LinkCloseInfo>;
}
