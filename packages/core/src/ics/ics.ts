/**
 * ICS, the internode communication subsystem: services over channels on top
 * of any transport. This file is the endpoint: the public API, and the
 * wiring of the parts that do the work, each of which gets only what it
 * needs (shared.ts) and the parts below it:
 *
 *   registry  channels and services
 *   peer      per-node state: incarnation gate, lanes, links, dedup window
 *   flow      credit both ways, the scheduler, the one send on a link
 *   serving   dedup'd messages to pools, held past a write backlog, answered
 *   links     dial, reconnect, attach behind the incarnation gate, detach
 *   calls     ids, pending calls, deadlines, cancel, settle, observers
 *   receive   a frame from a link to the part it is for
 *   teardown  one failPeer for link loss, nodedown, a newer incarnation, close
 *
 * Invariants kept (DESIGN §5, TESTING R1–R7):
 * - every call settles exactly once (R1); a call settles as soon as its node
 *   is declared down (R2), with `never-sent` or `may-have-run`;
 * - a reply is matched by (node, incarnation, request id) and only on a link
 *   to that incarnation (R3); a request id is served at most once per sender
 *   incarnation, even if the network duplicates it (R4);
 * - a sender never has more than the receiver's window of non-priority
 *   messages in flight per channel (R5);
 * - replies, cancels, credits and calls made from inside a handler never wait
 *   for credit: they travel on the reply and priority lanes;
 * - frames from an incarnation that is not the node's current one are dropped.
 */
import { EventEmitter } from 'eventemitter3';
import { type Clock, realClock, type TimerHandle } from '../clock/index.js';
import { parseOptions } from '../config/index.js';
import type { Listener, Transport } from '../contracts/transport.js';
import { CancelledError, IcsClosedError, InvalidArgumentError } from '../errors/index.js';
import { defaultLogger, LogLimiter, type Logger } from '../logging/index.js';
import { cryptoRandom } from '../random/index.js';
import { BulkBudget } from './bulk.js';
import { CallTable, type Pending } from './calls.js';
import { Flow } from './flow.js';
import { Links } from './links.js';
import { BuiltinChannel, DEFAULTS, icsOptionsSchema, type IcsOptions, type ResolvedIcsOptions } from './options.js';
import { PeerTable } from './peer.js';
import { Receiver } from './receive.js';
import { Registry } from './registry.js';
import { Serving } from './serving.js';
import { type Env, newCounters } from './shared.js';
import { Teardown } from './teardown.js';
import type {
  CallObserver,
  CallOptions,
  CallTracer,
  IcsEvents,
  IcsStats,
  MulticastOptions,
  MulticastResult,
  RegisteredService,
  RequestHandle,
  ServiceAddress,
  ServiceRegistration,
  Settled,
} from './types.js';
import { WireStatus } from './wire/types.js';

export { channelOf, serviceId, subserviceOf } from './registry.js';

const NOTHING = (): void => {};

/** Refused connections of one kind are logged at most this often (a misconfigured peer retries many times a second). */
const REJECTED_LOG_EVERY_MS = 10_000;

export class Ics extends EventEmitter<IcsEvents> implements AsyncDisposable {
  readonly nodeNum: number;
  readonly clusterName: string;
  readonly incarnation: number;
  readonly clock: Clock;
  readonly #opts: ResolvedIcsOptions;
  readonly #log: Logger;
  readonly #env: Env;
  readonly #transport: Transport;
  readonly #registry: Registry;
  readonly #peers: PeerTable;
  readonly #bulkBudget: BulkBudget;
  readonly #serving: Serving;
  readonly #links: Links;
  readonly #calls: CallTable;
  readonly #teardown: Teardown;
  #listener: Listener | undefined;
  /** The listen under way, while `start()` runs (close waits for it). */
  #starting: Promise<Listener> | undefined;
  #state: 'new' | 'started' | 'closing' | 'closed' = 'new';
  #closing: Promise<void> | undefined;
  readonly #rejectedLog: LogLimiter;

  constructor(options: IcsOptions) {
    super();
    const opts = (this.#opts = parseOptions('ics', icsOptionsSchema, options));
    this.nodeNum = opts.nodeNum;
    this.clusterName = opts.clusterName;
    this.clock = opts.clock ?? realClock;
    const random = opts.random ?? cryptoRandom;
    this.#log = (opts.logger ?? defaultLogger()).child({ component: 'ics', node: this.nodeNum });
    this.#rejectedLog = new LogLimiter(() => this.clock.now(), REJECTED_LOG_EVERY_MS);
    // Incarnations grow across restarts (wall-clock milliseconds, scaled),
    // with a random tail so that two starts in one millisecond differ.
    this.incarnation = opts.incarnation ?? Math.floor(this.clock.wallNow()) * 1000 + random.int(1000) + 1;
    const env: Env = (this.#env = {
      nodeNum: this.nodeNum,
      incarnation: this.incarnation,
      clock: this.clock,
      random,
      log: this.#log,
      opts,
      counters: newCounters(),
      emit: this.emit.bind(this),
      isOpen: () => this.#state === 'new' || this.#state === 'started',
      hooks: { tracer: undefined },
    });
    const registry = (this.#registry = new Registry(this.nodeNum));
    const builtins: [string, number][] = [
      ['clms', BuiltinChannel.clms],
      ['clms-probe', BuiltinChannel.clmsProbe],
      ['keyservice', BuiltinChannel.keyService],
      ['default', BuiltinChannel.default],
    ];
    for (const [name, number] of builtins) registry.addChannel({ name, number, window: opts.window });
    for (const c of opts.channels) registry.addChannel({ name: c.name, number: c.number, window: c.window ?? opts.window });
    this.#transport = opts.transport.create({
      identity: { clusterName: this.clusterName, nodeNum: this.nodeNum, incarnation: this.incarnation },
      clock: this.clock,
      random,
      logger: this.#log.child({ component: 'transport' }),
    });
    this.#bulkBudget = new BulkBudget(opts.bulkReceiveBudgetTotal);
    const peers = (this.#peers = new PeerTable({
      bulkThreshold: opts.bulkThreshold,
      dedupWindow: opts.dedupWindow,
      bulkLimits: {
        perPeer: opts.bulkReceiveBudget,
        streamCost: opts.bulkStreamCost,
        maxStreams: opts.maxBulkStreamsPerPeer,
        maxRefsPerMessage: opts.maxBulkRefsPerMessage,
      },
      bulkBudget: this.#bulkBudget,
      sendQueueMessages: opts.sendQueueMessages,
      sendQueueBytes: opts.sendQueueBytes,
    }));
    const flow = new Flow(env, registry);
    const serving = (this.#serving = new Serving(env, registry, peers, flow));
    // Links report up through hooks: the receiver and teardown sit above them.
    let receiver: Receiver | undefined;
    let teardown: Teardown | undefined;
    const links = (this.#links = new Links(env, this.#transport, peers, flow, serving, {
      frame: (peer, link, bytes) => receiver!.onFrame(peer, link, bytes),
      newer: (peer, previous) => teardown!.newerIncarnation(peer, previous),
      lost: (peer, link, info) => teardown!.linkLost(peer, link, info),
      up: (peer) => teardown!.relinked(peer),
    }));
    const calls = (this.#calls = new CallTable(env, registry, peers, flow, serving, links));
    receiver = new Receiver(env, registry, flow, serving, calls);
    teardown = this.#teardown = new Teardown(env, peers, serving, links, calls);
  }

  /** The address other nodes reach this one at (after `start`). */
  get address(): string | undefined {
    return this.#listener?.address;
  }

  /** Start listening. Calls work without it (outbound only). */
  async start(): Promise<this> {
    if (this.#state !== 'new') {
      if (this.#state === 'started') return this;
      throw new IcsClosedError();
    }
    this.#state = 'started';
    this.#starting = this.#transport.listen();
    const listener = await this.#starting;
    // Closed while it began to listen: let the address go again.
    if (this.#state !== 'started') {
      await listener.close();
      throw new IcsClosedError();
    }
    this.#listener = listener;
    listener.on('link', (link) => this.#links.attach(link));
    listener.on('rejected', (info) => {
      // A peer with the wrong secret retries many times a second: one line
      // per kind of refusal every REJECTED_LOG_EVERY_MS, with the count held back.
      const reason = (info.error as { reason?: string }).reason ?? info.error.code;
      const { ok, suppressed } = this.#rejectedLog.take(reason);
      if (ok) this.#log.warn({ remote: info.remoteAddress, node: info.remote?.nodeNum, code: info.error.code, reason, suppressed }, 'refused a connection: %s', info.error.message);
      this.emit('rejected', info);
    });
    return this;
  }

  // ------------------------------------------------------------ services

  /** @internal The services registered here (CLMS carries them to the node's next incarnation). */
  registrations(): ServiceRegistration[] {
    return this.#registry.registrations();
  }

  /** Register a service with raw handlers (the typed `serve` builds on this). */
  registerService(reg: ServiceRegistration): RegisteredService {
    this.#assertOpen();
    return this.#registry.register(reg);
  }

  /** Resolve a service address to its id. */
  serviceId(address: ServiceAddress): number {
    return this.#registry.serviceId(address);
  }

  // ------------------------------------------------------------ calling

  /** Synchronous RPC: resolves with the result, rejects with a typed error. */
  call<T = unknown>(node: number, service: ServiceAddress, method: string, args?: unknown, options?: CallOptions): Promise<T> {
    const c = this.#nextCall;
    c.node = node;
    c.service = service;
    c.method = method;
    c.args = args;
    c.options = options;
    return new Promise<T>(this.#startCall);
  }

  /** The arguments of the call being started: `call` hands them to `#startCall` without a closure per call. */
  readonly #nextCall: { node: number; service: ServiceAddress; method: string; args: unknown; options: CallOptions | undefined } = {
    node: 0,
    service: 0,
    method: '',
    args: undefined,
    options: undefined,
  };

  /** The executor of every `call`'s promise: it takes its arguments first (nothing before it can start another call). */
  readonly #startCall = (resolve: (v: never) => void, reject: (e: Error) => void): void => {
    const c = this.#nextCall;
    const { node, service, method, args, options } = c;
    c.args = c.options = undefined; // not kept alive by the endpoint
    this.#calls.start(node, service, method, args, options, resolve as (v: unknown) => void, reject);
  };

  /**
   * Asynchronous request/response: the request is sent now; the handle's
   * `result()` gives the outcome whenever the caller asks (or never).
   */
  request<T = unknown>(node: number, service: ServiceAddress, method: string, args?: unknown, options?: CallOptions): RequestHandle<T> {
    let settled = false;
    let pending: Pending | undefined;
    const promise = new Promise<T>((resolve, reject) => {
      pending = this.#calls.start(node, service, method, args, options, resolve as (v: unknown) => void, reject);
    });
    // The handle never produces an unhandled rejection on its own.
    promise.then(
      () => (settled = true),
      () => (settled = true),
    );
    return {
      node,
      result: () => promise,
      cancel: (reason?: unknown) => {
        if (pending) this.#calls.cancel(pending, new CancelledError(`${pending.what()} on node ${node} cancelled`, { cause: reason }), WireStatus.CANCELLED);
      },
      get settled() {
        return settled;
      },
    };
  }

  /**
   * A one-way message, awaitable: resolves once the message has been handed
   * to the link (which paces a sender to the receiver's window), rejects
   * if it cannot be sent.
   */
  send(node: number, service: ServiceAddress, method: string, args?: unknown): Promise<void> {
    return new Promise((resolve, reject) => {
      try {
        this.#calls.oneWay(node, service, method, args, resolve, reject);
      } catch (err) {
        reject(err);
      }
    });
  }

  /**
   * A one-way message, not awaited. Returns false when the channel to that
   * node is throttled (the message is queued all the same); wait for the
   * `drain` event before sending more. Throws when the queue is full.
   */
  trySend(node: number, service: ServiceAddress, method: string, args?: unknown): boolean {
    // Nobody waits for it: a message that cannot be delivered is counted and logged, never lost silently.
    return this.#calls.oneWay(node, service, method, args, NOTHING, (err) => {
      this.#env.counters.oneWayDropped++;
      this.#log.warn({ node, code: err.code }, 'one-way message dropped: %s', err.message);
    });
  }

  /** Call the same method on several nodes; per-node results. */
  async multicast<T = unknown>(
    nodes: readonly number[],
    service: ServiceAddress,
    method: string,
    args?: unknown,
    options: MulticastOptions = {},
  ): Promise<MulticastResult<T>> {
    if (typeof nodes !== 'object' || nodes === null || typeof (nodes as Iterable<number>)[Symbol.iterator] !== 'function') {
      throw new InvalidArgumentError('multicast: nodes must be an array of node numbers', { details: [{ path: 'nodes', message: 'must be an array' }] });
    }
    const until = options.until ?? 'all';
    if (until !== 'all' && until !== 'first' && until !== 'majority') throw new InvalidArgumentError(`multicast: until must be 'all', 'first' or 'majority', got ${String(until)}`, { details: [{ path: 'until', message: 'must be all, first or majority' }] });
    const results = new Map<number, Settled<T>>();
    const unique = [...new Set(nodes)];
    const need = until === 'first' ? 1 : until === 'majority' ? Math.floor(unique.length / 2) + 1 : unique.length;
    if (unique.length === 0) return { results, satisfied: until === 'all' };
    return new Promise((resolve) => {
      let ok = 0;
      let failed = 0;
      let done = false;
      const check = (): void => {
        if (done) return;
        const allSettled = ok + failed === unique.length;
        // 'all' waits for every call; the others stop as soon as the
        // outcome is known either way.
        if (allSettled || (until !== 'all' && (ok >= need || unique.length - failed < need))) {
          done = true;
          resolve({ results: new Map(results), satisfied: ok >= need });
        }
      };
      for (const node of unique) {
        this.call<T>(node, service, method, args, options).then(
          (value) => {
            results.set(node, { ok: true, value });
            ok++;
            check();
          },
          (error: Error) => {
            results.set(node, { ok: false, error });
            failed++;
            check();
          },
        );
      }
    });
  }

  /**
   * Be told of every client call this endpoint settles (success or typed
   * error), with its service, status and duration: the hook behind RPC
   * metrics. Observers run synchronously on the settling path, so they must
   * be cheap; one that throws is ignored. Returns the function that stops it.
   */
  observeCalls(observer: CallObserver): () => void {
    return this.#calls.observeCalls(observer);
  }

  /**
   * Install call-tracing hooks (an OpenTelemetry adapter such as
   * `@clusterinfra/otel` uses this): `onCall` for every client call this
   * endpoint starts (its headers travel in the Request), `onServe` for every
   * Request this endpoint serves. One tracer per endpoint; a second one
   * throws InvalidArgumentError until the first is removed. Without one,
   * nothing is traced and Requests carry no header field. Returns the
   * function that removes it (calls under way still end their traces).
   */
  instrument(tracer: CallTracer): () => void {
    const hooks = this.#env.hooks;
    if (hooks.tracer) throw new InvalidArgumentError('a call tracer is installed already on this endpoint');
    hooks.tracer = tracer;
    return () => {
      if (hooks.tracer === tracer) hooks.tracer = undefined;
    };
  }

  // ------------------------------------------------------------ nodedown

  /**
   * Node `node` (the given incarnation, or the current one) is down. Every
   * pending call to it settles at once with NodeDownError, queued messages
   * to it are dropped, its links are destroyed, messages from it are no
   * longer delivered, and handlers serving it are aborted. Resolves when
   * those handlers have finished: CLMS uses this for its cleanup barrier.
   */
  nodeDown(node: number, incarnation?: number): Promise<void> {
    return this.#teardown.nodeDown(node, incarnation);
  }

  // ------------------------------------------------------------ lifecycle

  /** Close gracefully: stop accepting, fail what is pending, close links. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#doClose();
    return this.#closing;
  }

  async #doClose(): Promise<void> {
    this.#state = 'closing';
    // A start under way finishes first (and, seeing us closing, lets go of what it bound).
    await this.#starting?.catch(() => undefined);
    this.#links.destroyHeld();
    await this.#listener?.close();
    const teardowns: Promise<void>[] = [];
    for (const peer of this.#peers.values()) {
      teardowns.push(this.#teardown.failPeer(peer, { error: () => new IcsClosedError(), destroyLinks: false }));
    }
    // Handlers were aborted; one that ignores its signal must not hold the
    // node open for ever.
    let grace: TimerHandle | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      grace = this.clock.setTimeout(() => resolve(true), this.#opts.closeGraceMs);
      grace.unref();
    });
    if (await Promise.race([Promise.all(teardowns).then(() => false), timedOut])) {
      this.#log.warn({ graceMs: this.#opts.closeGraceMs }, 'closing with handlers still running: they ignored their abort signal');
    }
    grace?.cancel();
    await this.#transport.close();
    this.#state = 'closed';
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Counters and gauges for metrics. */
  stats(): IcsStats {
    let queued = 0;
    let bulkStreams = 0;
    for (const p of this.#peers.values()) {
      queued += p.lanes.count();
      bulkStreams += p.bulkIn.pendingStreams;
    }
    return {
      ...this.#env.counters,
      pendingCalls: this.#calls.pending,
      queuedMessages: queued,
      bulkBytesPending: this.#bulkBudget.used,
      bulkStreamsPending: bulkStreams,
      peers: this.#peers.size,
      receivedBytesHeld: this.#serving.heldBytes,
    };
  }

  /** Handlers running or queued for requests from `node` (for tests and tools). */
  servingCount(node: number): number {
    return this.#peers.find(node)?.serving.size ?? 0;
  }

  #assertOpen(): void {
    if (!this.#env.isOpen()) throw new IcsClosedError();
  }

  // ------------------------------------------------------------ peers and links

  /**
   * Open a link to whatever node listens at `address` and return its node
   * number (discovery: probing configured addresses before membership says
   * who is where). Reuses nothing: the link joins the node's links as usual.
   */
  connectAddress(address: string, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<number> {
    try {
      this.#assertOpen();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#links.connectAddress(address, options);
  }

  /** Whether a link to `node` is open now. */
  isConnected(node: number): boolean {
    return this.#peers.find(node)?.link?.state === 'open';
  }

  /** The incarnation of `node` this endpoint talks to (its calls go there), once a link brought it; undefined before. */
  peerIncarnation(node: number): number | undefined {
    return this.#peers.find(node)?.incarnation;
  }
}

/** Create an ICS endpoint. Call `start()` to accept links. */
export function createIcs(options: IcsOptions): Ics {
  return new Ics(options);
}

export { DEFAULTS as ICS_DEFAULTS };
