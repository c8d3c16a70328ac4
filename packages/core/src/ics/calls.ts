/**
 * The call table: message ids, calls waiting for their answer, their
 * deadlines and cancellation, how each settles (exactly once, R1), who is
 * told (call observers) and what is counted. One-way messages start here
 * too: they take their ids from the same sequence.
 *
 * A call to this node itself never touches a link: it is copied as a link
 * would copy it and handed to the local pool (serving), which answers it
 * through LocalCaller.
 */
import { canaries } from '../canaries.js';
import type { TimerHandle } from '../clock/index.js';
import type { Link } from '../contracts/transport.js';
import { CancelledError, type ClusterInfraError, DeadlineExceededError, IcsClosedError, MessageTooLargeError, ResourceExhaustedError } from '../errors/index.js';
import { type OutStream, substituteBulk, watchStreams } from './bulk.js';
import { handlerContext } from './context.js';
import type { Flow } from './flow.js';
import type { Links } from './links.js';
import { type DeadlineEntry, type DeadlineList, Deadlines } from './deadlines.js';
import { checkCallOptions, checkNode, checkServiceAddress } from './options.js';
import { bulkBytesOf, EMPTY, type Outgoing, type Peer, type PeerTable } from './peer.js';
import { channelOf, type Registry, subserviceOf } from './registry.js';
import { callerGaveUp, type Incoming, type LocalCaller, type Serving } from './serving.js';
import { dropped, type Env, traceOutcome, tryTrace } from './shared.js';
import { errorToWire, type WireError, wireToError } from './status.js';
import type { CallObserver, CallOptions, CallRecord, CallTrace, ServiceAddress } from './types.js';
import { decodeFrame, encodeFrame } from './wire/frame.js';
import { BulkRef, FrameType, type OneWayFrame, type RequestFrame, type ResponseFrame, WireStatus } from './wire/types.js';

/** How long a cancelled call that went out waits for its Response (which returns its credit) before it is dropped. */
const CANCELLED_CALL_LINGER_MS = 5_000;

/** What a call needs of its table: where its deadline, aborted signals, drop from the lanes and local answer go. */
interface CallSink {
  aborted(p: Pending, reason: unknown): void;
  dropped(p: Pending, err: ClusterInfraError): void;
  answeredLocally(p: Pending, error: WireError | undefined, value: unknown): void;
}

/**
 * A call waiting for its Response. It is also the queued frame of its
 * request (one object per call: the hot path allocates little).
 */
export class Pending implements Outgoing, LocalCaller, DeadlineEntry {
  id = 0;
  bytes: Uint8Array = EMPTY;
  /** Channel whose credit the request needs; undefined when raised to priority. */
  channel: number | undefined = undefined;
  streams: OutStream[] | undefined = undefined;
  sent = false;
  settled = false;
  /** Incarnation the request went to (known once sent). */
  incarnation: number | undefined = undefined;
  /** Bytes of channel credit the request holds until its Response returns it. */
  charged = 0;
  /** The link it went out on; its loss fails the call. */
  link: Link | undefined = undefined;
  /** A cancelled call's wait for its Response (its deadline is in the table's Deadlines). */
  timer: TimerHandle | undefined = undefined;
  deadline = 0;
  dlPrev: DeadlineEntry | undefined = undefined;
  dlNext: DeadlineEntry | undefined = undefined;
  dlList: DeadlineList | undefined = undefined;
  /** Clock time the call started (for call observers). */
  startedAt = 0;
  /** A call to this node itself: the message serving it (no link, no frame on the wire). */
  served: Incoming | undefined = undefined;
  /** What the call tracer keeps for it (`Ics.instrument`); undefined when nothing traces calls. */
  trace: CallTrace | undefined = undefined;
  private watched: AbortSignal[] | undefined = undefined;
  private abortListener: (() => void) | undefined = undefined;

  constructor(
    private readonly table: CallSink,
    readonly peer: Peer,
    readonly service: number,
    readonly method: string,
    private readonly resolveFn: (v: unknown) => void,
    private readonly rejectFn: (e: Error) => void,
  ) {}

  /** Names the call in error messages (built only when one is needed). */
  what(): string {
    return `${this.method} (service ${channelOf(this.service)}/${subserviceOf(this.service)})`;
  }

  watch(signal: AbortSignal): void {
    this.abortListener ??= () => {
      const reason = this.watched?.find((s) => s.aborted)?.reason;
      this.table.aborted(this, reason);
    };
    (this.watched ??= []).push(signal);
    signal.addEventListener('abort', this.abortListener, { once: true });
  }

  onSent(): void {
    this.sent = true;
    this.link = this.peer.link;
    this.incarnation = this.peer.incarnation;
    if (this.channel !== undefined) this.charged = this.bytes.byteLength;
  }

  onDrop(err: ClusterInfraError): void {
    this.table.dropped(this, err);
  }

  answer(error: WireError | undefined, value: unknown): void {
    this.table.answeredLocally(this, error, value);
  }

  /** Settle once: stop the timer, stop watching signals, reject with `error` or resolve with `value`. */
  settle(error: Error | undefined, value?: unknown): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.timer?.cancel();
    if (this.watched) for (const s of this.watched) s.removeEventListener('abort', this.abortListener!);
    if (error !== undefined) this.rejectFn(error);
    else this.resolveFn(value);
    return true;
  }
}

export class CallTable implements CallSink {
  /**
   * Message ids, one sequence for all peers: a peer forgotten and met again
   * must never see an id it already had from this incarnation (its
   * duplicate window would drop the message).
   */
  private nextId = 1;
  private pendingTotal = 0;
  /** Told of every settled client call (metrics); empty in most programs. */
  private readonly observers = new Set<CallObserver>();
  /** The deadlines of the calls waiting for their answer. */
  private readonly deadlines: Deadlines<Pending>;

  constructor(
    private readonly env: Env,
    private readonly registry: Registry,
    private readonly peers: PeerTable,
    private readonly flow: Flow,
    private readonly serving: Serving,
    private readonly links: Links,
  ) {
    this.deadlines = new Deadlines<Pending>(env.clock, (p) => this.expired(p));
  }

  /** Calls waiting for their answer, all peers. */
  get pending(): number {
    return this.pendingTotal;
  }

  /** Start a call; returns its table entry, or undefined when it failed at once. */
  start(
    node: number,
    service: ServiceAddress,
    method: string,
    args: unknown,
    options: CallOptions | undefined,
    resolve: (v: unknown) => void,
    reject: (e: Error) => void,
  ): Pending | undefined {
    const { env } = this;
    env.counters.callsStarted++;
    let svc: number;
    try {
      if (!env.isOpen()) throw new IcsClosedError();
      checkNode(node);
      checkServiceAddress(service);
      checkCallOptions(options);
      svc = typeof service === 'number' ? service : this.registry.serviceId(service);
    } catch (err) {
      env.counters.callsFailed++;
      reject(err as Error);
      return undefined;
    }
    const ctx = handlerContext.getStore();
    const inHandler = this.serving.owns(ctx);
    const now = env.clock.now();
    let deadline = now + (options?.timeoutMs ?? env.opts.defaultTimeoutMs);
    if (inHandler && ctx.deadline !== undefined && ctx.deadline < deadline) deadline = ctx.deadline;
    const own = options?.signal;
    const inherited = inHandler ? ctx.signal : undefined;
    const peer = this.peers.get(node);
    const p = new Pending(this, peer, svc, method, resolve, reject);
    p.startedAt = now;
    const aborted = own?.aborted ? own : inherited?.aborted ? inherited : undefined;
    if (aborted) {
      this.settle(p, new CancelledError(`${p.what()} cancelled before it was sent`, { cause: aborted.reason }));
      return undefined;
    }
    if (this.pendingTotal >= env.opts.maxPendingCalls) {
      this.settle(p, new ResourceExhaustedError(`too many pending calls (${env.opts.maxPendingCalls})`));
      return undefined;
    }
    const request: RequestFrame = {
      type: FrameType.Request,
      channel: channelOf(svc),
      service: svc,
      method,
      id: this.allocateId(peer),
      priority: inHandler,
      timeoutMs: Math.max(1, Math.ceil(deadline - now)),
      body: args ?? null,
    };
    const tracer = env.hooks.tracer;
    if (tracer?.onCall) {
      p.trace = tryTrace(() => tracer.onCall!({ node, channel: this.registry.channelName(channelOf(svc)), subservice: subserviceOf(svc), method }));
      if (p.trace?.headers) request.headers = p.trace.headers;
    }
    if (options?.headers) request.headers = { ...request.headers, ...options.headers };
    p.id = request.id;
    if (node === env.nodeNum) return this.startLocal(p, request, now, deadline - now, own, inherited);
    try {
      p.bytes = peer.encode(request);
      p.streams = peer.takeStreams();
      if (p.bytes.byteLength > env.opts.maxMessageSize) throw new MessageTooLargeError(p.bytes.byteLength, env.opts.maxMessageSize);
    } catch (err) {
      this.settle(p, err as Error);
      return undefined;
    }
    p.channel = inHandler ? undefined : channelOf(svc);
    this.register(p, now, deadline - now, own, inherited);
    try {
      this.send(peer, p, inHandler ? 'priority' : 'channel');
    } catch (err) {
      this.forget(p);
      this.settle(p, err as Error);
    }
    return p;
  }

  /** Enter a call in the table, with its deadline and the signals that cancel it. */
  private register(p: Pending, now: number, timeoutMs: number, own: AbortSignal | undefined, inherited: AbortSignal | undefined): void {
    p.peer.pending.set(p.id, p);
    this.pendingTotal++;
    this.deadlines.add(p, now, timeoutMs);
    if (own) p.watch(own);
    if (inherited) p.watch(inherited);
  }

  /**
   * A call to this node itself: no link and no frame, but the same copy of
   * the arguments and result, size limit, deadline, cancellation, handler
   * pool, priority and errors as a call to another node.
   */
  private startLocal(p: Pending, frame: RequestFrame, now: number, timeoutMs: number, own: AbortSignal | undefined, inherited: AbortSignal | undefined): Pending | undefined {
    let request: { frame: RequestFrame; size: number };
    try {
      request = this.copyLocal(frame);
    } catch (err) {
      this.settle(p, err as Error);
      return undefined;
    }
    p.sent = true;
    // Armed before the handler may run (and finish) synchronously.
    this.register(p, now, timeoutMs, own, inherited);
    const err = this.serving.submit(p.peer, undefined, request.frame, request.size, p);
    if (err) this.answeredLocally(p, errorToWire(err));
    return p;
  }

  /**
   * What a link would make of `frame`: encoded (large binary values taken
   * out of line), held to maxMessageSize, decoded into a fresh copy with the
   * out-of-line values copied back in. A call to this node thus sees the
   * same values, limits and encoding errors as a call to another.
   */
  private copyLocal<F extends RequestFrame | OneWayFrame | ResponseFrame>(frame: F): { frame: F; size: number } {
    const taken: Uint8Array[] = [];
    let size = 0;
    const bytes = encodeFrame(frame, {
      outOfLine: {
        threshold: this.env.opts.bulkThreshold,
        take: (data) => {
          taken.push(data);
          size += data.byteLength;
          return new BulkRef(taken.length - 1, data.byteLength);
        },
      },
    });
    const max = this.env.opts.maxMessageSize;
    if (bytes.byteLength > max) throw new MessageTooLargeError(bytes.byteLength, max);
    const copy = decodeFrame(bytes.slice()).frame as F;
    if (taken.length > 0) copy.body = substituteBulk(copy.body, (ref) => Buffer.from(taken[ref.stream]!));
    return { frame: copy, size: size + bytes.byteLength };
  }

  /** Settle a call to this node with its handler's outcome (copied as a Response would be). */
  answeredLocally(p: Pending, error: WireError | undefined, value?: unknown): void {
    // Cancelled or past its deadline: settled (and forgotten) already.
    if (p.settled) return;
    this.forget(p);
    let result: unknown;
    if (error === undefined) {
      try {
        result = this.copyLocal<ResponseFrame>({ type: FrameType.Response, id: p.id, status: WireStatus.OK, body: value }).frame.body;
      } catch (err) {
        error = { status: WireStatus.INTERNAL, message: `result not sendable: ${errorToWire(err).message}` };
      }
    }
    this.settle(p, error && wireToError(error.status, error, this.env.nodeNum, p.what()), result);
  }

  /**
   * A one-way message to `node`. `onSent` once it was handed to a link (or
   * the local pool), `onDrop` if it cannot be; throws what can be told at
   * once. Returns false when its channel is throttled (queued all the same).
   */
  oneWay(node: number, service: ServiceAddress, method: string, args: unknown, onSent: () => void, onDrop: (err: ClusterInfraError) => void): boolean {
    const { env } = this;
    if (!env.isOpen()) throw new IcsClosedError();
    checkNode(node);
    checkServiceAddress(service);
    const svc = this.registry.serviceId(service);
    const inHandler = this.serving.owns(handlerContext.getStore());
    const peer = this.peers.get(node);
    const frame: OneWayFrame = {
      type: FrameType.OneWay,
      channel: channelOf(svc),
      service: svc,
      id: this.allocateId(peer),
      method,
      priority: inHandler,
      body: args ?? null,
    };
    if (node === env.nodeNum) {
      // To this node itself: served at once by the local pool, never queued.
      const local = this.copyLocal(frame);
      const err = this.serving.submit(peer, undefined, local.frame, local.size);
      if (err) {
        dropped(env, peer.nodeNum, err.message);
        onDrop(err);
      } else onSent();
      return true;
    }
    const bytes = peer.encode(frame);
    const streams = peer.takeStreams();
    if (bytes.byteLength > env.opts.maxMessageSize) throw new MessageTooLargeError(bytes.byteLength, env.opts.maxMessageSize);
    const channel = channelOf(svc);
    const out: Outgoing = { bytes, channel: inHandler ? undefined : channel, onSent, onDrop };
    if (streams) {
      // Sent once its values are: a value lost on the way fails the message.
      watchStreams(streams, onSent, onDrop);
      Object.assign(out, { streams, bulkBytes: bulkBytesOf(streams), onSent: undefined });
    }
    this.send(peer, out, inHandler ? 'priority' : 'channel');
    if (inHandler) return true;
    const flowing = peer.lanes.waiting(channel) === 0;
    if (!flowing) peer.wantDrain.add(channel);
    return flowing;
  }

  /** Queue a message for `peer`: sent now when it has a link, else once the link it dials is up. */
  private send(peer: Peer, out: Outgoing, lane: 'priority' | 'channel'): void {
    const linked = peer.link !== undefined;
    this.flow.enqueue(peer, out, lane);
    if (!linked) this.links.ensure(peer);
  }

  private allocateId(peer: Peer): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
      if (!peer.pending.has(id)) return id;
    }
  }

  // ------------------------------------------------------------ settling

  /** Settle `p`: rejected with `error`, else resolved with `value` (no object per outcome). */
  private settle(p: Pending, error: Error | undefined, value?: unknown): void {
    if (!p.settle(error, value)) return;
    this.deadlines.remove(p);
    if (error !== undefined) this.env.counters.callsFailed++;
    else this.env.counters.callsSucceeded++;
    const trace = p.trace;
    if (trace) tryTrace(() => trace.end(error !== undefined ? traceOutcome(error, false) : traceOutcome(undefined, true)));
    if (this.observers.size > 0) this.notify(p, error);
  }

  /** Be told of every call settled; returns the function that stops it. */
  observeCalls(observer: CallObserver): () => void {
    this.observers.add(observer);
    return () => void this.observers.delete(observer);
  }

  /** Tell the call observers how `p` ended. */
  private notify(p: Pending, error: Error | undefined): void {
    const record: CallRecord = {
      node: p.peer.nodeNum,
      channel: this.registry.channelName(channelOf(p.service)),
      subservice: subserviceOf(p.service),
      method: p.method,
      status: error !== undefined ? ((error as { code?: unknown }).code as string | undefined) ?? 'UNKNOWN' : 'OK',
      durationMs: Math.max(0, this.env.clock.now() - p.startedAt),
    };
    for (const observe of this.observers) {
      try {
        observe(record);
      } catch {
        // A broken observer must not break calls.
      }
    }
  }

  /** A queued call was dropped before it was sent. */
  dropped(p: Pending, err: ClusterInfraError): void {
    this.forget(p);
    this.settle(p, err);
  }

  /** Remove a call from the table. */
  private forget(p: Pending): void {
    if (p.peer.pending.get(p.id) === p) {
      if (p.settled) p.timer?.cancel();
      p.peer.pending.delete(p.id);
      this.pendingTotal--;
      if (!p.peer.link) this.peers.forgetIfIdle(p.peer);
    }
  }

  private expired(p: Pending): void {
    this.cancel(p, new DeadlineExceededError(`${p.what()} on node ${p.peer.nodeNum} exceeded its deadline`), WireStatus.DEADLINE_EXCEEDED);
  }

  aborted(p: Pending, reason: unknown): void {
    this.cancel(p, new CancelledError(`${p.what()} on node ${p.peer.nodeNum} cancelled`, { cause: reason }), WireStatus.CANCELLED);
  }

  /** The caller gave up: settle now, tell the serving node if the request went out. */
  cancel(p: Pending, err: ClusterInfraError, status: typeof WireStatus.CANCELLED | typeof WireStatus.DEADLINE_EXCEEDED): void {
    if (p.settled) return;
    this.settle(p, err);
    const peer = p.peer;
    if (p.served) {
      p.served.abort(callerGaveUp(status));
      this.forget(p);
      return;
    }
    if (!p.sent) {
      peer.lanes.remove(p);
      this.forget(p);
      return;
    }
    if (p.streams) {
      for (const stream of peer.bulkOut.abort(p.streams)) {
        if (p.link?.state === 'open') this.flow.sendControl(peer, p.link, encodeFrame({ type: FrameType.BulkAbort, stream }));
      }
    }
    // The entry stays until the Response comes back: it returns the credit.
    // But not for ever: a far side that never answers (a silent partition, a
    // half-open link) would hold the entry and its credit without bound.
    const link = p.link;
    if (link && link.state === 'open') {
      this.flow.sendControl(peer, link, encodeFrame({ type: FrameType.Cancel, id: p.id, status }));
      p.timer = this.env.clock.setTimeout(() => this.abandon(p), CANCELLED_CALL_LINGER_MS);
    } else this.forget(p);
  }

  /** A cancelled call's Response never came: forget it and take its credit back. */
  private abandon(p: Pending): void {
    if (p.peer.pending.get(p.id) !== p || canaries.keepPendingOnNodedown) return;
    this.forget(p);
    if (p.charged > 0 && p.link?.state === 'open' && p.peer.linkState.has(p.link)) this.flow.returnCredit(p.peer, p.link, channelOf(p.service), p.charged);
    this.flow.pump(p.peer);
  }

  // ------------------------------------------------------------ answers

  /** The Response to a call arrived on `link`. */
  answered(peer: Peer, link: Link, frame: ResponseFrame): void {
    const p = peer.pending.get(frame.id);
    if (!p || p.incarnation !== link.remote.incarnation) {
      dropped(this.env, peer.nodeNum, 'response to no pending call');
      return;
    }
    if (!p.sent) {
      dropped(this.env, peer.nodeNum, 'response to a call not sent yet');
      return;
    }
    if (frame.status === WireStatus.OK) this.end(p, undefined, frame.body);
    else this.end(p, wireToError(frame.status, frame.body, peer.nodeNum, p.what()));
    this.flow.pump(peer);
  }

  /** The Response to call `id` could not be received (its out-of-line values were refused or lost). */
  unreceivable(peer: Peer, id: number, err: ClusterInfraError): void {
    const p = peer.pending.get(id);
    if (p) this.end(p, err);
  }

  /** Its answer came: out of the table, the request's credit back, settled. */
  private end(p: Pending, error: Error | undefined, value?: unknown): void {
    this.forget(p);
    if (p.charged > 0 && p.link) this.flow.returnCredit(p.peer, p.link, channelOf(p.service), p.charged);
    this.settle(p, error, value);
  }

  /** Fail the calls to `peer` (only those that went out on `link`, when given, and pass `only`), each with `error(p)`. */
  failCalls(peer: Peer, link: Link | undefined, error: (p: Pending) => ClusterInfraError, only?: (p: Pending) => boolean): void {
    for (const p of [...peer.pending.values()]) {
      if (link !== undefined && p.link !== link) continue;
      if (only !== undefined && !only(p)) continue;
      if (!p.sent) peer.lanes.remove(p);
      this.settle(p, error(p));
      this.forget(p);
    }
  }

  /** Whether a call to `peer` that went out on `link` still waits for its answer. */
  waitsOn(peer: Peer, link: Link): boolean {
    for (const p of peer.pending.values()) if (p.link === link) return true;
    return false;
  }
}
