/**
 * What an endpoint keeps per peer node: the incarnation gate, the lanes of
 * frames waiting to go out, the links and their credit, the duplicate
 * window and the out-of-line values on their way. The parts above (flow,
 * serving, links, calls, teardown) act on it; a peer acts on nothing.
 *
 * A peer nothing refers to any more is forgotten (PeerTable.forgetIfIdle):
 * only its incarnation gate stays, in a bounded table.
 */
import type { TimerHandle } from '../clock/index.js';
import type { Link } from '../contracts/transport.js';
import { type ClusterInfraError, ResourceExhaustedError } from '../errors/index.js';
import { type BulkBudget, type BulkReceiveLimits, BulkReceiver, BulkSender, type OutStream } from './bulk.js';
// Type-only: the per-peer tables of calls and served messages hold their entries; those parts own them.
import type { Pending } from './calls.js';
import type { Window } from './registry.js';
import type { Incoming } from './serving.js';
import type { EncodeOptions } from './wire/codec.js';
import { encodeFrame } from './wire/frame.js';
import type { IcsFrame, OneWayFrame, RequestFrame } from './wire/types.js';

/**
 * Sender-side credit of one channel on one link. A message may go while
 * message credit is left and byte credit is positive, so in-flight bytes
 * stay within the window plus one message (a message larger than the whole
 * window can still go, alone).
 */
export type Credit = Window;

/** A frame waiting to go out to one peer. */
export interface Outgoing {
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

export const EMPTY = new Uint8Array(0);

/** What a queued frame costs: its bytes and those of its out-of-line values. */
export const costOf = (o: Outgoing): number => o.bytes.byteLength + (o.bulkBytes ?? 0);

/** Bytes of out-of-line values. */
export function bulkBytesOf(streams: readonly OutStream[] | undefined): number {
  let n = 0;
  if (streams) for (const s of streams) n += s.data.byteLength;
  return n;
}

/** A message held unserved while its link's write backlog is high. */
export interface HeldMessage {
  frame: RequestFrame | OneWayFrame;
  size: number;
}

/** State per link: credits are per link, since the receiver's buffers are. */
export interface LinkState {
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
  /** Whether the bulk window's grant went (with the first chunk the peer sent: `Flow.grantWindow`). */
  bulkWindowSent: boolean;
  /** Requests that spent credit and are not answered yet: their credit comes back with the answer (or a Cancel). */
  unanswered: Map<number, { channel: number; size: number }>;
  /** Messages held unserved while the link's write backlog is past linkBacklogHighWater, in arrival order. */
  held: HeldMessage[];
  /** Bytes of priority messages among them (those spend no credit, so they are bounded here). */
  heldPriorityBytes: number;
  /** We paused reading the link. */
  paused: boolean;
}

/** Incarnations of one node remembered as declared down. */
const MAX_DOWN_REMEMBERED = 16;

/**
 * Which incarnation of a node this endpoint talks to, and which ones were
 * declared down (the last MAX_DOWN_REMEMBERED): frames and links from any
 * other are refused. A copy outlives its Peer when the peer is forgotten.
 */
export class IncarnationGate {
  /** The incarnation we talk to; frames from any other are dropped. */
  current: number | undefined = undefined;
  private readonly down: number[] = [];

  isDown(incarnation: number): boolean {
    return this.down.includes(incarnation);
  }

  /** Remember that `incarnation` is down. */
  markDown(incarnation: number): void {
    if (this.isDown(incarnation)) return;
    this.down.push(incarnation);
    if (this.down.length > MAX_DOWN_REMEMBERED) this.down.shift();
  }

  /** A copy to remember once its peer is forgotten (the peer may still be torn down after that). */
  copy(): IncarnationGate {
    const c = new IncarnationGate();
    c.current = this.current;
    c.down.push(...this.down);
    return c;
  }

  /** Whether it knows anything worth keeping once its peer is forgotten. */
  get empty(): boolean {
    return this.current === undefined && this.down.length === 0;
  }
}

/**
 * The frames waiting to go out to one peer, by lane: replies and control
 * frames, priority, then one queue per channel (served round-robin).
 */
export class Lanes {
  readonly replyQ: Outgoing[] = [];
  readonly prioQ: Outgoing[] = [];
  readonly chanQ = new Map<number, Outgoing[]>();
  /** Channels in round-robin order. */
  readonly rr: number[] = [];
  rrNext = 0;
  /** Bytes of everything queued (the bound is sendQueueBytes). */
  queuedBytes = 0;

  constructor(private readonly bounds: { readonly sendQueueMessages: number; readonly sendQueueBytes: number }) {}

  /** Queue `out`; a channel lane past its bounds throws ResourceExhaustedError (the reply and priority lanes are never refused). */
  push(node: number, out: Outgoing, lane: 'reply' | 'priority' | 'channel'): void {
    if (lane === 'channel') {
      const q = this.queuedFor(out.channel!);
      if (q.length >= this.bounds.sendQueueMessages) {
        throw new ResourceExhaustedError(`send queue to node ${node} on channel ${out.channel} is full`);
      }
      // A lone value larger than the whole bound may still go.
      if (this.queuedBytes > 0 && this.queuedBytes + costOf(out) > this.bounds.sendQueueBytes) {
        throw new ResourceExhaustedError(`send queue to node ${node} holds more than ${this.bounds.sendQueueBytes} bytes`);
      }
      q.push(out);
    } else if (lane === 'priority') {
      this.prioQ.push(out);
    } else {
      this.replyQ.push(out);
    }
    this.queuedBytes += costOf(out);
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

  /** Messages waiting on `channel`. */
  waiting(channel: number): number {
    return this.chanQ.get(channel)?.length ?? 0;
  }

  hasWork(): boolean {
    if (this.replyQ.length + this.prioQ.length > 0) return true;
    for (const q of this.chanQ.values()) if (q.length > 0) return true;
    return false;
  }

  /** Frames queued, all lanes. */
  count(): number {
    let n = this.replyQ.length + this.prioQ.length;
    for (const q of this.chanQ.values()) n += q.length;
    return n;
  }

  /** Take `out` back out of the priority or a channel lane (a call cancelled before it was sent). */
  remove(out: Outgoing): void {
    for (const q of [this.prioQ, ...this.chanQ.values()]) {
      const i = q.indexOf(out);
      if (i >= 0) {
        q.splice(i, 1);
        this.queuedBytes -= costOf(out);
        return;
      }
    }
  }

  /** Drop the replies and control frames (nobody is left to read them). */
  dropReplies(): void {
    for (const o of this.replyQ.splice(0)) this.queuedBytes -= costOf(o);
  }

  /** Drop everything queued but replies, telling each sender why. */
  failQueued(err: ClusterInfraError): void {
    for (const q of [this.prioQ, ...this.chanQ.values()]) {
      for (const o of q.splice(0)) {
        this.queuedBytes -= costOf(o);
        o.onDrop?.(err);
      }
    }
  }
}

/** What every Peer of one endpoint shares. */
export interface PeerConfig {
  readonly bulkThreshold: number;
  readonly dedupWindow: number;
  readonly bulkLimits: BulkReceiveLimits & { readonly maxRefsPerMessage: number };
  /** The node-wide budget of out-of-line values. */
  readonly bulkBudget: BulkBudget;
  readonly sendQueueMessages: number;
  readonly sendQueueBytes: number;
}

export class Peer {
  /** The preferred open link (calls and the lanes go there). */
  link: Link | undefined;
  readonly links = new Set<Link>();
  readonly linkState = new Map<Link, LinkState>();
  connecting: Promise<void> | undefined;
  reconnectTimer: TimerHandle | undefined;
  attempts = 0;
  /** Lost links whose calls wait for the node's fate (linkLossGraceMs), with the timer that ends the wait. */
  orphans: Map<Link, TimerHandle> | undefined;
  readonly lanes: Lanes;
  readonly throttled = new Set<number>();
  readonly wantDrain = new Set<number>();
  /** Calls to this peer waiting for their answer, by id (the call table's). */
  readonly pending = new Map<number, Pending>();
  /** Requests from this peer queued or running asynchronously, by id (for Cancel and nodedown; serving's). */
  readonly serving = new Map<number, Incoming>();
  /** Message ids seen recently (R4); made at the first message, dropped for a new incarnation (`forgetIds`). */
  private seen: DedupWindow | undefined;
  /** Ids whose out-of-line values are still arriving. */
  readonly awaitingBulk = new Set<number>();
  pumping = false;
  /** Alternates the bulk lane with the channels. */
  bulkFirst = false;
  readonly bulkOut = new BulkSender();
  readonly bulkIn: BulkReceiver;
  /** Streams taken by the encode under way. */
  private encodingStreams: OutStream[] = [];
  private readonly encodeOptions: EncodeOptions;

  constructor(
    readonly nodeNum: number,
    private readonly config: PeerConfig,
    readonly gate: IncarnationGate,
  ) {
    this.lanes = new Lanes(config);
    this.bulkIn = new BulkReceiver(config.bulkLimits, config.bulkBudget);
    this.encodeOptions = {
      outOfLine: { threshold: config.bulkThreshold, take: (data) => this.bulkOut.take(data, this.encodingStreams) },
    };
  }

  /** The incarnation we talk to (the gate's). */
  get incarnation(): number | undefined {
    return this.gate.current;
  }

  set incarnation(incarnation: number | undefined) {
    this.gate.current = incarnation;
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

  /**
   * Record message `id`; false when it was seen within the dedup window. Ids
   * grow per sender incarnation, so one slot per `id % window` remembers the
   * last `window` ids in O(1) and without allocation.
   */
  firstSight(id: number): boolean {
    return (this.seen ??= new DedupWindow(this.config.dedupWindow)).firstSight(id);
  }

  /** Ids start again (the peer's next incarnation). */
  forgetIds(): void {
    this.seen = undefined;
  }
}

/**
 * The last `window` message ids of one sender, one slot per `id % window`.
 * The slots grow with the ids (from 64, doubling, up to `window`), so a
 * peer that sent a few messages holds a few slots, not `window` of them
 * (a node in a formation of 256 sees a few dozen messages from most of
 * its peers). Every id held is below the slot count until the slots reach
 * `window`, so each sits where a full array would hold it: the answers are
 * those of a `window`-slot array from the first id on.
 */
export class DedupWindow {
  private slots: Uint32Array;

  constructor(private readonly window: number) {
    this.slots = new Uint32Array(Math.min(64, window));
  }

  /** Record `id`; false when it was seen within the window. */
  firstSight(id: number): boolean {
    let slots = this.slots;
    if (id >= slots.length && slots.length < this.window) slots = this.grow(id);
    const slot = id % slots.length;
    if (slots[slot] === id) return false;
    slots[slot] = id;
    return true;
  }

  /** Slots enough for `id` (or `window` of them), the ids held kept in place. */
  private grow(id: number): Uint32Array {
    let n = this.slots.length;
    while (n <= id && n < this.window) n *= 2;
    const grown = new Uint32Array(Math.min(n, this.window));
    for (const held of this.slots) if (held !== 0) grown[held % grown.length] = held;
    this.slots = grown;
    return grown;
  }
}

/** Peers forgotten (no link, call or work) whose incarnation gate is still remembered. */
const MAX_FORGOTTEN_PEERS = 4096;

/** The peers of one endpoint, and the gates of those it forgot. */
export class PeerTable {
  private readonly peers = new Map<number, Peer>();
  /** The incarnation gates of peers forgotten while idle (bounded, oldest out first). */
  private readonly forgotten = new Map<number, IncarnationGate>();

  constructor(private readonly config: PeerConfig) {}

  /** The peer of `node`, made (with its remembered gate) when there is none. */
  get(node: number): Peer {
    let p = this.peers.get(node);
    if (!p) {
      const gate = this.forgotten.get(node);
      if (gate) this.forgotten.delete(node);
      p = new Peer(node, this.config, gate ?? new IncarnationGate());
      this.peers.set(node, p);
    }
    return p;
  }

  /** The peer of `node` if this endpoint keeps one. */
  find(node: number): Peer | undefined {
    return this.peers.get(node);
  }

  /** The peer of `node`, brought back if it was forgotten (its gate is wanted); undefined for a node never met. */
  known(node: number): Peer | undefined {
    return this.peers.get(node) ?? (this.forgotten.has(node) ? this.get(node) : undefined);
  }

  values(): Iterable<Peer> {
    return this.peers.values();
  }

  get size(): number {
    return this.peers.size;
  }

  /**
   * Drop a peer nothing refers to any more (no link, call, work or timer),
   * keeping only its incarnation gate, in a bounded table: a peer that came
   * and went (or an identity a hostile peer made up) costs a few bytes.
   */
  forgetIfIdle(peer: Peer): void {
    if (
      peer.links.size > 0 ||
      peer.connecting ||
      peer.reconnectTimer ||
      peer.pending.size > 0 ||
      peer.serving.size > 0 ||
      peer.awaitingBulk.size > 0 ||
      peer.bulkOut.active.length > 0 ||
      peer.lanes.hasWork() ||
      this.peers.get(peer.nodeNum) !== peer
    ) {
      return;
    }
    this.peers.delete(peer.nodeNum);
    if (peer.gate.empty) return;
    this.forgotten.set(peer.nodeNum, peer.gate.copy());
    if (this.forgotten.size > MAX_FORGOTTEN_PEERS) this.forgotten.delete(this.forgotten.keys().next().value!);
  }
}
