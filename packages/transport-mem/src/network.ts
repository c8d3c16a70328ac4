/**
 * The in-memory network: a world of addresses, listeners and links with
 * virtual (or real) time, seeded randomness and fault injection. No globals:
 * every network is its own world, and every test makes its own.
 *
 * Delivery model. Everything that crosses the network (handshake messages,
 * frames, close and reset signals) is an item in ONE queue ordered by
 * (due time, sequence number), and ONE clock timer is armed for the earliest
 * item. When it fires, every item that was queued before the batch began and
 * is due is delivered, in queue order; items queued during the batch wait for
 * the next timer (also at the same instant when their delay is zero), so a
 * ping-pong at zero latency cannot starve the clock.
 *
 * Determinism. Time comes only from the network's clock, chance only from
 * its SeededRandom. With a VirtualClock, the same seed and the same program
 * give the same trace and the same `traceHash()`.
 *
 * Faults are keyed by address and act per direction. A frame's fate is
 * decided twice: when it is sent (drop, duplicate, reorder, delay) and when
 * it falls due (a partition blackholes it, a pause holds it, a dead link
 * discards it).
 */
import {
  type Clock,
  type ClusterInfraError,
  ConnectionRefusedError,
  HandshakeRejectedError,
  type HandshakeRejectReason,
  InvalidAddressError,
  InvalidOptionError,
  type LinkCloseInfo,
  parseOptions,
  realClock,
  SeededRandom,
  type TimerHandle,
} from '@clusterinfra/core';
import { EventEmitter } from 'eventemitter3';
import { DEFAULT_SEED, DEFAULT_TRACE_LIMIT } from './constants.js';
import { DeliveryHeap } from './heap.js';
import { type LinkWire, MemoryLink } from './link.js';
import { type LinkFaults, type MemoryNetworkOptions, networkSchema, resolveFaults, type ResolvedFaults } from './options.js';
import { Trace, type TraceEntry, type TraceEvent, type TraceInput } from './trace.js';
import type { MemoryTransport } from './transport.js';

/** @internal A pending `connect`, as the network sees it. */
export interface ConnectAttempt {
  readonly client: MemoryTransport;
  /** The client's address. */
  readonly from: string;
  /** The address dialled. */
  readonly to: string;
  /** Set once the attempt succeeded, failed, timed out or was aborted. */
  readonly settled: boolean;
  /** The client's end, made when the listener accepted (before the client learns it). */
  link: MemoryLink | undefined;
  succeed(link: MemoryLink): void;
  fail(error: ClusterInfraError): void;
}

type ItemKind = 'syn' | 'refused' | 'rejected' | 'accepted' | 'frame' | 'fin' | 'rst';

/** One thing in flight. A class, so every item has the same shape (the heap compares millions of them). */
class Item {
  due = 0;
  seq = 0;
  /** In the heap (not yet taken out for delivery). */
  queued = false;
  /** Frame number within the direction (frames only). */
  n = 0;
  /** Bytes to give back to the sender when this frame is consumed or lost (0 for a duplicate). */
  release = 0;
  frame: Uint8Array | undefined = undefined;
  /** The sending link (frame, fin, rst; the listener's end for `accepted`). */
  link: MemoryLink | undefined = undefined;
  attempt: ConnectAttempt | undefined = undefined;
  reason: HandshakeRejectReason | undefined = undefined;

  constructor(
    readonly kind: ItemKind,
    readonly from: string,
    readonly to: string,
  ) {}

  static frame(link: MemoryLink, frame: Uint8Array, n: number, release: number): Item {
    const item = new Item('frame', link.localAddress, link.remoteAddress);
    item.link = link;
    item.frame = frame;
    item.n = n;
    item.release = release;
    return item;
  }

  static signal(kind: ItemKind, link: MemoryLink): Item {
    const item = new Item(kind, link.localAddress, link.remoteAddress);
    item.link = link;
    return item;
  }

  static handshake(kind: ItemKind, from: string, to: string, attempt: ConnectAttempt): Item {
    const item = new Item(kind, from, to);
    item.attempt = attempt;
    return item;
  }
}

/** Counters since the network was created (`stats()` returns a snapshot). */
export interface MemoryNetworkStats {
  /** Frames accepted by `send` on any link. */
  sent: number;
  /** Frames handed to a receiving link (duplicates count each time). */
  delivered: number;
  /** Frames lost to `dropRate`. */
  dropped: number;
  /** Extra copies made by `duplicateRate`. */
  duplicated: number;
  /** Frames that overtook their predecessor because of `reorderRate`. */
  reordered: number;
  /** Frames and signals lost to a partition or an isolation. */
  blackholed: number;
  /** Frames that arrived at a link that had already closed. */
  discarded: number;
  /** Times an item was held by `pause` (each is delivered on `resume`). */
  held: number;
  /** Connections that completed the handshake. */
  connections: number;
  /** Connects refused because nothing listened. */
  refused: number;
  /** Connects refused by the handshake (cluster name, secret, identity). */
  rejected: number;
  /** Items waiting in the delivery queue now. */
  queued: number;
  /** Items held by a pause now. */
  holding: number;
  /** Connections with at least one end still open now. */
  openConnections: number;
}

export interface PartitionOptions {
  /** Block only `a` → `b`: `b` still reaches `a`. @default false */
  oneWay?: boolean;
}

export interface SetLinkFaultsOptions {
  /** Apply the same faults to `to` → `from` as well. @default false */
  bothWays?: boolean;
}

const SEP = '\u0000';
const key = (from: string, to: string): string => `${from}${SEP}${to}`;

/** A method's options: undefined (none) or an object whose `flag` is a boolean when given. */
function checkFlagOptions(options: unknown, method: string, flag: string): void {
  if (options === undefined) return;
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('(root)', `memory network: ${method}: options must be an object`);
  const v = (options as Record<string, unknown>)[flag];
  if (v !== undefined && typeof v !== 'boolean') throw new InvalidOptionError(flag, `memory network: ${method}: ${flag} must be a boolean, got ${String(v)}`);
}

function checkAddress(address: unknown, what: string): string {
  if (typeof address !== 'string' || address.length === 0) {
    throw new InvalidAddressError(String(address), `${what} must be a non-empty string`);
  }
  return address;
}

/** Events of a MemoryNetwork. */
export interface MemoryNetworkEvents {
  /** Every trace entry, as it is recorded (for capturing more than `traceLimit`). */
  trace: (entry: TraceEntry) => void;
}

export class MemoryNetwork extends EventEmitter<MemoryNetworkEvents> implements LinkWire {
  /** The clock that drives delivery, latency and connect timeouts. */
  readonly clock: Clock;
  /** The seed of this network's random source. */
  readonly seed: number | string;

  private readonly random: SeededRandom;
  private readonly queue = new DeliveryHeap<Item>();
  private nextSeq = 0;
  private timer: TimerHandle | undefined;
  private timerDue = Number.POSITIVE_INFINITY;
  private inBatch = false;

  private readonly tracer: Trace;
  private readonly counters = {
    sent: 0,
    delivered: 0,
    dropped: 0,
    duplicated: 0,
    reordered: 0,
    blackholed: 0,
    discarded: 0,
    held: 0,
    connections: 0,
    refused: 0,
    rejected: 0,
  };

  /** Listening transports by address. */
  private readonly bound = new Map<string, MemoryTransport>();
  /** Live transports by address (several may share one, e.g. clients that never listen). */
  private readonly members = new Map<string, Set<MemoryTransport>>();
  /** Open connections by number: [client end, listener end]. */
  private readonly connections = new Map<number, readonly [MemoryLink, MemoryLink]>();
  private pairs = 0;

  /** Blocked directions, `from\0to`. */
  private readonly partitions = new Set<string>();
  private readonly isolated = new Set<string>();
  private readonly paused = new Set<string>();
  /** Items held by a pause, in the order they fell due. */
  private held: Item[] = [];

  private defaultFaults: ResolvedFaults;
  private readonly directionFaults = new Map<string, ResolvedFaults>();

  constructor(options: MemoryNetworkOptions = {}) {
    super();
    const o = parseOptions('memory network', networkSchema, options);
    this.clock = o.clock ?? realClock;
    this.seed = o.seed ?? DEFAULT_SEED;
    this.random = new SeededRandom(this.seed);
    this.defaultFaults = resolveFaults('memory network: faults', o.faults);
    this.tracer = new Trace(o.traceLimit ?? DEFAULT_TRACE_LIMIT, o.traceHash ?? true);
  }

  // ---------------------------------------------------------------- observing

  /** The last `traceLimit` trace entries, oldest first. */
  get trace(): readonly TraceEntry[] {
    return this.tracer.entries();
  }

  /** Trace entries recorded since creation (including those no longer kept). */
  get traceLength(): number {
    return this.tracer.total;
  }

  /**
   * A hex SHA-256 over the whole trace so far (every entry, including the
   * bytes of every delivered frame). Two runs with the same seed, a
   * VirtualClock and the same program give the same hash. Throws
   * InvalidOptionError on a network made with `traceHash: false`.
   */
  traceHash(): string {
    return this.tracer.digest();
  }

  /** A snapshot of the counters. */
  stats(): MemoryNetworkStats {
    let open = 0;
    for (const [a, b] of this.connections.values()) if (a.state !== 'closed' || b.state !== 'closed') open++;
    return { ...this.counters, queued: this.queue.size, holding: this.held.length, openConnections: open };
  }

  /** Whether frames sent now from `from` would reach `to` (no partition, isolation or pause in the way). */
  canReach(from: string, to: string): boolean {
    return !this.blocked(from, to) && !this.isPausedPath(from, to);
  }

  /** Whether `address` is paused. */
  isPaused(address: string): boolean {
    return this.paused.has(address);
  }

  /** Whether a transport listens on `address`. */
  isListening(address: string): boolean {
    return this.bound.has(address);
  }

  // ------------------------------------------------------------------- faults

  /**
   * Cut `a` from `b`: frames and signals from `a` to `b` (and, unless
   * `oneWay`, from `b` to `a`) are blackholed when they fall due, including
   * those already in flight. Links stay open (a partition is silent, as on a
   * real network); a connect across it hangs until its connect timeout.
   */
  partition(a: string, b: string, options: PartitionOptions = {}): void {
    checkAddress(a, 'a');
    checkAddress(b, 'b');
    if (a === b) throw new InvalidAddressError(a, 'cannot partition an address from itself');
    checkFlagOptions(options, 'partition', 'oneWay');
    this.partitions.add(key(a, b));
    if (!options.oneWay) this.partitions.add(key(b, a));
    this.note({ event: 'partition', from: a, to: b, detail: options.oneWay ? 'one-way' : 'both' });
  }

  /**
   * Undo partitions and isolations: `heal()` undoes all of them,
   * `heal(a)` every partition involving `a` and `a`'s isolation,
   * `heal(a, b)` the partition between `a` and `b` in both directions
   * (an isolation of either stays until `heal(a)` or `heal()`).
   * Pauses and link faults are not touched (see `resume`, `setLinkFaults`).
   */
  heal(a?: string, b?: string): void {
    if (a !== undefined) checkAddress(a, 'a');
    if (b !== undefined) checkAddress(b, 'b');
    if (a === undefined) {
      this.partitions.clear();
      this.isolated.clear();
    } else if (b === undefined) {
      for (const k of [...this.partitions]) {
        const [from, to] = k.split(SEP);
        if (from === a || to === a) this.partitions.delete(k);
      }
      this.isolated.delete(a);
    } else {
      this.partitions.delete(key(a, b));
      this.partitions.delete(key(b, a));
    }
    this.note({ event: 'heal', ...(a === undefined ? {} : { from: a }), ...(b === undefined ? {} : { to: b }) });
  }

  /** Cut `address` from every other address, both ways, until `heal(address)` or `heal()`. */
  isolate(address: string): void {
    checkAddress(address, 'address');
    this.isolated.add(address);
    this.note({ event: 'isolate', from: address });
  }

  /**
   * Set the faults of one direction, `from` → `to` (both directions with
   * `bothWays`). They replace the network default for that direction; fields
   * left out are 0. `null` removes them, so the default applies again.
   * Faults apply to frames sent after the call.
   */
  setLinkFaults(from: string, to: string, faults: LinkFaults | null, options: SetLinkFaultsOptions = {}): void {
    checkAddress(from, 'from');
    checkAddress(to, 'to');
    checkFlagOptions(options, 'setLinkFaults', 'bothWays');
    const resolved = faults === null ? undefined : resolveFaults('memory network: setLinkFaults', faults);
    const directions: [string, string][] = options.bothWays ? [[from, to], [to, from]] : [[from, to]];
    for (const [f, t] of directions) {
      if (resolved) this.directionFaults.set(key(f, t), resolved);
      else this.directionFaults.delete(key(f, t));
    }
    this.note({ event: 'faults', from, to, detail: faultsDetail(resolved, options.bothWays) });
  }

  /** Set the faults of every direction that has none of its own. */
  setDefaultFaults(faults: LinkFaults): void {
    this.defaultFaults = resolveFaults('memory network: setDefaultFaults', faults);
    this.note({ event: 'faults', detail: `default ${faultsDetail(this.defaultFaults)}` });
  }

  /** Remove every per-direction fault setting and reset the default to no faults. */
  clearFaults(): void {
    this.directionFaults.clear();
    this.defaultFaults = resolveFaults('memory network', {});
    this.note({ event: 'faults', detail: 'cleared' });
  }

  /** The faults in force from `from` to `to`. */
  faultsOf(from: string, to: string): Required<LinkFaults> {
    return { ...this.faultsFor(from, to) };
  }

  /**
   * Kill every connection between `a` and `b` (or every connection of `a`
   * when `b` is left out), as a middlebox resetting them would: both ends
   * close at once with reason `reset`; frames still in flight are lost.
   * Returns how many connections died.
   */
  killLinks(a: string, b?: string): number {
    checkAddress(a, 'a');
    let killed = 0;
    for (const [pair, ends] of [...this.connections]) {
      const [x, y] = ends;
      const match =
        b === undefined
          ? x.localAddress === a || y.localAddress === a
          : (x.localAddress === a && y.localAddress === b) || (x.localAddress === b && y.localAddress === a);
      if (!match || (x.state === 'closed' && y.state === 'closed')) continue;
      killed++;
      this.note({ event: 'kill', from: x.localAddress, to: y.localAddress, link: pair });
      x.kill(`connection to ${y.localAddress} killed by the network`);
      y.kill(`connection to ${x.localAddress} killed by the network`);
    }
    return killed;
  }

  /**
   * Crash every transport at `address`, as a process crash would: its
   * listener closes, its pending connects fail, every link it has closes at
   * once with reason `reset`, and each peer is sent a reset (which, like any
   * signal, travels with the direction's latency and is lost across a
   * partition, leaving a half-open link). The crashed transports refuse
   * further `listen` and `connect` with TransportClosedError; a new
   * transport may then take over the address (a restart). A pause of the
   * address ends. Returns how many transports crashed.
   */
  crash(address: string): number {
    checkAddress(address, 'address');
    this.note({ event: 'crash', from: address });
    if (this.paused.delete(address)) this.release();
    const victims = [...(this.members.get(address) ?? [])];
    for (const t of victims) t.crashNow();
    return victims.length;
  }

  /**
   * Pause `address`, as SIGSTOP would: everything to and from it (frames,
   * signals, handshakes) is held when it falls due, and delivered on
   * `resume`, in order. Its links stay open; senders see backpressure.
   */
  pause(address: string): void {
    checkAddress(address, 'address');
    this.paused.add(address);
    this.note({ event: 'pause', from: address });
  }

  /** End a pause: held items are delivered (in their original order) as soon as nothing else holds them. */
  resume(address: string): void {
    checkAddress(address, 'address');
    this.note({ event: 'resume', from: address });
    if (this.paused.delete(address)) this.release();
  }

  /**
   * Destroy every transport on the network (their peers, if any survive,
   * see resets), drop everything in flight or held, and cancel the timer,
   * so nothing of this world runs any more. Faults are kept; new transports
   * may still be created on the network afterwards.
   */
  destroy(): void {
    for (const set of [...this.members.values()]) for (const t of [...set]) t.destroy();
    for (const item of this.held) item.queued = false;
    this.held = [];
    this.queue.clear();
    this.arm();
  }

  /** Same as `destroy()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.destroy();
  }

  // ----------------------------------------------------- transports (internal)

  /** @internal */
  attach(t: MemoryTransport): void {
    let set = this.members.get(t.address);
    if (!set) this.members.set(t.address, (set = new Set()));
    set.add(t);
  }

  /** @internal */
  detach(t: MemoryTransport): void {
    const set = this.members.get(t.address);
    set?.delete(t);
    if (set?.size === 0) this.members.delete(t.address);
    this.unbind(t);
  }

  /** @internal Returns false when the address is taken. */
  bind(t: MemoryTransport): boolean {
    if (this.bound.has(t.address)) return false;
    this.bound.set(t.address, t);
    return true;
  }

  /** @internal */
  unbind(t: MemoryTransport): void {
    if (this.bound.get(t.address) === t) this.bound.delete(t.address);
  }

  /** @internal Send the opening handshake message of `attempt`. */
  startConnect(attempt: ConnectAttempt): void {
    this.note({ event: 'connect', from: attempt.from, to: attempt.to });
    this.schedule(Item.handshake('syn', attempt.from, attempt.to, attempt));
  }

  // ------------------------------------------------------ links (LinkWire)

  /** @internal */
  transmitFrame(link: MemoryLink, frame: Uint8Array): number {
    const from = link.localAddress;
    const to = link.remoteAddress;
    const faults = this.faultsFor(from, to);
    const size = frame.byteLength;
    const n = ++link.outFrames;
    this.counters.sent++;
    if (faults.dropRate > 0 && this.random.next() < faults.dropRate) {
      this.counters.dropped++;
      this.note({ event: 'drop', from, to, link: link.pair, frame: n, size });
      return 0;
    }
    // The copy: the receiver never shares memory with the sender.
    const item = this.scheduleOnLink(link, Item.frame(link, new Uint8Array(frame), n, size));
    if (faults.reorderRate > 0 && this.random.next() < faults.reorderRate) {
      const prev = link.outLast as Item | undefined;
      if (prev && prev !== item && prev.kind === 'frame' && prev.queued) {
        // Swap payloads: the heap order (due, seq) is unchanged, the contents trade places.
        [prev.frame, item.frame] = [item.frame, prev.frame];
        [prev.n, item.n] = [item.n, prev.n];
        [prev.release, item.release] = [item.release, prev.release];
        this.counters.reordered++;
        this.note({ event: 'reorder', from, to, link: link.pair, frame: n, size });
        // A swapped pair is not swapped again, so a frame moves by at most one place.
        link.outLast = undefined;
      } else link.outLast = item;
    } else link.outLast = item;
    if (faults.duplicateRate > 0 && this.random.next() < faults.duplicateRate) {
      this.counters.duplicated++;
      this.note({ event: 'duplicate', from, to, link: link.pair, frame: n, size });
      link.outLast = this.scheduleOnLink(link, Item.frame(link, new Uint8Array(frame), n, 0));
    }
    return size;
  }

  /** @internal */
  transmitSignal(link: MemoryLink, kind: 'fin' | 'rst'): void {
    link.outLast = this.scheduleOnLink(link, Item.signal(kind, link));
  }

  /** @internal */
  linkClosed(link: MemoryLink, info: LinkCloseInfo): void {
    this.note({ event: 'close', from: link.localAddress, to: link.remoteAddress, link: link.pair, detail: info.reason });
    if (link.peer.state === 'closed') this.connections.delete(link.pair);
  }

  // ------------------------------------------------------------- scheduling

  private faultsFor(from: string, to: string): ResolvedFaults {
    if (this.directionFaults.size === 0) return this.defaultFaults;
    return this.directionFaults.get(key(from, to)) ?? this.defaultFaults;
  }

  private delay(from: string, to: string): number {
    const f = this.faultsFor(from, to);
    return f.jitterMs > 0 ? f.latencyMs + this.random.next() * f.jitterMs : f.latencyMs;
  }

  /** Queue an item behind everything `link` sent before (jitter never reorders a direction). */
  private scheduleOnLink(link: MemoryLink, item: Item): Item {
    item.due = Math.max(this.clock.now() + this.delay(item.from, item.to), link.outLastDue);
    link.outLastDue = item.due;
    return this.push(item);
  }

  private schedule(item: Item): Item {
    item.due = this.clock.now() + this.delay(item.from, item.to);
    return this.push(item);
  }

  private push(item: Item): Item {
    item.seq = this.nextSeq++;
    item.queued = true;
    this.queue.push(item);
    if (!this.inBatch) this.arm();
    return item;
  }

  /** Arm the single timer for the earliest item (re-arming only when that moved earlier). */
  private arm(): void {
    const top = this.queue.peek();
    if (!top) {
      this.timer?.cancel();
      this.timer = undefined;
      this.timerDue = Number.POSITIVE_INFINITY;
      return;
    }
    if (this.timer && this.timerDue <= top.due) return;
    this.timer?.cancel();
    this.timerDue = top.due;
    this.timer = this.clock.setTimeout(this.onTimer, top.due - this.clock.now());
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.timerDue = Number.POSITIVE_INFINITY;
    const now = this.clock.now();
    const limit = this.nextSeq;
    const errors: unknown[] = [];
    this.inBatch = true;
    try {
      for (;;) {
        const top = this.queue.peek();
        if (!top || top.due > now || top.seq >= limit) break;
        this.queue.pop();
        top.queued = false;
        try {
          this.deliver(top);
        } catch (err) {
          errors.push(err);
        }
      }
    } finally {
      this.inBatch = false;
      this.arm();
    }
    // A throwing event handler must not wedge the network: report it the way
    // an EventEmitter in a socket callback would, as an uncaught exception.
    for (const err of errors) {
      queueMicrotask(() => {
        throw err;
      });
    }
  };

  private blocked(from: string, to: string): boolean {
    if (from === to) return false;
    if (this.isolated.size > 0 && (this.isolated.has(from) || this.isolated.has(to))) return true;
    return this.partitions.size > 0 && this.partitions.has(key(from, to));
  }

  private isPausedPath(from: string, to: string): boolean {
    return this.paused.size > 0 && (this.paused.has(from) || this.paused.has(to));
  }

  /** Hold `item` when a pause is in its way. */
  private holds(item: Item): boolean {
    if (!this.isPausedPath(item.from, item.to)) return false;
    this.held.push(item);
    this.counters.held++;
    this.note(this.describe(item, 'hold'));
    return true;
  }

  /**
   * Put back in the queue what no pause holds any more. Items keep their
   * original (due, seq), which are in the past: they go out at the next
   * timer, before anything queued later on the same direction.
   */
  private release(): void {
    const still: Item[] = [];
    for (const item of this.held) {
      if (this.isPausedPath(item.from, item.to)) still.push(item);
      else {
        item.queued = true;
        this.queue.push(item);
      }
    }
    this.held = still;
    if (!this.inBatch) this.arm();
  }

  private deliver(item: Item): void {
    switch (item.kind) {
      case 'frame':
        return this.deliverFrame(item);
      case 'fin':
        return this.deliverFin(item);
      case 'rst':
        return this.deliverReset(item);
      case 'syn':
        return this.deliverSyn(item);
      default:
        return this.deliverReply(item);
    }
  }

  private deliverFrame(item: Item): void {
    const sender = item.link!;
    const target = sender.peer;
    if (!target.receiving) {
      this.counters.discarded++;
      this.note(this.describe(item, 'discard'));
      sender.release(item.release);
      return;
    }
    if (this.blocked(item.from, item.to)) {
      this.counters.blackholed++;
      this.note(this.describe(item, 'blackhole'));
      sender.release(item.release);
      return;
    }
    if (this.holds(item)) return;
    this.counters.delivered++;
    this.note(this.describe(item, 'deliver'), item.frame);
    target.arrive(item.frame!, item.release);
  }

  private deliverFin(item: Item): void {
    const sender = item.link!;
    if (this.blocked(item.from, item.to)) {
      this.counters.blackholed++;
      this.note(this.describe(item, 'blackhole'));
    } else {
      if (this.holds(item)) return;
      this.note(this.describe(item, 'fin'));
      sender.peer.remoteClosed();
    }
    sender.localCloseSent();
  }

  private deliverReset(item: Item): void {
    const target = item.link!.peer;
    if (target.state === 'closed') return;
    if (this.blocked(item.from, item.to)) {
      this.counters.blackholed++;
      this.note(this.describe(item, 'blackhole'));
      return;
    }
    if (this.holds(item)) return;
    this.note(this.describe(item, 'rst'));
    target.resetByPeer();
  }

  /** The opening handshake message reached the dialled address. */
  private deliverSyn(item: Item): void {
    const attempt = item.attempt!;
    if (attempt.settled) return; // timed out or aborted before it arrived
    if (this.blocked(item.from, item.to)) {
      this.counters.blackholed++;
      this.note(this.describe(item, 'blackhole'));
      return;
    }
    if (this.holds(item)) return;
    const server = this.bound.get(item.to);
    if (!server) {
      this.schedule(Item.handshake('refused', item.to, item.from, attempt));
      return;
    }
    const reason = server.admit(attempt.client);
    if (reason !== undefined) {
      this.note({ event: 'reject', from: item.from, to: item.to, detail: reason });
      this.counters.rejected++;
      server.reportRejected(attempt.client, new HandshakeRejectedError(reason, 'local'));
      const answer = Item.handshake('rejected', item.to, item.from, attempt);
      answer.reason = reason;
      this.schedule(answer);
      return;
    }
    const [clientEnd, serverEnd] = this.makeConnection(attempt, server);
    attempt.link = clientEnd;
    // The acceptance travels on the listener's end, so it precedes any frame sent there.
    const answer = Item.handshake('accepted', item.to, item.from, attempt);
    answer.link = serverEnd;
    this.scheduleOnLink(serverEnd, answer);
    server.adoptInbound(serverEnd);
  }

  /** A handshake answer reached the client. */
  private deliverReply(item: Item): void {
    const attempt = item.attempt!;
    if (this.blocked(item.from, item.to)) {
      this.counters.blackholed++;
      this.note(this.describe(item, 'blackhole'));
      return;
    }
    if (this.holds(item)) return;
    if (attempt.settled) return; // the client gave up; its end (if any) already sent a reset
    if (item.kind === 'refused') {
      this.counters.refused++;
      this.note({ event: 'refuse', from: item.from, to: item.to });
      attempt.fail(new ConnectionRefusedError(item.from));
    } else if (item.kind === 'rejected') {
      attempt.fail(new HandshakeRejectedError(item.reason!, 'remote'));
    } else {
      this.counters.connections++;
      this.note({ event: 'accept', from: item.from, to: item.to, link: item.link!.pair });
      attempt.succeed(attempt.link!);
    }
  }

  private makeConnection(attempt: ConnectAttempt, server: MemoryTransport): [MemoryLink, MemoryLink] {
    const pair = ++this.pairs;
    const client = attempt.client;
    // Both ends agree on the smaller maximum, as a real handshake would negotiate.
    const maxFrameSize = Math.min(client.capabilities.maxFrameSize, server.capabilities.maxFrameSize);
    const clientEnd = new MemoryLink({
      id: `mem:${pair}:out`,
      direction: 'outbound',
      local: client.identity,
      remote: server.identity,
      remoteAddress: attempt.to,
      localAddress: attempt.from,
      maxFrameSize,
      highWaterMark: client.highWaterMark,
      network: this,
      wire: this,
      pair,
      onClosed: (l) => client.forget(l),
    });
    const serverEnd = new MemoryLink({
      id: `mem:${pair}:in`,
      direction: 'inbound',
      local: server.identity,
      remote: client.identity,
      remoteAddress: attempt.from,
      localAddress: attempt.to,
      maxFrameSize,
      highWaterMark: server.highWaterMark,
      network: this,
      wire: this,
      pair,
      onClosed: (l) => server.forget(l),
    });
    clientEnd.peer = serverEnd;
    serverEnd.peer = clientEnd;
    this.connections.set(pair, [clientEnd, serverEnd]);
    return [clientEnd, serverEnd];
  }

  private describe(item: Item, event: TraceEvent): TraceInput {
    if (item.kind === 'frame') {
      return { event, from: item.from, to: item.to, link: item.link!.pair, frame: item.n!, size: item.frame!.byteLength };
    }
    return { event, from: item.from, to: item.to, ...(item.link ? { link: item.link.pair } : {}), detail: item.kind };
  }

  private note(input: TraceInput, content?: Uint8Array): void {
    const listening = this.listenerCount('trace') > 0;
    const entry = this.tracer.record(this.clock.now(), input, content, listening);
    if (listening) this.emit('trace', entry!);
  }
}

function faultsDetail(f: ResolvedFaults | undefined, bothWays?: boolean): string {
  if (!f) return 'removed';
  const s = `lat=${f.latencyMs} jit=${f.jitterMs} drop=${f.dropRate} dup=${f.duplicateRate} reo=${f.reorderRate}`;
  return bothWays ? `${s} both` : s;
}

/** Make a new, empty network: its own addresses, clock, random source and faults. */
export function createMemoryNetwork(options: MemoryNetworkOptions = {}): MemoryNetwork {
  return new MemoryNetwork(options);
}
