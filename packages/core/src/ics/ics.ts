/**
 * ICS, the internode communication subsystem: services over channels on top
 * of any transport.
 *
 * Invariants kept here (DESIGN §5, TESTING R1–R7):
 * - every call settles exactly once (R1); a call settles as soon as its node
 *   is declared down (R2), with `never-sent` or `may-have-run`;
 * - a reply is matched by (node, incarnation, request id) and only on a link
 *   to that incarnation (R3); a request id is served at most once per sender
 *   incarnation, even if the network duplicates it (R4);
 * - a sender never has more than the receiver's window of non-priority
 *   messages in flight per channel (R5): the receiver returns credit when a
 *   handler finishes (implicitly with each Response, explicitly with Credit
 *   frames for one-way messages);
 * - replies, cancels, credits and calls made from inside a handler never wait
 *   for credit: they travel on the reply and priority lanes;
 * - frames from an incarnation that is not the node's current one are dropped.
 */
import { EventEmitter } from 'eventemitter3';
import { canaries } from '../canaries.js';
import { type Clock, realClock, type TimerHandle } from '../clock/index.js';
import { parseOptions } from '../config/index.js';
import type { Link, LinkCloseInfo, Listener, Transport } from '../contracts/transport.js';
import {
  CancelledError,
  ClusterInfraError,
  DeadlineExceededError,
  IcsClosedError,
  MessageTooLargeError,
  NodeDownError,
  NotFoundError,
  ProtocolViolationError,
  ResourceExhaustedError,
  ServiceExistsError,
  UnavailableError,
  UnknownChannelError,
} from '../errors/index.js';
import { defaultLogger, LogLimiter, type Logger } from '../logging/index.js';
import { cryptoRandom, type RandomSource } from '../random/index.js';
import {
  BulkBudget,
  type BulkReceiveLimits,
  BulkReceiver,
  BulkSender,
  type IncomingBulk,
  type OutStream,
  substituteBulk,
  watchStreams,
} from './bulk.js';
import { handlerContext, type HandlerContextStore } from './context.js';
import {
  BuiltinChannel,
  checkCallOptions,
  checkSubservice,
  DEFAULTS,
  icsOptionsSchema,
  INITIAL_BULK_WINDOW,
  INITIAL_WINDOW,
  type IcsOptions,
  poolSchema,
  type ResolvedIcsOptions,
} from './options.js';
import { HandlerPool, type PoolItem } from './pool.js';
import { errorToWire, type WireError, wireToError } from './status.js';
import type {
  CallObserver,
  CallOptions,
  CallRecord,
  Handler,
  HandlerContext,
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
import { resolveDecodeLimits, type EncodeOptions } from './wire/codec.js';
import { decodeFrame, encodeBulkChunkHeader, encodeFrame, FRAME_HEADER_BYTES } from './wire/frame.js';
import { BulkRef, FrameType, type IcsFrame, type OneWayFrame, RefusedReason, type RefusedReasonCode, type RequestFrame, type ResponseFrame, WireStatus } from './wire/types.js';

/** The service id of (channel, subservice), as ICS_NSC_SVC in the seeds. */
export function serviceId(channel: number, subservice: number): number {
  return ((channel << 16) >>> 0) + subservice;
}
/** Refused connections of one kind are logged at most this often (a misconfigured peer retries many times a second). */
const REJECTED_LOG_EVERY_MS = 10_000;
export const channelOf = (service: number): number => service >>> 16;
export const subserviceOf = (service: number): number => service & 0xffff;

interface Window {
  messages: number;
  bytes: number;
}

/**
 * Sender-side credit of one channel on one link. A message may go while
 * message credit is left and byte credit is positive, so in-flight bytes
 * stay within the window plus one message (a message larger than the whole
 * window can still go, alone).
 */
type Credit = Window;

/** A frame waiting to go out to one peer. */
interface Outgoing {
  bytes: Uint8Array;
  /** Channel whose credit it needs; undefined for lanes that are never throttled. */
  channel: number | undefined;
  /** Called once the frame was handed to a link. */
  onSent?: () => void;
  /** Called when the frame is dropped before sending. */
  onDrop?: (err: ClusterInfraError) => void;
  /** Out-of-line values of this message: their chunks follow once it is sent. */
  streams?: OutStream[];
  /**
   * Their bytes, for one-way messages: charged against the window and the
   * send queue with the message, so a one-way sender is paced by what the
   * receiver has taken in. (A call's values are paced by its caller, who
   * waits for the answer, and bounded by the receiver's bulk budgets.)
   */
  bulkBytes?: number;
  /** The frame in parts (a bulk chunk: header, then the data as is). */
  parts?: Uint8Array[];
}

/**
 * What a call and a served message need of their endpoint: a narrow door,
 * so that neither holds the whole Ics and nothing of this shows in its API.
 */
interface EndpointDoor {
  readonly clock: Clock;
  /** The node's own incarnation (the caller of a message it sent itself). */
  readonly incarnation: number;
  /** A call's deadline passed. */
  deadlinePassed(p: Pending): void;
  /** A signal the call watches aborted. */
  callAborted(p: Pending, reason: unknown): void;
  /** A queued call was dropped before it was sent. */
  dropCall(p: Pending, err: ClusterInfraError): void;
  /** A call failed before it was registered: count it and tell the observers. */
  failedEarly(p: Pending, err: Error): void;
  /** A served message is done: answer it (requests) or return its credit (one-way). */
  finishIncoming(inc: Incoming, outcome: unknown, ok: boolean): void;
}

/**
 * A call waiting for its Response. It is also the queued frame of its
 * request (one object per call: the hot path allocates little).
 */
class Pending implements Outgoing {
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
  timer: TimerHandle | undefined = undefined;
  /** Clock time the call started (for call observers). */
  startedAt = 0;
  /** A call to this node itself: the message serving it (no link, no frame on the wire). */
  local: Incoming | undefined = undefined;
  private watched: AbortSignal[] | undefined = undefined;
  private abortListener: (() => void) | undefined = undefined;

  constructor(
    private readonly ics: EndpointDoor,
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

  /** The clock calls this at the deadline. */
  readonly onTimeout = (): void => this.ics.deadlinePassed(this);

  watch(signal: AbortSignal): void {
    this.abortListener ??= () => {
      const reason = this.watched?.find((s) => s.aborted)?.reason;
      this.ics.callAborted(this, reason);
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
    this.ics.dropCall(this, err);
  }

  /** Settle once: stop the timer, stop watching signals, resolve or reject. */
  settle(result: Error | { value: unknown }): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.timer?.cancel();
    if (this.watched) for (const s of this.watched) s.removeEventListener('abort', this.abortListener!);
    if (result instanceof Error) this.rejectFn(result);
    else this.resolveFn(result.value);
    return true;
  }

  /** Fail before the call was registered. */
  fail(err: Error): void {
    this.settled = true;
    this.ics.failedEarly(this, err);
    this.rejectFn(err);
  }
}

const EMPTY = new Uint8Array(0);

/** What a queued frame costs: its bytes and those of its out-of-line values. */
const costOf = (o: Outgoing): number => o.bytes.byteLength + (o.bulkBytes ?? 0);

/** Bytes of out-of-line values. */
function bulkBytesOf(streams: readonly OutStream[] | undefined): number {
  let n = 0;
  if (streams) for (const s of streams) n += s.data.byteLength;
  return n;
}

/** How long a cancelled call that went out waits for its Response (which returns its credit) before it is dropped. */
const CANCELLED_CALL_LINGER_MS = 5_000;

/**
 * A message being served: queued for its handler pool or running. It is the
 * handler's context, the pool's work item and the AsyncLocalStorage store
 * at once, and creates its AbortController (and deadline timer) only when
 * the handler looks at `signal` or something aborts it: most handlers never
 * do, and a signal per message was the largest cost of serving one.
 */
class Incoming implements HandlerContext, PoolItem, HandlerContextStore {
  readonly caller: { readonly nodeNum: number; readonly incarnation: number };
  readonly service: string;
  readonly method: string;
  readonly deadline: number | undefined;
  readonly priority: boolean;
  readonly oneWay: boolean;
  readonly from: number;
  finished = false;
  /** Set for a call this node made to itself: settled directly instead of answered on a link. */
  local: Pending | undefined = undefined;
  private controller: AbortController | undefined;
  private reason: unknown = undefined;
  private isAborted = false;
  private timer: TimerHandle | undefined;
  private waiters: (() => void)[] | undefined;

  constructor(
    /** Its endpoint; also what tells a handler context of this endpoint from another's. */
    readonly owner: EndpointDoor,
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
      this.owner.finishIncoming(this, this.reason, false);
      return undefined;
    }
    let result: unknown;
    try {
      result = handlerContext.run(this, this.handler, this.frame.body, this);
    } catch (err) {
      this.owner.finishIncoming(this, err, false);
      return undefined;
    }
    if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
      return Promise.resolve(result as PromiseLike<unknown>).then(
        (value) => this.owner.finishIncoming(this, value, true),
        (err: unknown) => this.owner.finishIncoming(this, err, false),
      );
    }
    this.owner.finishIncoming(this, result, true);
    return undefined;
  }

  /** Pool entry point: dropped from the queue (its caller went down). */
  drop(): void {
    this.owner.finishIncoming(this, new CancelledError('dropped: the caller went down'), false);
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

interface ChannelInfo {
  name: string;
  number: number;
  window: Window;
}

interface ServiceEntry {
  id: number;
  name: string;
  channel: number;
  handlers: Record<string, Handler>;
  pool: HandlerPool;
  /** As registered, so a node's next incarnation can register it again. */
  reg: ServiceRegistration;
}

/** State per link: credits are per link, since the receiver's buffers are. */
interface LinkState {
  credit: Map<number, Credit>;
  /** Credit to return to the peer for one-way messages we finished. */
  owed: Map<number, Window>;
  /** Bytes of bulk chunks we may still send on this link. */
  bulkCredit: number;
  /**
   * Receiving side, the mirror of the peer's `credit`: what it may still
   * send us per channel (the window we granted, less what it sent, plus what
   * we returned). A message that finds none left is a protocol violation.
   */
  granted: Map<number, Window>;
  /** Bulk bytes the peer may still send us. */
  bulkGranted: number;
  /** Requests that spent credit and are not answered yet: their credit comes back with the answer (or a Cancel). */
  unanswered: Map<number, { channel: number; size: number }>;
  /** Messages held unserved while the link's write backlog is past linkBacklogHighWater, in arrival order. */
  held: { frame: RequestFrame | OneWayFrame; size: number }[];
  /** Bytes of priority messages among them (those spend no credit, so they are bounded here). */
  heldPriorityBytes: number;
  /** We paused reading the link. */
  paused: boolean;
}

class Peer {
  link: Link | undefined;
  readonly links = new Set<Link>();
  readonly linkState = new Map<Link, LinkState>();
  connecting: Promise<void> | undefined;
  reconnectTimer: TimerHandle | undefined;
  attempts = 0;
  /** The incarnation we talk to; frames from any other are dropped. */
  incarnation: number | undefined;
  /** Incarnations declared down (bounded). */
  readonly down: number[] = [];
  readonly replyQ: Outgoing[] = [];
  readonly prioQ: Outgoing[] = [];
  readonly chanQ = new Map<number, Outgoing[]>();
  /** Channels in round-robin order. */
  rr: number[] = [];
  rrNext = 0;
  queuedBytes = 0;
  readonly throttled = new Set<number>();
  readonly wantDrain = new Set<number>();
  readonly pending = new Map<number, Pending>();
  /** Requests queued or running asynchronously, by id (for Cancel and nodedown). */
  readonly serving = new Map<number, Incoming>();
  /** Message ids seen recently, at `id % size` (R4); allocated at the first message. */
  seen: Uint32Array | undefined;
  /** Ids whose out-of-line values are still arriving. */
  readonly awaitingBulk = new Set<number>();
  pumping = false;
  /** Alternates the bulk lane with the channels. */
  bulkFirst = false;
  readonly bulkOut = new BulkSender();
  readonly bulkIn: BulkReceiver;
  /** Streams taken by the encode under way. */
  encodingStreams: OutStream[] = [];
  readonly encodeOptions: EncodeOptions;

  constructor(
    readonly nodeNum: number,
    private readonly config: PeerConfig,
  ) {
    this.bulkIn = new BulkReceiver(config.bulkLimits, config.bulkBudget);
    this.encodeOptions = {
      outOfLine: { threshold: config.bulkThreshold, take: (data) => this.bulkOut.take(data, this.encodingStreams) },
    };
  }

  /**
   * Encode a frame, taking large binary values out of line; `takeStreams`
   * then gives the streams this encode created.
   */
  encode(frame: IcsFrame): Uint8Array {
    if (this.encodingStreams.length > 0) this.encodingStreams = [];
    const bytes = encodeFrame(frame, this.encodeOptions);
    const max = this.config.bulkLimits.maxRefsPerMessage;
    if (this.encodingStreams.length > max) {
      this.encodingStreams = [];
      throw new ResourceExhaustedError(`a message may carry at most ${max} out-of-line values`);
    }
    return bytes;
  }

  takeStreams(): OutStream[] | undefined {
    if (this.encodingStreams.length === 0) return undefined;
    const streams = this.encodingStreams;
    this.encodingStreams = [];
    return streams;
  }

  queuedFor(channel: number): Outgoing[] {
    let q = this.chanQ.get(channel);
    if (!q) {
      q = [];
      this.chanQ.set(channel, q);
      this.rr.push(channel);
    }
    return q;
  }

  isDown(incarnation: number): boolean {
    return this.down.includes(incarnation);
  }

  /** Remember that `incarnation` is down (the last MAX_DOWN_REMEMBERED of them). */
  markDown(incarnation: number): void {
    if (this.isDown(incarnation)) return;
    this.down.push(incarnation);
    if (this.down.length > MAX_DOWN_REMEMBERED) this.down.shift();
  }

  /**
   * Record message `id`; false when it was seen within the dedup window. Ids
   * grow per sender incarnation, so one slot per `id % window` remembers the
   * last `window` ids in O(1) and without allocation.
   */
  firstSight(id: number): boolean {
    const seen = (this.seen ??= new Uint32Array(this.config.dedupWindow));
    const slot = id % seen.length;
    if (seen[slot] === id) return false;
    seen[slot] = id;
    return true;
  }
}

/** What every Peer of one endpoint shares. */
interface PeerConfig {
  readonly bulkThreshold: number;
  readonly dedupWindow: number;
  readonly bulkLimits: BulkReceiveLimits & { readonly maxRefsPerMessage: number };
  /** The node-wide budget of out-of-line values. */
  readonly bulkBudget: BulkBudget;
}

const MAX_DOWN_REMEMBERED = 16;

/** Peers forgotten (no link, call or work) whose incarnation gate is still remembered. */
const MAX_FORGOTTEN_PEERS = 4096;

/** The error a handler's signal aborts with when its caller cancelled or ran out of time. */
function callerGaveUp(status: number): ClusterInfraError {
  return status === WireStatus.DEADLINE_EXCEEDED ? new DeadlineExceededError("the caller's deadline passed") : new CancelledError('the caller cancelled');
}

/** Credit frames for channel 0 carry bulk-lane credit (no service uses channel 0). */
const BULK_LANE = 0;

export class Ics extends EventEmitter<IcsEvents> implements AsyncDisposable {
  readonly nodeNum: number;
  readonly clusterName: string;
  readonly incarnation: number;
  readonly clock: Clock;
  private readonly random: RandomSource;
  private readonly log: Logger;
  private readonly opts: ResolvedIcsOptions;
  private readonly transport: Transport;
  private listener: Listener | undefined;
  /** The listen under way, while `start()` runs (close waits for it). */
  private starting: Promise<Listener> | undefined;
  private readonly peers = new Map<number, Peer>();
  /**
   * Message ids, one sequence for all peers: a peer forgotten and met again
   * must never see an id it already had from this incarnation (its
   * duplicate window would drop the message).
   */
  private nextId = 1;
  /** The incarnation gate of peers forgotten while idle (bounded, oldest out first). */
  private readonly forgotten = new Map<number, { incarnation: number | undefined; down: number[] }>();
  private readonly channels = new Map<string, ChannelInfo>();
  private readonly channelsByNumber = new Map<number, ChannelInfo>();
  private readonly services = new Map<number, ServiceEntry>();
  private readonly serviceNames = new Set<string>();
  private state: 'new' | 'started' | 'closing' | 'closed' = 'new';
  private closing: Promise<void> | undefined;
  private pendingTotal = 0;
  /** Told of every settled client call (metrics); empty in most programs. */
  private readonly callObservers = new Set<CallObserver>();
  private readonly rejectedLog: LogLimiter;
  private readonly peerConfig: PeerConfig;
  /** What calls and served messages see of this endpoint. */
  private readonly door: EndpointDoor;
  private readonly decodeLimits: ReturnType<typeof resolveDecodeLimits>;
  /** Where the decoder lists the BulkRefs of the frame it decodes; handed over (and replaced) when not empty. */
  private decodedRefs: BulkRef[] = [];
  /**
   * Write backlog past which a link's messages are held: linkBacklogHighWater,
   * but never below the link's own high-water mark, so that a link holding
   * messages has asked for a drain and will say when it is below again.
   */
  private readonly holdAbove: number;
  private readonly counters = {
    callsStarted: 0,
    callsSucceeded: 0,
    callsFailed: 0,
    messagesSent: 0,
    messagesReceived: 0,
    requestsServed: 0,
    dropped: 0,
    throttleEvents: 0,
    reconnects: 0,
    bulkBytesSent: 0,
    bulkBytesReceived: 0,
    oneWayDropped: 0,
    linksClosedForViolation: 0,
  };

  constructor(options: IcsOptions) {
    super();
    this.opts = parseOptions('ics', icsOptionsSchema, options);
    this.nodeNum = this.opts.nodeNum;
    this.clusterName = this.opts.clusterName;
    this.clock = this.opts.clock ?? realClock;
    this.random = this.opts.random ?? cryptoRandom;
    this.log = (this.opts.logger ?? defaultLogger()).child({ component: 'ics', node: this.nodeNum });
    this.rejectedLog = new LogLimiter(() => this.clock.now(), REJECTED_LOG_EVERY_MS);
    this.peerConfig = {
      bulkThreshold: this.opts.bulkThreshold,
      dedupWindow: this.opts.dedupWindow,
      bulkLimits: {
        perPeer: this.opts.bulkReceiveBudget,
        streamCost: this.opts.bulkStreamCost,
        maxStreams: this.opts.maxBulkStreamsPerPeer,
        maxRefsPerMessage: this.opts.maxBulkRefsPerMessage,
      },
      bulkBudget: new BulkBudget(this.opts.bulkReceiveBudgetTotal),
    };
    this.decodeLimits = resolveDecodeLimits({ maxBulkRefs: this.opts.maxBulkRefsPerMessage });
    this.holdAbove = Math.max(this.opts.linkBacklogHighWater, this.opts.linkHighWaterMark);
    // Incarnations grow across restarts (wall-clock milliseconds, scaled),
    // with a random tail so that two starts in one millisecond differ.
    this.incarnation = this.opts.incarnation ?? Math.floor(this.clock.wallNow()) * 1000 + this.random.int(1000) + 1;
    this.door = {
      clock: this.clock,
      incarnation: this.incarnation,
      deadlinePassed: (p) => this.deadlinePassed(p),
      callAborted: (p, reason) => this.callAborted(p, reason),
      dropCall: (p, err) => this.dropCall(p, err),
      failedEarly: (p, err) => {
        this.counters.callsFailed++;
        this.observeSettled(p, err);
      },
      finishIncoming: (inc, outcome, ok) => this.finishIncoming(inc, outcome, ok),
    };
    const builtins: [string, number][] = [
      ['clms', BuiltinChannel.clms],
      ['clms-probe', BuiltinChannel.clmsProbe],
      ['keyservice', BuiltinChannel.keyService],
      ['default', BuiltinChannel.default],
    ];
    for (const [name, number] of builtins) this.addChannel({ name, number, window: this.opts.window });
    for (const c of this.opts.channels) this.addChannel({ name: c.name, number: c.number, window: c.window ?? this.opts.window });
    this.transport = this.opts.transport.create({
      identity: { clusterName: this.clusterName, nodeNum: this.nodeNum, incarnation: this.incarnation },
      clock: this.clock,
      random: this.random,
      logger: this.log.child({ component: 'transport' }),
    });
  }

  private addChannel(info: ChannelInfo): void {
    if (this.channels.has(info.name) || this.channelsByNumber.has(info.number)) {
      throw new ServiceExistsError(`channel ${info.name} (${info.number}) is defined twice`);
    }
    this.channels.set(info.name, info);
    this.channelsByNumber.set(info.number, info);
  }

  /** The address other nodes reach this one at (after `start`). */
  get address(): string | undefined {
    return this.listener?.address;
  }

  /** Start listening. Calls work without it (outbound only). */
  async start(): Promise<this> {
    if (this.state !== 'new') {
      if (this.state === 'started') return this;
      throw new IcsClosedError();
    }
    this.state = 'started';
    this.starting = this.transport.listen();
    const listener = await this.starting;
    // Closed while it began to listen: let the address go again.
    if (this.state !== 'started') {
      await listener.close();
      throw new IcsClosedError();
    }
    this.listener = listener;
    this.listener.on('link', (link) => this.attach(link));
    this.listener.on('rejected', (info) => {
      // A peer with the wrong secret retries many times a second: one line
      // per kind of refusal every REJECTED_LOG_EVERY_MS, with the count held back.
      const reason = (info.error as { reason?: string }).reason ?? info.error.code;
      const { ok, suppressed } = this.rejectedLog.take(reason);
      if (ok) this.log.warn({ remote: info.remoteAddress, node: info.remote?.nodeNum, code: info.error.code, reason, suppressed }, 'refused a connection: %s', info.error.message);
      this.emit('rejected', info);
    });
    return this;
  }

  // ------------------------------------------------------------ services

  /** Register a service with raw handlers (the typed `serve` builds on this). */
  /** @internal The services registered here (CLMS carries them to the node's next incarnation). */
  registrations(): ServiceRegistration[] {
    return [...this.services.values()].map((e) => e.reg);
  }

  registerService(reg: ServiceRegistration): RegisteredService {
    this.assertOpen();
    const channel = this.channelInfo(reg.channel ?? 'default');
    if (!Number.isInteger(reg.subservice) || reg.subservice < 0 || reg.subservice > 0xffff) {
      throw new ClusterInfraError('CONFIG_ERR_INVALID_OPTION', `subservice must be an integer 0–65535, got ${reg.subservice}`);
    }
    const id = serviceId(channel.number, reg.subservice);
    if (this.services.has(id)) throw new ServiceExistsError(`service ${id} (${channel.name}/${reg.subservice}) is already registered`);
    if (this.serviceNames.has(reg.name)) throw new ServiceExistsError(`a service named ${reg.name} is already registered`);
    const pool = new HandlerPool(parseOptions(`service ${reg.name} pool`, poolSchema, reg.pool ?? {}));
    const entry: ServiceEntry = { id, name: reg.name, channel: channel.number, handlers: { ...reg.handlers }, pool, reg };
    this.services.set(id, entry);
    this.serviceNames.add(reg.name);
    return {
      id,
      name: reg.name,
      channel: channel.number,
      subservice: reg.subservice,
      unregister: () => {
        if (this.services.get(id) === entry) {
          this.services.delete(id);
          this.serviceNames.delete(reg.name);
        }
      },
    };
  }

  /** Resolve a service address to its id. */
  serviceId(address: ServiceAddress): number {
    if (typeof address === 'number') return address;
    checkSubservice(address.subservice);
    return serviceId(this.channelInfo(address.channel).number, address.subservice);
  }

  private channelInfo(name: string): ChannelInfo {
    const c = this.channels.get(name);
    if (!c) throw new UnknownChannelError(name);
    return c;
  }

  // ------------------------------------------------------------ calling

  /** Synchronous RPC: resolves with the result, rejects with a typed error. */
  call<T = unknown>(node: number, service: ServiceAddress, method: string, args?: unknown, options?: CallOptions): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.startCall(node, service, method, args, options, resolve as (v: unknown) => void, reject);
    });
  }

  /**
   * Asynchronous request/response: the request is sent now; the handle's
   * `result()` gives the outcome whenever the caller asks (or never).
   */
  request<T = unknown>(node: number, service: ServiceAddress, method: string, args?: unknown, options?: CallOptions): RequestHandle<T> {
    let settled = false;
    let pending: Pending | undefined;
    const promise = new Promise<T>((resolve, reject) => {
      pending = this.startCall(node, service, method, args, options, resolve as (v: unknown) => void, reject);
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
        if (pending) this.cancelPending(pending, new CancelledError(`${pending.what()} on node ${node} cancelled`, { cause: reason }), WireStatus.CANCELLED);
      },
      get settled() {
        return settled;
      },
    };
  }

  /** Start a call; returns its table entry, or undefined when it failed at once. */
  private startCall(
    node: number,
    service: ServiceAddress,
    method: string,
    args: unknown,
    options: CallOptions | undefined,
    resolve: (v: unknown) => void,
    reject: (e: Error) => void,
  ): Pending | undefined {
    this.counters.callsStarted++;
    let svc: number;
    try {
      this.assertOpen();
      checkCallOptions(options);
      svc = typeof service === 'number' ? service : this.serviceId(service);
    } catch (err) {
      this.counters.callsFailed++;
      reject(err as Error);
      return undefined;
    }
    const ctx = handlerContext.getStore();
    const inHandler = ctx !== undefined && ctx.owner === this.door;
    const now = this.clock.now();
    let deadline = now + (options?.timeoutMs ?? this.opts.defaultTimeoutMs);
    if (inHandler && ctx.deadline !== undefined && ctx.deadline < deadline) deadline = ctx.deadline;
    const own = options?.signal;
    const inherited = inHandler ? ctx.signal : undefined;
    const peer = this.peer(node);
    const p = new Pending(this.door, peer, svc, method, resolve, reject);
    p.startedAt = now;
    const aborted = own?.aborted ? own : inherited?.aborted ? inherited : undefined;
    if (aborted) {
      p.fail(new CancelledError(`${p.what()} cancelled before it was sent`, { cause: aborted.reason }));
      return undefined;
    }
    if (this.pendingTotal >= this.opts.maxPendingCalls) {
      p.fail(new ResourceExhaustedError(`too many pending calls (${this.opts.maxPendingCalls})`));
      return undefined;
    }
    if (node === this.nodeNum) return this.startLocal(p, args, deadline, now, inHandler, own, inherited);
    p.id = this.allocateId(peer);
    try {
      p.bytes = peer.encode({
        type: FrameType.Request,
        channel: channelOf(svc),
        service: svc,
        method,
        id: p.id,
        priority: inHandler,
        timeoutMs: Math.max(1, Math.ceil(deadline - now)),
        body: args ?? null,
      });
      p.streams = peer.takeStreams();
      if (p.bytes.byteLength > this.opts.maxMessageSize) throw new MessageTooLargeError(p.bytes.byteLength, this.opts.maxMessageSize);
    } catch (err) {
      p.fail(err as Error);
      return undefined;
    }
    p.channel = inHandler ? undefined : channelOf(svc);
    peer.pending.set(p.id, p);
    this.pendingTotal++;
    p.timer = this.clock.setTimeout(p.onTimeout, deadline - now);
    if (own) p.watch(own);
    if (inherited) p.watch(inherited);
    try {
      this.enqueue(peer, p, inHandler ? 'priority' : 'channel');
    } catch (err) {
      this.forget(p);
      p.settle(err as Error);
    }
    return p;
  }

  /**
   * A call to this node itself: no link and no frame, but the same copy of
   * the arguments and result, size limit, deadline, cancellation, handler
   * pool, priority and errors as a call to another node.
   */
  private startLocal(
    p: Pending,
    args: unknown,
    deadline: number,
    now: number,
    priority: boolean,
    own: AbortSignal | undefined,
    inherited: AbortSignal | undefined,
  ): Pending | undefined {
    const peer = p.peer;
    p.id = this.allocateId(peer);
    let request: { frame: RequestFrame; size: number };
    try {
      request = this.copyLocal<RequestFrame>({
        type: FrameType.Request,
        channel: channelOf(p.service),
        service: p.service,
        method: p.method,
        id: p.id,
        priority,
        timeoutMs: Math.max(1, Math.ceil(deadline - now)),
        body: args ?? null,
      });
    } catch (err) {
      p.fail(err as Error);
      return undefined;
    }
    p.sent = true;
    peer.pending.set(p.id, p);
    this.pendingTotal++;
    // Armed before the handler may run (and finish) synchronously.
    p.timer = this.clock.setTimeout(p.onTimeout, deadline - now);
    if (own) p.watch(own);
    if (inherited) p.watch(inherited);
    const err = this.submit(peer, undefined, request.frame, request.size, p);
    if (err) this.finishLocal(p, errorToWire(err));
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
        threshold: this.opts.bulkThreshold,
        take: (data) => {
          taken.push(data);
          size += data.byteLength;
          return new BulkRef(taken.length - 1, data.byteLength);
        },
      },
    });
    if (bytes.byteLength > this.opts.maxMessageSize) throw new MessageTooLargeError(bytes.byteLength, this.opts.maxMessageSize);
    const copy = decodeFrame(bytes.slice()) as F;
    if (taken.length > 0) copy.body = substituteBulk(copy.body, (ref) => Buffer.from(taken[ref.stream]!));
    return { frame: copy, size: size + bytes.byteLength };
  }

  /** Settle a call to this node with its handler's outcome (copied as a Response would be). */
  private finishLocal(p: Pending, error: WireError | undefined, value?: unknown): void {
    // Cancelled or past its deadline: settled (and forgotten) already.
    if (p.settled) return;
    this.forget(p);
    let result: { value: unknown } | undefined;
    if (error === undefined) {
      try {
        result = { value: this.copyLocal<ResponseFrame>({ type: FrameType.Response, id: p.id, status: WireStatus.OK, body: value }).frame.body };
      } catch (err) {
        error = { status: WireStatus.INTERNAL, message: `result not sendable: ${errorToWire(err).message}` };
      }
    }
    this.settle(p, result ?? wireToError(error!.status, error, this.nodeNum, p.what()));
  }

  private deadlinePassed(p: Pending): void {
    this.cancelPending(p, new DeadlineExceededError(`${p.what()} on node ${p.peer.nodeNum} exceeded its deadline`), WireStatus.DEADLINE_EXCEEDED);
  }

  private callAborted(p: Pending, reason: unknown): void {
    this.cancelPending(p, new CancelledError(`${p.what()} on node ${p.peer.nodeNum} cancelled`, { cause: reason }), WireStatus.CANCELLED);
  }

  /**
   * A one-way message, awaitable: resolves once the message has been handed
   * to the link (which paces a sender to the receiver's window), rejects
   * if it cannot be sent.
   */
  send(node: number, service: ServiceAddress, method: string, args?: unknown): Promise<void> {
    return new Promise((resolve, reject) => {
      try {
        this.queueOneWay(node, service, method, args, resolve, reject);
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
    const dropped = (err: ClusterInfraError): void => {
      this.counters.oneWayDropped++;
      this.log.warn({ node, code: err.code }, 'one-way message dropped: %s', err.message);
    };
    return this.queueOneWay(node, service, method, args, () => {}, dropped);
  }

  private queueOneWay(
    node: number,
    service: ServiceAddress,
    method: string,
    args: unknown,
    onSent: () => void,
    onDrop: (err: ClusterInfraError) => void,
  ): boolean {
    this.assertOpen();
    const svc = this.serviceId(service);
    const ctx = handlerContext.getStore();
    const inHandler = ctx !== undefined && ctx.owner === this.door;
    const peer = this.peer(node);
    const frame: OneWayFrame = {
      type: FrameType.OneWay,
      channel: channelOf(svc),
      service: svc,
      id: this.allocateId(peer),
      method,
      priority: inHandler,
      body: args ?? null,
    };
    if (node === this.nodeNum) {
      // To this node itself: served at once by the local pool, never queued.
      const local = this.copyLocal(frame);
      const err = this.submit(peer, undefined, local.frame, local.size);
      if (err) {
        this.drop(peer, err.message);
        onDrop(err);
      } else onSent();
      return true;
    }
    const bytes = peer.encode(frame);
    const streams = peer.takeStreams();
    if (bytes.byteLength > this.opts.maxMessageSize) throw new MessageTooLargeError(bytes.byteLength, this.opts.maxMessageSize);
    const channel = channelOf(svc);
    const out: Outgoing = { bytes, channel: inHandler ? undefined : channel, onSent, onDrop };
    if (streams) {
      // Sent once its values are: a value lost on the way fails the message.
      watchStreams(streams, onSent, onDrop);
      Object.assign(out, { streams, bulkBytes: bulkBytesOf(streams), onSent: undefined });
    }
    this.enqueue(peer, out, inHandler ? 'priority' : 'channel');
    if (inHandler) return true;
    const flowing = (peer.chanQ.get(channel)?.length ?? 0) === 0;
    if (!flowing) peer.wantDrain.add(channel);
    return flowing;
  }

  /** Call the same method on several nodes; per-node results. */
  async multicast<T = unknown>(
    nodes: readonly number[],
    service: ServiceAddress,
    method: string,
    args?: unknown,
    options: MulticastOptions = {},
  ): Promise<MulticastResult<T>> {
    const until = options.until ?? 'all';
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

  // ------------------------------------------------------------ nodedown

  /**
   * Node `node` (the given incarnation, or the current one) is down. Every
   * pending call to it settles at once with NodeDownError, queued messages
   * to it are dropped, its links are destroyed, messages from it are no
   * longer delivered, and handlers serving it are aborted. Resolves when
   * those handlers have finished: CLMS uses this for its cleanup barrier.
   */
  async nodeDown(node: number, incarnation?: number): Promise<void> {
    // A peer forgotten while idle comes back for its incarnation gate.
    const peer = this.peers.get(node) ?? (this.forgotten.has(node) ? this.peer(node) : undefined);
    if (!peer) return;
    const inc = incarnation ?? peer.incarnation;
    if (inc !== undefined) peer.markDown(inc);
    if (incarnation !== undefined && peer.incarnation !== undefined && incarnation !== peer.incarnation) {
      // An older incarnation: the current one lives on; nothing else to undo.
      this.forgetIfIdle(peer);
      return;
    }
    // (The canary leaves the links too: destroying them would fail the calls it means to leak.)
    await this.teardownPeer(peer, (sent) => new NodeDownError(node, sent), !canaries.keepPendingOnNodedown);
    this.forgetIfIdle(peer);
  }

  /** Fail everything addressed to `peer`, drop its links and abort what it asked of us. */
  private async teardownPeer(peer: Peer, error: (sent: 'never-sent' | 'may-have-run') => ClusterInfraError, destroyLinks: boolean): Promise<void> {
    peer.reconnectTimer?.cancel();
    peer.reconnectTimer = undefined;
    peer.attempts = 0;
    for (const p of [...peer.pending.values()]) {
      if (canaries.keepPendingOnNodedown) break;
      if (!p.sent) this.removeQueued(peer, p);
      this.settle(p, error(p.sent ? 'may-have-run' : 'never-sent'));
      this.forget(p);
    }
    this.dropReplies(peer);
    this.failQueued(peer, error('never-sent'));
    peer.bulkOut.clear(error('never-sent'));
    peer.bulkIn.clear();
    peer.awaitingBulk.clear();
    peer.throttled.clear();
    peer.wantDrain.clear();
    for (const svc of this.services.values()) svc.pool.dropFrom(peer.nodeNum);
    const running = [...peer.serving.values()];
    for (const s of running) s.abort(error('may-have-run'));
    if (destroyLinks) {
      for (const link of [...peer.links]) link.destroy();
      peer.incarnation = undefined;
    }
    // Ids start again with the next incarnation.
    peer.seen = undefined;
    await Promise.all(running.map((s) => s.done()));
  }

  // ------------------------------------------------------------ lifecycle

  /** Close gracefully: stop accepting, fail what is pending, close links. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.state = 'closing';
    // A start under way finishes first (and, seeing us closing, lets go of what it bound).
    await this.starting?.catch(() => undefined);
    await this.listener?.close();
    const teardowns: Promise<void>[] = [];
    for (const peer of this.peers.values()) {
      teardowns.push(this.teardownPeer(peer, () => new IcsClosedError(), false));
    }
    // Handlers were aborted; one that ignores its signal must not hold the
    // node open for ever.
    let grace: TimerHandle | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      grace = this.clock.setTimeout(() => resolve(true), this.opts.closeGraceMs);
      grace.unref();
    });
    if (await Promise.race([Promise.all(teardowns).then(() => false), timedOut])) {
      this.log.warn({ graceMs: this.opts.closeGraceMs }, 'closing with handlers still running: they ignored their abort signal');
    }
    grace?.cancel();
    await this.transport.close();
    this.state = 'closed';
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Counters and gauges for metrics. */
  stats(): IcsStats {
    let queued = 0;
    for (const p of this.peers.values()) {
      queued += p.replyQ.length + p.prioQ.length;
      for (const q of p.chanQ.values()) queued += q.length;
    }
    let bulkStreams = 0;
    for (const p of this.peers.values()) bulkStreams += p.bulkIn.pendingStreams;
    return {
      ...this.counters,
      pendingCalls: this.pendingTotal,
      queuedMessages: queued,
      bulkBytesPending: this.peerConfig.bulkBudget.used,
      bulkStreamsPending: bulkStreams,
      peers: this.peers.size,
    };
  }

  /** Handlers running or queued for requests from `node` (for tests and tools). */
  servingCount(node: number): number {
    return this.peers.get(node)?.serving.size ?? 0;
  }

  private assertOpen(): void {
    if (this.state === 'closing' || this.state === 'closed') throw new IcsClosedError();
  }

  // ------------------------------------------------------------ peers and links

  private peer(node: number): Peer {
    let p = this.peers.get(node);
    if (!p) {
      p = new Peer(node, this.peerConfig);
      const gate = this.forgotten.get(node);
      if (gate) {
        this.forgotten.delete(node);
        p.incarnation = gate.incarnation;
        p.down.push(...gate.down);
      }
      this.peers.set(node, p);
    }
    return p;
  }

  /**
   * Drop a peer nothing refers to any more (no link, call, work or timer),
   * keeping only its incarnation gate, in a bounded table: a peer that came
   * and went (or an identity a hostile peer made up) costs a few bytes.
   */
  private forgetIfIdle(peer: Peer): void {
    if (
      peer.links.size > 0 ||
      peer.connecting ||
      peer.reconnectTimer ||
      peer.pending.size > 0 ||
      peer.serving.size > 0 ||
      peer.awaitingBulk.size > 0 ||
      peer.bulkOut.active.length > 0 ||
      this.hasWork(peer) ||
      this.peers.get(peer.nodeNum) !== peer
    ) {
      return;
    }
    this.peers.delete(peer.nodeNum);
    if (peer.incarnation === undefined && peer.down.length === 0) return;
    this.forgotten.set(peer.nodeNum, { incarnation: peer.incarnation, down: [...peer.down] });
    if (this.forgotten.size > MAX_FORGOTTEN_PEERS) this.forgotten.delete(this.forgotten.keys().next().value!);
  }

  private addressOf(node: number): string | undefined {
    const peers = this.opts.peers;
    if (peers === undefined) return undefined;
    if (typeof peers === 'function') return peers(node);
    return peers[String(node)];
  }

  /**
   * Open a link to whatever node listens at `address` and return its node
   * number (discovery: probing configured addresses before membership says
   * who is where). Reuses nothing: the link joins the node's links as usual.
   */
  async connectAddress(address: string, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<number> {
    this.assertOpen();
    const link = await this.transport.connect(address, options);
    const node = link.remote.nodeNum;
    this.attach(link);
    if (link.state !== 'open') throw new UnavailableError(`node ${node} at ${address} refused the link`);
    return node;
  }

  /** Whether a link to `node` is open now. */
  isConnected(node: number): boolean {
    return this.peers.get(node)?.link?.state === 'open';
  }

  /** The incarnation of `node` this endpoint talks to (its calls go there), once a link brought it; undefined before. */
  peerIncarnation(node: number): number | undefined {
    return this.peers.get(node)?.incarnation;
  }

  private ensureLink(peer: Peer): void {
    if (peer.link || peer.connecting || peer.reconnectTimer || this.state !== 'started' && this.state !== 'new') return;
    const address = this.addressOf(peer.nodeNum);
    if (address === undefined) {
      this.failQueued(peer, new UnavailableError(`no address known for node ${peer.nodeNum}`));
      return;
    }
    // Set when this attempt failed and left nothing to retry (what waited
    // was failed, or nothing waited): work queued after that is new.
    let again = false;
    peer.connecting = this.transport
      .connect(address)
      .then(
        (link) => {
          if (link.remote.nodeNum !== peer.nodeNum) {
            this.log.warn({ expected: peer.nodeNum, got: link.remote.nodeNum }, 'address %s belongs to another node', address);
            link.destroy();
            throw new UnavailableError(`${address} is node ${link.remote.nodeNum}, not node ${peer.nodeNum}`);
          }
          peer.attempts = 0;
          this.attach(link);
        },
        (err: unknown) => {
          throw err;
        },
      )
      .catch((err: unknown) => {
        this.log.debug({ node: peer.nodeNum, err: (err as Error).message }, 'connect failed');
        this.scheduleReconnect(peer, err as Error);
        again = peer.reconnectTimer === undefined;
      })
      .finally(() => {
        peer.connecting = undefined;
        if (peer.link) return;
        // A call queued after this attempt failed what waited (from a
        // handler of that very failure) gets an attempt of its own, rather
        // than wait out its timeout behind one that has ended.
        if (again && this.hasWork(peer)) this.ensureLink(peer);
        else this.forgetIfIdle(peer);
      });
  }

  private hasWork(peer: Peer): boolean {
    if (peer.replyQ.length + peer.prioQ.length > 0) return true;
    for (const q of peer.chanQ.values()) if (q.length > 0) return true;
    return false;
  }

  private scheduleReconnect(peer: Peer, cause: Error): void {
    if (this.state === 'closing' || this.state === 'closed' || !this.hasWork(peer)) return;
    if (cause instanceof ClusterInfraError && cause.code === 'TRANSPORT_ERR_CONNECTION_REFUSED') {
      // Nothing listens there: the process is gone (or not started). Waiting
      // would only delay what the caller learns; fail what waits, now. A
      // timeout or a reset, by contrast, may be a passing network fault and
      // is retried with backoff.
      peer.attempts = 0;
      this.failQueued(peer, new UnavailableError(`node ${peer.nodeNum} refused the connection`, { cause }));
      return;
    }
    const r = this.opts.reconnect;
    if (peer.attempts >= r.maxAttempts) {
      peer.attempts = 0;
      this.failQueued(peer, new UnavailableError(`node ${peer.nodeNum} unreachable after ${r.maxAttempts} attempts`, { cause }));
      return;
    }
    // Exponential backoff with full jitter: spreads reconnect storms.
    const cap = Math.min(r.maxDelayMs, r.initialDelayMs * 2 ** peer.attempts);
    const delay = Math.floor(this.random.next() * cap) + 1;
    peer.attempts++;
    this.counters.reconnects++;
    peer.reconnectTimer = this.clock.setTimeout(() => {
      peer.reconnectTimer = undefined;
      this.ensureLink(peer);
    }, delay);
  }

  /** Drop the replies and control frames queued for `peer` (nobody is left to read them). */
  private dropReplies(peer: Peer): void {
    for (const o of peer.replyQ.splice(0)) peer.queuedBytes -= costOf(o);
  }

  /** Drop everything queued for `peer` but replies, telling each sender why. */
  private failQueued(peer: Peer, err: ClusterInfraError): void {
    for (const q of [peer.prioQ, ...peer.chanQ.values()]) {
      for (const o of q.splice(0)) {
        peer.queuedBytes -= costOf(o);
        o.onDrop?.(err);
      }
    }
  }

  /** A link came up (either direction). */
  private attach(link: Link): void {
    if (this.state === 'closing' || this.state === 'closed') {
      link.destroy();
      return;
    }
    const node = link.remote.nodeNum;
    const inc = link.remote.incarnation;
    const peer = this.peer(node);
    if (peer.isDown(inc)) {
      this.log.info({ node, incarnation: inc }, 'refusing a link from a downed incarnation');
      this.refuse(link, RefusedReason.IncarnationDown);
      return;
    }
    if (peer.incarnation !== undefined && inc !== peer.incarnation) {
      if (inc < peer.incarnation) {
        this.log.info({ node, incarnation: inc }, 'refusing a link from an older incarnation');
        this.refuse(link, RefusedReason.NewerIncarnation);
        return;
      }
      // A newer incarnation: the old one is certainly gone.
      const previous = peer.incarnation;
      this.emit('incarnation', { node, previous, current: inc });
      peer.markDown(previous);
      const old = [...peer.links];
      void this.teardownPeer(peer, (sent) => new NodeDownError(node, sent), false);
      for (const l of old) l.destroy();
    }
    peer.incarnation = inc;
    link.setHighWaterMark(this.opts.linkHighWaterMark);
    peer.links.add(link);
    peer.linkState.set(link, {
      credit: new Map(),
      owed: new Map(),
      bulkCredit: INITIAL_BULK_WINDOW,
      granted: new Map(),
      bulkGranted: this.opts.bulkWindow,
      unanswered: new Map(),
      held: [],
      heldPriorityBytes: 0,
      paused: false,
    });
    link.on('frame', (bytes) => this.onFrame(peer, link, bytes));
    link.on('drain', () => {
      this.releaseHeld(peer, link);
      this.pump(peer);
    });
    link.on('close', (info) => this.detach(peer, link, info));
    link.resume();
    // Two links to one node (both dialled at once): the one dialled by the
    // lower node number is preferred; the other still delivers.
    const dialer = (l: Link): number => (l.direction === 'outbound' ? this.nodeNum : l.remote.nodeNum);
    if (!peer.link || peer.link.state !== 'open' || dialer(link) < dialer(peer.link)) {
      peer.link = link;
    }
    this.grantWindows(peer, link);
    this.emit('link', { node, incarnation: inc, state: 'up' });
    this.pump(peer);
  }

  /**
   * Refuse a link and tell the other side why before it closes (a Refused
   * frame): a downed incarnation learns at once that the others stopped
   * talking to it, instead of guessing from links that keep closing.
   */
  private refuse(link: Link, reason: RefusedReasonCode): void {
    try {
      link.resume();
      link.send(encodeFrame({ type: FrameType.Refused, reason }));
      void link.close();
    } catch {
      link.destroy();
    }
  }

  /** Tell the peer how much more than the initial window our channels allow. */
  private grantWindows(peer: Peer, link: Link): void {
    const bulk = this.opts.bulkWindow - INITIAL_BULK_WINDOW;
    if (bulk > 0) this.sendControl(peer, link, encodeFrame({ type: FrameType.Credit, channel: BULK_LANE, messages: 0, bytes: bulk }));
    for (const c of this.channelsByNumber.values()) {
      const messages = c.window.messages - INITIAL_WINDOW.messages;
      const bytes = c.window.bytes - INITIAL_WINDOW.bytes;
      if (messages > 0 || bytes > 0) {
        this.sendControl(peer, link, encodeFrame({ type: FrameType.Credit, channel: c.number, messages, bytes }));
      }
    }
  }

  private sendControl(peer: Peer, link: Link, bytes: Uint8Array): void {
    if (link.state === 'open') this.sendReplyLane(peer, link, { bytes, channel: undefined });
  }

  /** Reply-lane traffic for `link`: through the scheduler when it is the preferred link, else straight onto it. */
  private sendReplyLane(peer: Peer, link: Link, out: Outgoing): void {
    if (link === peer.link) {
      this.enqueue(peer, out, 'reply');
      return;
    }
    link.send(out.bytes);
    if (out.streams) peer.bulkOut.activate(out.streams);
    this.checkBacklog(peer, link);
  }

  /** A peer that does not read: past linkBacklogMax unsent bytes its link is closed. */
  private checkBacklog(peer: Peer, link: Link): void {
    const backlog = link.bufferedBytes;
    if (backlog > this.opts.linkBacklogMax) {
      this.violation(peer, link, `${backlog} bytes wait to be written to node ${peer.nodeNum}, more than linkBacklogMax (${this.opts.linkBacklogMax}): it does not read`);
    }
  }

  /** The peer broke the protocol: close its link. */
  private violation(peer: Peer, link: Link, why: string): void {
    this.counters.linksClosedForViolation++;
    this.drop(peer, why);
    this.log.warn({ node: peer.nodeNum }, 'closing a link: %s', why);
    link.destroy(new ProtocolViolationError(why));
  }

  private detach(peer: Peer, link: Link, info: LinkCloseInfo): void {
    peer.links.delete(link);
    peer.linkState.delete(link);
    this.emit('link', { node: peer.nodeNum, incarnation: link.remote.incarnation, state: 'down', reason: info.reason });
    if (peer.link === link) {
      peer.link = [...peer.links].find((l) => l.state === 'open');
    }
    // Calls that went out on this link can no longer be answered.
    for (const p of [...peer.pending.values()]) {
      if (p.link === link) {
        this.settle(p, new UnavailableError(`link to node ${peer.nodeNum} lost (${info.reason}) during ${p.what()}`, { mayHaveRun: true }));
        this.forget(p);
      }
    }
    if (!peer.link) {
      // Nobody is left to answer: abort what the peer asked of us.
      for (const s of peer.serving.values()) s.abort(new CancelledError(`link to node ${peer.nodeNum} lost`));
      this.dropReplies(peer);
      // Chunks in flight are lost with the link: values half sent or half received are void.
      peer.bulkOut.clear(new UnavailableError(`link to node ${peer.nodeNum} lost (${info.reason}) before out-of-line values were sent`));
      peer.bulkIn.clear();
      if (this.hasWork(peer)) this.scheduleReconnect(peer, new UnavailableError(`link lost: ${info.reason}`));
      this.forgetIfIdle(peer);
    }
  }

  // ------------------------------------------------------------ sending

  private enqueue(peer: Peer, out: Outgoing, lane: 'reply' | 'priority' | 'channel'): void {
    if (lane === 'channel') {
      const q = peer.queuedFor(out.channel!);
      if (q.length >= this.opts.sendQueueMessages) {
        throw new ResourceExhaustedError(`send queue to node ${peer.nodeNum} on channel ${out.channel} is full`);
      }
      // A lone value larger than the whole bound may still go.
      if (peer.queuedBytes > 0 && peer.queuedBytes + costOf(out) > this.opts.sendQueueBytes) {
        throw new ResourceExhaustedError(`send queue to node ${peer.nodeNum} holds more than ${this.opts.sendQueueBytes} bytes`);
      }
      q.push(out);
    } else if (lane === 'priority') {
      peer.prioQ.push(out);
    } else {
      peer.replyQ.push(out);
    }
    peer.queuedBytes += costOf(out);
    if (!peer.link) this.ensureLink(peer);
    else this.pump(peer);
  }

  private removeQueued(peer: Peer, out: Outgoing): void {
    for (const q of [peer.prioQ, ...peer.chanQ.values()]) {
      const i = q.indexOf(out);
      if (i >= 0) {
        q.splice(i, 1);
        peer.queuedBytes -= costOf(out);
        return;
      }
    }
  }

  /**
   * Move queued frames to the link, highest lane first: replies and control,
   * then priority, then the channels round-robin, each within its credit.
   * Stops when the link asks for a drain.
   */
  private pump(peer: Peer): void {
    const link = peer.link;
    if (!link || link.state !== 'open' || peer.pumping) return;
    const ls = peer.linkState.get(link);
    if (!ls) return;
    peer.pumping = true;
    try {
      // Replies, control frames and priority frames are never throttled:
      // they go even when the link asks for a drain (they are bounded by the
      // calls and handlers that produce them).
      for (;;) {
        const out = peer.replyQ.shift() ?? peer.prioQ.shift() ?? (link.needDrain ? undefined : this.nextNormal(peer, ls));
        if (!out) break;
        peer.queuedBytes -= costOf(out);
        if (out.parts) link.sendv(out.parts);
        else link.send(out.bytes);
        this.counters.messagesSent++;
        out.onSent?.();
        if (out.streams) peer.bulkOut.activate(out.streams);
      }
    } finally {
      peer.pumping = false;
    }
    this.checkBacklog(peer, link);
    for (const ch of peer.wantDrain) {
      if ((peer.chanQ.get(ch)?.length ?? 0) === 0) {
        peer.wantDrain.delete(ch);
        this.emit('drain', { node: peer.nodeNum, channel: ch });
      }
    }
  }

  private creditOf(ls: LinkState, channel: number): Credit {
    let c = ls.credit.get(channel);
    if (!c) {
      c = { messages: INITIAL_WINDOW.messages, bytes: INITIAL_WINDOW.bytes };
      ls.credit.set(channel, c);
    }
    return c;
  }

  /** The bulk lane takes turns with the channels. */
  private nextNormal(peer: Peer, ls: LinkState): Outgoing | undefined {
    const out = peer.bulkFirst
      ? (this.nextBulkChunk(peer, ls) ?? this.nextFromChannels(peer, ls))
      : (this.nextFromChannels(peer, ls) ?? this.nextBulkChunk(peer, ls));
    if (out) peer.bulkFirst = !peer.bulkFirst;
    return out;
  }

  private nextBulkChunk(peer: Peer, ls: LinkState): Outgoing | undefined {
    if (ls.bulkCredit <= 0) return undefined;
    const chunk = peer.bulkOut.nextChunk(this.opts.bulkChunkSize);
    if (!chunk) return undefined;
    ls.bulkCredit -= chunk.data.byteLength;
    this.counters.bulkBytesSent += chunk.data.byteLength;
    return { bytes: EMPTY, parts: [encodeBulkChunkHeader(chunk.stream, chunk.offset, chunk.last), chunk.data], channel: undefined };
  }

  private nextFromChannels(peer: Peer, ls: LinkState): Outgoing | undefined {
    const n = peer.rr.length;
    for (let i = 0; i < n; i++) {
      const idx = (peer.rrNext + i) % n;
      const ch = peer.rr[idx]!;
      const q = peer.chanQ.get(ch)!;
      const head = q[0];
      if (!head) continue;
      const credit = this.creditOf(ls, ch);
      if (credit.messages >= 1 && credit.bytes > 0) {
        credit.messages--;
        credit.bytes -= costOf(head);
        q.shift();
        peer.rrNext = (idx + 1) % n;
        if (peer.throttled.delete(ch)) this.emit('throttle', { node: peer.nodeNum, channel: ch, throttled: false });
        return head;
      }
      if (!peer.throttled.has(ch)) {
        peer.throttled.add(ch);
        this.counters.throttleEvents++;
        this.emit('throttle', { node: peer.nodeNum, channel: ch, throttled: true });
      }
    }
    return undefined;
  }

  private returnCredit(peer: Peer, link: Link, channel: number, bytes: number): void {
    const ls = peer.linkState.get(link);
    if (!ls) return;
    const c = this.creditOf(ls, channel);
    c.messages += 1;
    c.bytes += bytes;
  }

  /** Return credit for a one-way message we finished; batched per tick. */
  /**
   * Return credit for work we finished (one-way messages, bulk chunks) once
   * an eighth of the channel's window (a quarter of the bulk window) is
   * owed: one Credit frame per batch, not per message. Never a deadlock: a
   * sender that ran out of credit has its whole window here, so the owed
   * amount reaches the threshold as that work finishes.
   */
  private owe(peer: Peer, link: Link, channel: number, bytes: number): void {
    const ls = peer.linkState.get(link);
    if (!ls || link.state !== 'open') return;
    let o = ls.owed.get(channel);
    if (!o) {
      o = { messages: 0, bytes: 0 };
      ls.owed.set(channel, o);
    }
    o.bytes += bytes;
    let due: boolean;
    if (channel === BULK_LANE) {
      due = o.bytes >= this.opts.bulkWindow / 4;
    } else {
      o.messages += 1;
      const w = this.channelsByNumber.get(channel)?.window ?? INITIAL_WINDOW;
      due = o.messages >= Math.ceil(w.messages / 8) || o.bytes >= w.bytes / 8;
    }
    if (!due) return;
    this.sendControl(peer, link, encodeFrame({ type: FrameType.Credit, channel, messages: o.messages, bytes: o.bytes }));
    if (channel === BULK_LANE) ls.bulkGranted += o.bytes;
    else this.giveBack(ls, channel, o.messages, o.bytes);
    o.messages = 0;
    o.bytes = 0;
  }

  // ------------------------------------------------------------ settling calls

  private settle(p: Pending, result: Error | { value: unknown }): void {
    if (!p.settle(result)) return;
    if (result instanceof Error) this.counters.callsFailed++;
    else this.counters.callsSucceeded++;
    this.observeSettled(p, result);
  }

  /**
   * Be told of every client call this endpoint settles (success or typed
   * error), with its service, status and duration: the hook behind RPC
   * metrics. Observers run synchronously on the settling path, so they must
   * be cheap; one that throws is ignored. Returns the function that stops it.
   */
  observeCalls(observer: CallObserver): () => void {
    this.callObservers.add(observer);
    return () => void this.callObservers.delete(observer);
  }

  /** Tell the call observers how `p` ended. */
  private observeSettled(p: Pending, result: Error | { value: unknown }): void {
    if (this.callObservers.size === 0) return;
    const channel = channelOf(p.service);
    const record: CallRecord = {
      node: p.peer.nodeNum,
      channel: this.channelsByNumber.get(channel)?.name ?? String(channel),
      subservice: subserviceOf(p.service),
      method: p.method,
      status: result instanceof Error ? ((result as { code?: unknown }).code as string | undefined) ?? 'UNKNOWN' : 'OK',
      durationMs: Math.max(0, this.clock.now() - p.startedAt),
    };
    for (const observe of this.callObservers) {
      try {
        observe(record);
      } catch {
        // A broken observer must not break calls.
      }
    }
  }

  /** A queued call was dropped before it was sent. */
  private dropCall(p: Pending, err: ClusterInfraError): void {
    this.forget(p);
    this.settle(p, err);
  }

  /** Remove a call from the pending table. */
  private forget(p: Pending): void {
    if (p.peer.pending.get(p.id) === p) {
      if (p.settled) p.timer?.cancel();
      p.peer.pending.delete(p.id);
      this.pendingTotal--;
      if (!p.peer.link) this.forgetIfIdle(p.peer);
    }
  }

  /** The caller gave up: settle now, tell the serving node if the request went out. */
  private cancelPending(p: Pending, err: ClusterInfraError, status: typeof WireStatus.CANCELLED | typeof WireStatus.DEADLINE_EXCEEDED): void {
    if (p.settled) return;
    this.settle(p, err);
    if (p.local) {
      p.local.abort(callerGaveUp(status));
      this.forget(p);
      return;
    }
    if (!p.sent) {
      this.removeQueued(p.peer, p);
      this.forget(p);
      return;
    }
    if (p.streams) {
      for (const stream of p.peer.bulkOut.abort(p.streams)) {
        if (p.link?.state === 'open') this.sendControl(p.peer, p.link, encodeFrame({ type: FrameType.BulkAbort, stream }));
      }
    }
    // The entry stays until the Response comes back: it returns the credit.
    // But not for ever: a far side that never answers (a silent partition, a
    // half-open link) would hold the entry and its credit without bound.
    const link = p.link;
    if (link && link.state === 'open') {
      this.sendControl(p.peer, link, encodeFrame({ type: FrameType.Cancel, id: p.id, status }));
      p.timer = this.clock.setTimeout(() => this.abandon(p), CANCELLED_CALL_LINGER_MS);
    } else this.forget(p);
  }

  /** A cancelled call's Response never came: forget it and take its credit back. */
  private abandon(p: Pending): void {
    if (p.peer.pending.get(p.id) !== p || canaries.keepPendingOnNodedown) return;
    this.forget(p);
    if (p.charged > 0 && p.link?.state === 'open' && p.peer.linkState.has(p.link)) this.returnCredit(p.peer, p.link, channelOf(p.service), p.charged);
    this.pump(p.peer);
  }

  private allocateId(peer: Peer): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
      if (!peer.pending.has(id)) return id;
    }
  }

  // ------------------------------------------------------------ receiving

  private onFrame(peer: Peer, link: Link, bytes: Uint8Array): void {
    // A refusal is the only frame of its link (it closes next): said before anything else is checked.
    if (bytes.byteLength === FRAME_HEADER_BYTES[FrameType.Refused] && bytes[0] === FrameType.Refused) {
      this.onRefused(peer, link, bytes);
      return;
    }
    if (link.remote.incarnation !== peer.incarnation || peer.isDown(link.remote.incarnation)) {
      this.drop(peer, 'frame from a former incarnation');
      return;
    }
    let frame: IcsFrame;
    try {
      frame = decodeFrame(bytes, this.decodeLimits, this.decodedRefs);
    } catch (err) {
      this.decodedRefs = [];
      this.drop(peer, `undecodable frame: ${(err as Error).message}`);
      this.log.warn({ node: peer.nodeNum, err: (err as Error).message }, 'closing a link that sent an undecodable frame');
      link.destroy(err instanceof ClusterInfraError ? err : undefined);
      return;
    }
    // Out-of-line references the decoder found (nearly always none).
    let refs: BulkRef[] | undefined;
    if (this.decodedRefs.length > 0) {
      refs = this.decodedRefs;
      this.decodedRefs = [];
    }
    this.counters.messagesReceived++;
    if (frame.type === FrameType.Request || frame.type === FrameType.OneWay) {
      // At most once per (sender incarnation, id), even when the network
      // duplicates frames (R4); checked before anything is charged or held.
      if (!peer.firstSight(frame.id)) {
        this.drop(peer, `duplicate message ${frame.id}`);
        return;
      }
      // What it costs the window, as the sender counted it: the frame, and
      // for a one-way message its out-of-line values too.
      let size = bytes.byteLength;
      if (refs && frame.type === FrameType.OneWay) for (const r of refs) size += r.length;
      if (!frame.priority && !this.takeCredit(peer, link, frame, size)) return;
      // Out-of-line values follow their message: hold it until they are in.
      if (refs) this.awaitBulk(peer, link, frame, size, refs);
      else this.admit(peer, link, frame, size);
      return;
    }
    if (refs && frame.type === FrameType.Response) {
      this.awaitBulk(peer, link, frame, bytes.byteLength, refs);
      return;
    }
    this.dispatch(peer, link, frame, bytes.byteLength);
  }

  private onRefused(peer: Peer, link: Link, bytes: Uint8Array): void {
    let frame: IcsFrame;
    try {
      frame = decodeFrame(bytes);
    } catch (err) {
      link.destroy(err instanceof ClusterInfraError ? err : undefined);
      return;
    }
    if (frame.type !== FrameType.Refused) return;
    const reason = frame.reason === RefusedReason.IncarnationDown ? 'incarnation-down' : 'newer-incarnation';
    this.log.warn({ node: peer.nodeNum, reason }, 'a node refused our link');
    this.emit('refused', { node: peer.nodeNum, incarnation: link.remote.incarnation, reason });
  }

  /** The receiver's mirror of the peer's credit on `channel`. */
  private grantedOf(ls: LinkState, channel: number): Window {
    let g = ls.granted.get(channel);
    if (!g) {
      const w = this.channelsByNumber.get(channel)?.window ?? INITIAL_WINDOW;
      g = { messages: w.messages, bytes: w.bytes };
      ls.granted.set(channel, g);
    }
    return g;
  }

  /**
   * Charge a non-priority message against the credit we granted, by the
   * sender's own rule (a message may go while a message and a byte of credit
   * are left). False, and the link closed, when the peer had none left.
   */
  private takeCredit(peer: Peer, link: Link, frame: RequestFrame | OneWayFrame, size: number): boolean {
    const ls = peer.linkState.get(link);
    if (!ls) return false;
    const g = this.grantedOf(ls, frame.channel);
    if (g.messages < 1 || g.bytes <= 0) {
      this.violation(peer, link, `node ${peer.nodeNum} sent more than the window granted on channel ${frame.channel}`);
      return false;
    }
    g.messages--;
    g.bytes -= size;
    if (frame.type === FrameType.Request) ls.unanswered.set(frame.id, { channel: frame.channel, size });
    return true;
  }

  private giveBack(ls: LinkState, channel: number, messages: number, bytes: number): void {
    const g = this.grantedOf(ls, channel);
    g.messages += messages;
    g.bytes += bytes;
  }

  /** A request is answered (or cancelled): the peer gets its credit back. */
  private answered(ls: LinkState, id: number): void {
    const r = ls.unanswered.get(id);
    if (!r) return;
    ls.unanswered.delete(id);
    this.giveBack(ls, r.channel, 1, r.size);
  }

  /**
   * Serve a message now, or hold it while the link's write backlog is past
   * linkBacklogHighWater: a peer that does not read our answers gets no
   * more of them (and, spending credit it does not get back, soon stops).
   * Priority messages spend no credit, so past the same mark of them held,
   * the link is not read at all until the backlog drains.
   */
  private admit(peer: Peer, link: Link, frame: RequestFrame | OneWayFrame, size: number): void {
    const ls = peer.linkState.get(link);
    if (!ls || (ls.held.length === 0 && link.bufferedBytes <= this.holdAbove)) {
      this.serve(peer, link, frame, size);
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
  private releaseHeld(peer: Peer, link: Link): void {
    const ls = peer.linkState.get(link);
    if (!ls) return;
    while (ls.held.length > 0 && link.state === 'open' && link.bufferedBytes <= this.holdAbove) {
      const { frame, size } = ls.held.shift()!;
      if (frame.priority) ls.heldPriorityBytes -= size;
      if (frame.type === FrameType.Request && !frame.priority && !ls.unanswered.has(frame.id)) {
        // Cancelled while held: answered without running.
        this.reply(peer, link, frame.id, errorToWire(new CancelledError('cancelled before it was served')));
      } else this.serve(peer, link, frame, size);
    }
    if (ls.paused && ls.heldPriorityBytes <= this.holdAbove && link.state === 'open') {
      ls.paused = false;
      link.resume();
    }
  }

  private dispatch(peer: Peer, link: Link, frame: IcsFrame, size: number): void {
    switch (frame.type) {
      case FrameType.Request:
      case FrameType.OneWay:
        this.admit(peer, link, frame, size);
        return;
      case FrameType.Response: {
        const p = peer.pending.get(frame.id);
        if (!p || p.incarnation !== link.remote.incarnation) {
          this.drop(peer, 'response to no pending call');
          return;
        }
        if (!p.sent) {
          this.drop(peer, 'response to a call not sent yet');
          return;
        }
        this.forget(p);
        if (p.charged > 0 && p.link) this.returnCredit(peer, p.link, channelOf(p.service), p.charged);
        if (frame.status === WireStatus.OK) this.settle(p, { value: frame.body });
        else this.settle(p, wireToError(frame.status, frame.body, peer.nodeNum, p.what()));
        this.pump(peer);
        return;
      }
      case FrameType.Cancel: {
        // The caller stops waiting for the answer's credit after a while:
        // give it back now, or the peer would seem to overrun its window.
        const ls = peer.linkState.get(link);
        if (ls) this.answered(ls, frame.id);
        peer.serving.get(frame.id)?.abort(callerGaveUp(frame.status));
        return;
      }
      case FrameType.Credit: {
        const ls = peer.linkState.get(link);
        if (!ls) return;
        if (frame.channel === BULK_LANE) {
          ls.bulkCredit += frame.bytes;
          this.pump(peer);
          return;
        }
        // A grant (at link-up) or credit returned for one-way messages.
        const c = this.creditOf(ls, frame.channel);
        c.messages += frame.messages;
        c.bytes += frame.bytes;
        this.pump(peer);
        return;
      }
      case FrameType.BulkChunk: {
        const ls = peer.linkState.get(link);
        if (!ls) return;
        if (ls.bulkGranted <= 0) {
          this.violation(peer, link, `node ${peer.nodeNum} sent more out-of-line bytes than the bulk window granted`);
          return;
        }
        ls.bulkGranted -= frame.data.byteLength;
        const consumed = peer.bulkIn.chunk(frame.stream, frame.offset, frame.data, frame.last);
        this.counters.bulkBytesReceived += consumed;
        this.owe(peer, link, BULK_LANE, consumed);
        return;
      }
      case FrameType.BulkAbort:
        peer.bulkIn.abort(frame.stream);
        return;
    }
  }

  /**
   * A message with out-of-line values: register its streams within the
   * receive budgets, and dispatch it once they are complete. Duplicates
   * were dropped before, so a duplicated envelope never claims streams.
   */
  private awaitBulk(peer: Peer, link: Link, frame: RequestFrame | OneWayFrame | ResponseFrame, size: number, refs: BulkRef[]): void {
    if (frame.type !== FrameType.Response) {
      // Nobody to deliver it to: refused before a byte of its values is held.
      const found = this.handlerOf(frame);
      if (found instanceof NotFoundError) {
        this.refuseBulk(peer, link, frame, size, found);
        return;
      }
      peer.awaitingBulk.add(frame.id);
    }
    const owner: IncomingBulk = {
      missing: 0,
      done: false,
      streams: [],
      charged: 0,
      complete: () => {
        if (frame.type !== FrameType.Response) peer.awaitingBulk.delete(frame.id);
        frame.body = substituteBulk(frame.body, (ref) => peer.bulkIn.bufferOf(ref.stream));
        // The buffers now belong to the application.
        peer.bulkIn.release(owner);
        if (link.state !== 'closed' || frame.type === FrameType.Response) this.dispatch(peer, link, frame, size);
      },
      fail: (why) => {
        if (frame.type !== FrameType.Response) peer.awaitingBulk.delete(frame.id);
        this.refuseBulk(peer, link, frame, size, new CancelledError(`message abandoned: ${why}`));
      },
    };
    const refused = peer.bulkIn.expect(refs, owner);
    if (refused !== undefined) {
      owner.done = true;
      if (frame.type !== FrameType.Response) peer.awaitingBulk.delete(frame.id);
      this.refuseBulk(peer, link, frame, size, new ResourceExhaustedError(`node ${this.nodeNum} refused the message: ${refused}`));
    }
  }

  /** A message whose out-of-line values cannot be received: answer or drop it, and return its credit. */
  private refuseBulk(peer: Peer, link: Link, frame: RequestFrame | OneWayFrame | ResponseFrame, size: number, err: ClusterInfraError): void {
    this.drop(peer, err.message);
    if (frame.type === FrameType.Response) {
      const p = peer.pending.get(frame.id);
      if (!p) return;
      this.forget(p);
      if (p.charged > 0 && p.link) this.returnCredit(peer, p.link, channelOf(p.service), p.charged);
      this.settle(p, err);
      return;
    }
    if (frame.type === FrameType.OneWay) {
      if (!frame.priority) this.owe(peer, link, frame.channel, size);
      return;
    }
    this.reply(peer, link, frame.id, errorToWire(err));
  }

  private drop(peer: Peer, reason: string): void {
    this.counters.dropped++;
    this.emit('drop', { node: peer.nodeNum, reason });
  }

  /** Serve a Request or OneWay (checked for duplicates and charged already). */
  private serve(peer: Peer, link: Link, frame: RequestFrame | OneWayFrame, size: number): void {
    const err = this.submit(peer, link, frame, size);
    if (!err) return;
    this.drop(peer, err.message);
    if (frame.type === FrameType.Request) this.reply(peer, link, frame.id, errorToWire(err));
    else if (!frame.priority) this.owe(peer, link, frame.channel, size);
  }

  /** The service and handler a message is for, or the NotFoundError to answer it with. */
  private handlerOf(frame: RequestFrame | OneWayFrame): { svc: ServiceEntry; handler: Handler } | NotFoundError {
    const svc = this.services.get(frame.service);
    const handler = svc !== undefined && Object.hasOwn(svc.handlers, frame.method) ? svc.handlers[frame.method] : undefined;
    if (svc && handler) return { svc, handler };
    const what = svc ? `method ${frame.method} of service ${svc.name}` : `service ${channelOf(frame.service)}/${subserviceOf(frame.service)}`;
    return new NotFoundError(`no ${what} on node ${this.nodeNum}`);
  }

  /**
   * Hand a message to its service's pool (`link` undefined: this node sent
   * it itself, `local` is the call when it is one). Returns the error when
   * there is no such handler or the pool refuses it; the caller answers.
   */
  private submit(peer: Peer, link: Link | undefined, frame: RequestFrame | OneWayFrame, size: number, local?: Pending): ClusterInfraError | undefined {
    const found = this.handlerOf(frame);
    if (found instanceof NotFoundError) return found;
    const { svc, handler } = found;
    const inc = new Incoming(this.door, peer, link, frame, size, handler, svc.name);
    if (local) {
      inc.local = local;
      local.local = inc;
    }
    if (!svc.pool.submit(inc)) return new ResourceExhaustedError(`service ${svc.name} on node ${this.nodeNum} is saturated`);
    // Queued, or running asynchronously: findable for Cancel and nodedown.
    if (!inc.finished) peer.serving.set(frame.id, inc);
    return undefined;
  }

  /** A served message is done: answer it (requests) or return its credit (one-way). */
  private finishIncoming(inc: Incoming, outcome: unknown, ok: boolean): void {
    if (inc.finished) return;
    const { peer, link, frame } = inc;
    if (peer.serving.get(frame.id) === inc) peer.serving.delete(frame.id);
    if (!peer.link) this.forgetIfIdle(peer);
    const aborted = inc.abortReason !== undefined;
    inc.markFinished();
    if (ok) this.counters.requestsServed++;
    if (frame.type === FrameType.Request) {
      const error = ok && !aborted ? undefined : errorToWire(aborted ? inc.abortReason : outcome);
      if (inc.local) this.finishLocal(inc.local, error, outcome ?? null);
      else if (link) this.reply(peer, link, frame.id, error, outcome ?? null);
      return;
    }
    if (!ok) this.log.warn({ node: peer.nodeNum, method: frame.method, err: (outcome as Error)?.message }, 'one-way handler failed');
    if (link && !frame.priority) this.owe(peer, link, frame.channel, inc.size);
  }

  /** Send the Response to request `id`: an error when `error` is given, else `value`. */
  private reply(peer: Peer, link: Link, id: number, error: WireError | undefined, value?: unknown): void {
    const ls = peer.linkState.get(link);
    if (ls) this.answered(ls, id);
    const target = link.state === 'open' ? link : peer.link;
    if (!target || target.remote.incarnation !== link.remote.incarnation) return;
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
      if (bytes.byteLength > this.opts.maxMessageSize) throw new MessageTooLargeError(bytes.byteLength, this.opts.maxMessageSize);
    } catch (err) {
      const w = errorToWire(err);
      streams = undefined;
      bytes = encodeFrame({ type: FrameType.Response, id, status: WireStatus.INTERNAL, body: { message: `result not sendable: ${w.message}` } });
    }
    this.sendReplyLane(peer, target, streams ? { bytes, channel: undefined, streams } : { bytes, channel: undefined });
  }
}

/** Create an ICS endpoint. Call `start()` to accept links. */
export function createIcs(options: IcsOptions): Ics {
  return new Ics(options);
}

export { DEFAULTS as ICS_DEFAULTS };
