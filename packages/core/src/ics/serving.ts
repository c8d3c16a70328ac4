/**
 * Serving: the messages this node was asked to run. A Request or OneWay
 * that passed the duplicate check and was charged to the window is served
 * now or held (while its link's write backlog is high), handed to its
 * service's pool, and finished: a request is answered on the reply lane
 * (R3: only on a link to the incarnation that asked), a one-way message
 * returns its credit.
 */
import type { Clock, TimerHandle } from '../clock/index.js';
import type { Link } from '../contracts/transport.js';
import { CancelledError, type ClusterInfraError, DeadlineExceededError, MessageTooLargeError, NotFoundError, ResourceExhaustedError } from '../errors/index.js';
import type { OutStream } from './bulk.js';
import { handlerContext, type HandlerContextStore } from './context.js';
import { BuiltinChannel } from './options.js';
import type { Flow } from './flow.js';
import type { Peer, PeerTable } from './peer.js';
import type { PoolItem } from './pool.js';
import { channelOf, type Registry, subserviceOf } from './registry.js';
import { dropped, type Env, traceOutcome, tryTrace } from './shared.js';
import { errorToWire, type WireError } from './status.js';
import type { CallTracer, Handler, HandlerContext } from './types.js';
import { encodeFrame } from './wire/frame.js';
import { FrameType, type OneWayFrame, type RequestFrame, WireStatus } from './wire/types.js';

/** What a served message needs of its part: the clock, and where it reports that it finished. */
interface IncomingOwner {
  readonly clock: Clock;
  /** The node's own incarnation (the caller of a message it sent itself). */
  readonly incarnation: number;
  /** The installed call tracer, if any. */
  readonly tracer: CallTracer | undefined;
  /** Channel name and subservice of a service id (for the tracer). */
  describe(service: number): { channel: string; subservice: number };
  finish(inc: Incoming, outcome: unknown, ok: boolean): void;
}

/** A call this node made to itself: answered directly instead of on a link. */
export interface LocalCaller {
  /** The message serving it, once submitted (a cancel aborts it). */
  served: Incoming | undefined;
  answer(error: WireError | undefined, value: unknown): void;
}

/**
 * A message being served: queued for its handler pool or running. It is the
 * handler's context, the pool's work item and the AsyncLocalStorage store
 * at once, and creates its AbortController (and deadline timer) only when
 * the handler looks at `signal` or something aborts it: most handlers never
 * do, and a signal per message was the largest cost of serving one.
 */
export class Incoming implements HandlerContext, PoolItem, HandlerContextStore {
  /** An own property, not a getter: layers above copy a handler's context with a spread. */
  readonly caller: { readonly nodeNum: number; readonly incarnation: number };
  readonly service: string;
  readonly method: string;
  readonly deadline: number | undefined;
  readonly priority: boolean;
  readonly oneWay: boolean;
  readonly from: number;
  finished = false;
  /** Set for a call this node made to itself: answered directly instead of on a link. */
  local: LocalCaller | undefined = undefined;
  /** Bytes it holds of the node-wide receive budget, given back when it finishes. */
  charged = 0;
  private controller: AbortController | undefined;
  private reason: unknown = undefined;
  private isAborted = false;
  private timer: TimerHandle | undefined;
  private waiters: (() => void)[] | undefined;

  constructor(
    /** Its part; also what tells a handler context of this endpoint from another's. */
    readonly owner: IncomingOwner,
    readonly peer: Peer,
    /** The link the message came on; undefined for a message this node sent itself. */
    readonly link: Link | undefined,
    readonly frame: RequestFrame | OneWayFrame,
    readonly size: number,
    readonly handler: Handler,
    serviceName: string,
  ) {
    this.caller = { nodeNum: peer.nodeNum, incarnation: link ? link.remote.incarnation : owner.incarnation };
    this.service = serviceName;
    this.method = frame.method;
    this.priority = frame.priority;
    this.oneWay = frame.type === FrameType.OneWay;
    this.deadline = frame.type === FrameType.Request ? owner.clock.now() + frame.timeoutMs : undefined;
    this.from = peer.nodeNum;
  }

  get headers(): Readonly<Record<string, string>> | undefined {
    return this.frame.type === FrameType.Request ? this.frame.headers : undefined;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.isAborted) this.controller.abort(this.reason);
      else if (this.deadline !== undefined && !this.finished) {
        this.timer = this.owner.clock.setTimeout(
          () => this.abort(new DeadlineExceededError('deadline passed on the serving node')),
          this.deadline - this.owner.clock.now(),
        );
      }
    }
    return this.controller.signal;
  }

  get aborted(): boolean {
    if (!this.isAborted && this.deadline !== undefined && this.owner.clock.now() >= this.deadline) {
      this.abort(new DeadlineExceededError('deadline passed on the serving node'));
    }
    return this.isAborted;
  }

  abort(reason: unknown): void {
    if (this.isAborted || this.finished) return;
    this.isAborted = true;
    this.reason = reason;
    this.timer?.cancel();
    this.controller?.abort(reason);
  }

  /** Pool entry point: run the handler; a promise only when it is asynchronous. */
  run(): Promise<void> | undefined {
    if (this.aborted) {
      this.owner.finish(this, this.reason, false);
      return undefined;
    }
    let result: unknown;
    const tracer = this.owner.tracer;
    try {
      if (tracer?.onServe && this.frame.type === FrameType.Request) result = this.runTraced(tracer);
      else result = handlerContext.run(this, this.handler, this.frame.body, this);
    } catch (err) {
      this.owner.finish(this, err, false);
      return undefined;
    }
    if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
      return Promise.resolve(result as PromiseLike<unknown>).then(
        (value) => this.owner.finish(this, value, true),
        (err: unknown) => this.owner.finish(this, err, false),
      );
    }
    this.owner.finish(this, result, true);
    return undefined;
  }

  /**
   * Run the handler with the tracer told (and, when it asks, inside its
   * `run`), and end the trace with the handler's outcome (an aborted
   * request ends as its abort reason, as its caller will see it).
   */
  private runTraced(tracer: CallTracer): unknown {
    const frame = this.frame as RequestFrame;
    const trace = tryTrace(() =>
      tracer.onServe!({ caller: this.from, service: this.service, method: this.method, ...this.owner.describe(frame.service) }, frame.headers),
    );
    const call = (): unknown => handlerContext.run(this, this.handler, frame.body, this);
    if (!trace) return call();
    const end = (outcome: unknown, ok: boolean): void => {
      tryTrace(() => trace.end(traceOutcome(this.isAborted ? this.reason : outcome, ok && !this.isAborted)));
    };
    let result: unknown;
    try {
      result = trace.run ? trace.run(call) : call();
    } catch (err) {
      end(err, false);
      throw err;
    }
    if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
      return Promise.resolve(result as PromiseLike<unknown>).then(
        (value) => (end(value, true), value),
        (err: unknown) => {
          end(err, false);
          throw err;
        },
      );
    }
    end(result, true);
    return result;
  }

  /** Pool entry point: dropped from the queue (its caller went down). */
  drop(): void {
    this.owner.finish(this, new CancelledError('dropped: the caller went down'), false);
  }

  /** Mark finished and wake whoever waits (nodedown's barrier). */
  markFinished(): void {
    this.finished = true;
    this.timer?.cancel();
    if (this.waiters) for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves when the handler has finished. */
  done(): Promise<void> {
    if (this.finished) return Promise.resolve();
    return new Promise((resolve) => (this.waiters ??= []).push(resolve));
  }

  /** Why it was aborted (when it was). */
  get abortReason(): unknown {
    return this.reason;
  }
}

/** The error a handler's signal aborts with when its caller cancelled or ran out of time. */
export function callerGaveUp(status: number): ClusterInfraError {
  return status === WireStatus.DEADLINE_EXCEEDED ? new DeadlineExceededError("the caller's deadline passed") : new CancelledError('the caller cancelled');
}

export class Serving implements IncomingOwner {
  readonly clock: Clock;
  readonly incarnation: number;
  /**
   * Write backlog past which a link's messages are held: linkBacklogHighWater,
   * but never below the link's own high-water mark, so that a link holding
   * messages has asked for a drain and will say when it is below again.
   */
  private readonly holdAbove: number;
  /** Bytes of messages from peers held now, admitted and not finished (all peers): at most receiveBudgetTotal. */
  heldBytes = 0;
  private readonly heldMax: number;

  constructor(
    private readonly env: Env,
    private readonly registry: Registry,
    private readonly peers: PeerTable,
    private readonly flow: Flow,
  ) {
    this.clock = env.clock;
    this.incarnation = env.incarnation;
    this.holdAbove = Math.max(env.opts.linkBacklogHighWater, env.opts.linkHighWaterMark);
    this.heldMax = env.opts.receiveBudgetTotal;
  }

  /** What a message from a peer is charged against receiveBudgetTotal: its size; nothing for membership traffic. */
  private chargeOf(frame: RequestFrame | OneWayFrame, size: number): number {
    return frame.channel === BuiltinChannel.clms || frame.channel === BuiltinChannel.clmsProbe ? 0 : size;
  }

  /** Whether `ctx` is the context of a handler this endpoint runs (its calls are raised to priority). */
  owns(ctx: HandlerContextStore | undefined): ctx is HandlerContextStore {
    return ctx !== undefined && ctx.owner === this;
  }

  /**
   * Serve a message now, or hold it while the link's write backlog is past
   * linkBacklogHighWater: a peer that does not read our answers gets no
   * more of them (and, spending credit it does not get back, soon stops).
   * Priority messages spend no credit, so past the same mark of them held,
   * the link is not read at all until the backlog drains.
   */
  admit(peer: Peer, link: Link, frame: RequestFrame | OneWayFrame, size: number): void {
    // Every peer within its own bounds, yet all of them together past the node's (a lone message always fits).
    const charge = this.chargeOf(frame, size);
    if (charge > 0 && this.heldBytes > 0 && this.heldBytes + charge > this.heldMax) {
      const why = `node ${this.env.nodeNum} holds ${this.heldBytes} bytes of messages from its peers: ${size} more would pass receiveBudgetTotal (${this.heldMax})`;
      this.refuse(peer, link, frame, size, new ResourceExhaustedError(why));
      return;
    }
    this.heldBytes += charge;
    const ls = peer.linkState.get(link);
    if (!ls || (ls.held.length === 0 && link.bufferedBytes <= this.holdAbove)) {
      this.serve(peer, link, frame, size, charge);
      return;
    }
    ls.held.push({ frame, size });
    if (!frame.priority) return;
    ls.heldPriorityBytes += size;
    if (ls.heldPriorityBytes > this.holdAbove && !ls.paused) {
      ls.paused = true;
      link.pause();
    }
  }

  /** The link drained: serve what was held, and read it again. */
  releaseHeld(peer: Peer, link: Link): void {
    const ls = peer.linkState.get(link);
    if (!ls) return;
    while (ls.held.length > 0 && link.state === 'open' && link.bufferedBytes <= this.holdAbove) {
      const { frame, size } = ls.held.shift()!;
      if (frame.priority) ls.heldPriorityBytes -= size;
      const charge = this.chargeOf(frame, size);
      if (frame.type === FrameType.Request && !frame.priority && !ls.unanswered.has(frame.id)) {
        // Cancelled while held: answered without running.
        this.heldBytes -= charge;
        this.reply(peer, link, frame.id, errorToWire(new CancelledError('cancelled before it was served')));
      } else this.serve(peer, link, frame, size, charge);
    }
    if (ls.paused && ls.heldPriorityBytes <= this.holdAbove && link.state === 'open') {
      ls.paused = false;
      link.resume();
    }
  }

  /** The link closed: what it held unserved is let go (its callers learn of the loss on their side). */
  dropHeld(peer: Peer, link: Link): void {
    const ls = peer.linkState.get(link);
    if (ls) for (const { frame, size } of ls.held.splice(0)) this.heldBytes -= this.chargeOf(frame, size);
  }

  /** Serve a Request or OneWay (checked for duplicates and charged already, `charge` bytes of the node's budget). */
  private serve(peer: Peer, link: Link, frame: RequestFrame | OneWayFrame, size: number, charge: number): void {
    const err = this.submit(peer, link, frame, size, undefined, charge);
    if (!err) return;
    this.heldBytes -= charge;
    this.refuse(peer, link, frame, size, err);
  }

  /** A message that will not be served: answer it (requests) or drop it and return its credit (one-way). */
  refuse(peer: Peer, link: Link, frame: RequestFrame | OneWayFrame, size: number, err: ClusterInfraError): void {
    dropped(this.env, peer.nodeNum, err.message);
    if (frame.type === FrameType.Request) this.reply(peer, link, frame.id, errorToWire(err));
    else if (!frame.priority) this.flow.owe(peer, link, frame.channel, size);
  }

  /**
   * Hand a message to its service's pool (`link` undefined: this node sent
   * it itself, `local` is the call when it is one). Returns the error when
   * there is no such handler or the pool refuses it; the caller answers.
   */
  submit(peer: Peer, link: Link | undefined, frame: RequestFrame | OneWayFrame, size: number, local?: LocalCaller, charge = 0): ClusterInfraError | undefined {
    const svc = this.registry.handlerOf(frame);
    if (svc instanceof NotFoundError) return svc;
    const inc = new Incoming(this, peer, link, frame, size, svc.handlers[frame.method]!, svc.name);
    inc.charged = charge;
    if (local) {
      inc.local = local;
      local.served = inc;
    }
    if (!svc.pool.submit(inc)) return new ResourceExhaustedError(`service ${svc.name} on node ${this.env.nodeNum} is saturated`);
    // Queued, or running asynchronously: findable for Cancel and nodedown.
    if (!inc.finished) peer.serving.set(frame.id, inc);
    return undefined;
  }

  /** A served message is done: answer it (requests) or return its credit (one-way). */
  finish(inc: Incoming, outcome: unknown, ok: boolean): void {
    if (inc.finished) return;
    this.heldBytes -= inc.charged;
    const { peer, link, frame } = inc;
    if (peer.serving.get(frame.id) === inc) peer.serving.delete(frame.id);
    if (!peer.link) this.peers.forgetIfIdle(peer);
    const aborted = inc.abortReason !== undefined;
    inc.markFinished();
    if (ok) this.env.counters.requestsServed++;
    if (frame.type === FrameType.Request) {
      const error = ok && !aborted ? undefined : errorToWire(aborted ? inc.abortReason : outcome);
      if (inc.local) inc.local.answer(error, outcome ?? null);
      else if (link) this.reply(peer, link, frame.id, error, outcome ?? null);
      return;
    }
    if (!ok) this.env.log.warn({ node: peer.nodeNum, method: frame.method, err: (outcome as Error)?.message }, 'one-way handler failed');
    if (link && !frame.priority) this.flow.owe(peer, link, frame.channel, inc.size);
  }

  /** The caller of request `id` cancelled it (or gave up waiting): its credit comes back, its handler is aborted. */
  cancelled(peer: Peer, link: Link, id: number, status: number): void {
    // The caller stops waiting for the answer's credit after a while:
    // give it back now, or the peer would seem to overrun its window.
    const ls = peer.linkState.get(link);
    if (ls) this.flow.answered(ls, id);
    peer.serving.get(id)?.abort(callerGaveUp(status));
  }

  /** Abort every handler serving `peer` (and drop its queued work when `dropQueued`); the aborted ones, to wait for. */
  abortAll(peer: Peer, reason: ClusterInfraError, dropQueued: boolean): Incoming[] {
    if (dropQueued) this.registry.dropWorkFrom(peer.nodeNum);
    const running = [...peer.serving.values()];
    for (const s of running) s.abort(reason);
    return running;
  }

  /** Send the Response to request `id`: an error when `error` is given, else `value`. */
  reply(peer: Peer, link: Link, id: number, error: WireError | undefined, value?: unknown): void {
    const ls = peer.linkState.get(link);
    if (ls) this.flow.answered(ls, id);
    const target = link.state === 'open' ? link : peer.link;
    if (!target || target.remote.incarnation !== link.remote.incarnation) return;
    const max = this.env.opts.maxMessageSize;
    let bytes: Uint8Array;
    let streams: OutStream[] | undefined;
    try {
      bytes =
        error === undefined
          ? peer.encode({ type: FrameType.Response, id, status: WireStatus.OK, body: value })
          : peer.encode({
              type: FrameType.Response,
              id,
              status: error.status,
              body: error.details === undefined ? { message: error.message } : { message: error.message, details: error.details },
            });
      streams = peer.takeStreams();
      if (bytes.byteLength > max) throw new MessageTooLargeError(bytes.byteLength, max);
    } catch (err) {
      const w = errorToWire(err);
      streams = undefined;
      bytes = encodeFrame({ type: FrameType.Response, id, status: WireStatus.INTERNAL, body: { message: `result not sendable: ${w.message}` } });
    }
    this.flow.sendReplyLane(peer, target, streams ? { bytes, channel: undefined, streams } : { bytes, channel: undefined });
  }

  get tracer(): CallTracer | undefined {
    return this.env.hooks.tracer;
  }

  describe(service: number): { channel: string; subservice: number } {
    return { channel: this.registry.channelName(channelOf(service)), subservice: subserviceOf(service) };
  }
}
