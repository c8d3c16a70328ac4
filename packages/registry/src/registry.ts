/**
 * The registry's driver: the only code here that awaits. It wires the two
 * state machines (ReplicaState on every node, SequencerState on the key
 * service's host) to the public API of @clusterinfra/core:
 *
 * - the map's key service `registry.<name>` sequences writes (`write`),
 *   hands out snapshots and subscribes (`sync`), answers `status`; its
 *   `pullData` returns this node's replica, its `failoverData` starts a
 *   sequencer from the freshest one and installs it on the survivors before
 *   the key service is ready (so before any new write);
 * - a replica service on every node (`apply`, `install`, `resync`) takes the
 *   sequencer's pushes;
 * - a subsystem's nodedown callback (inside the cleanup barrier) removes
 *   what the downed incarnation owned.
 *
 * Every decision is a synchronous step of a state machine; results of IO
 * (a push that failed, a snapshot that arrived) come back as new steps,
 * checked against the state as it is then.
 */
import {
  type ClusterNode,
  detached,
  every,
  type Ics,
  type FailoverInput,
  type KeyServiceContext,
  type KeyServiceHandlerContext,
  type KeyServiceInfo,
  type NodeEvent,
  type RegisteredService,
  isClusterInfraError,
  ServiceExistsError,
  sleep,
  type TimerHandle,
} from '@clusterinfra/core';
import { EventEmitter } from 'eventemitter3';
import { checkNode, checkPrefix, checkStartOptions, checkWatchOptions, checkWriteOptions } from './args.js';
import { registryCanaries } from './canaries.js';
import { RegistryError } from './errors.js';
import { type RegistryOptions, type ResolvedRegistryOptions, resolveOptions } from './options.js';
import { putEvent, ReplicaState } from './replica.js';
import { freshest, SequencerState } from './sequencer.js';
import { type Change, type Entry, type Owner, type PlainValue, type RegistryEvent, revision, type Snapshot } from './types.js';
import { checkEntry, checkKey, entryBytes } from './values.js';
import { Watcher } from './watch.js';
import { decodeSnapshot, encodeSnapshot, parseChanges, parseWrite, statusSchema, type WriteReply, writeReplySchema } from './wire.js';

export interface RegistryEvents {
  /** Every change this node's replica applies, in apply order (the same order on every node), never two at once. */
  change: (e: RegistryEvent) => void;
  /** This node installed a snapshot (it started, resynced, or a new sequencer took over). */
  synced: (info: { epoch: number; seq: number }) => void;
  /** This node, as the new sequencer of `epoch`, rebuilt the map from the replicas of `from` (its own included): the nodes whose `pullData` answer it got. */
  rebuilt: (info: { epoch: number; from: number[] }) => void;
  /** This node, as the sequencer of `epoch`, dropped a replica that did not apply a push (or the rebuilt map) in time: it resyncs, and writes are acknowledged without it meanwhile. */
  dropped: (info: { epoch: number; node: number; incarnation: number }) => void;
}

export interface WriteOptions {
  /** Compare-and-set: the write applies only if the entry is at this version (0: the key must be absent). */
  expectVersion?: number;
  signal?: AbortSignal;
  /** @default 10000 */
  timeoutMs?: number;
}

export interface PutOptions extends WriteOptions {
  /** Tie the entry to this node's incarnation: the sequencer removes it when this incarnation goes down. @default false */
  owned?: boolean;
}

export interface WatchOptions {
  signal?: AbortSignal;
  /** Yield the matching entries first (cause `initial`), then the changes. @default true */
  initial?: boolean;
}

const DEFAULT_WRITE_TIMEOUT_MS = 10_000;
/** At most this many changes, or about this many bytes, in one push. */
const MAX_BATCH = 1024;
const MAX_BATCH_BYTES = 256 * 1024;

/** About what a change costs on the wire. */
function changeBytes(c: Change): number {
  return 64 + entryBytes(c.key, c.value ?? null);
}

/** A replicated map on one node. Create it before `node.start()`, call `start()` after. docs/registry.md. */
export class Registry extends EventEmitter<RegistryEvents> implements AsyncDisposable {
  readonly name: string;
  /** The name of the map's key service. */
  readonly keyService: string;
  private readonly opts: ResolvedRegistryOptions;
  private readonly replica: ReplicaState;
  /** The sequencer, while this node hosts the key service and it is ready. */
  private sequencer: SequencerState | undefined;
  private phase: 'idle' | 'started' | 'closed' = 'idle';
  private service: RegisteredService | undefined;
  /** The ICS endpoint the replica service is registered on. */
  private serviceOn: Ics | undefined;
  private readonly watchers = new Set<Watcher>();
  /** Handlers of `apply` waiting for a buffered change, by `epoch:seq`. */
  private readonly waiters = new Map<string, ((applied: boolean) => void)[]>();
  private waiting = 0;
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  /**
   * The last sync failed (its answer did not come in time). The sequencer
   * subscribed this replica when it answered, so `status` says subscribed
   * while the snapshot never arrived: the check loop syncs again.
   */
  private syncFailed = false;
  private checking = false;
  private resetCount = 0;
  /** Set on eviction to the evicted incarnation: the new one's first snapshot from its current sequencer installs whatever its numbers. */
  private evictedFrom: number | undefined;
  /** The node's incarnation and history the replica's buffered changes were sent to (see ownBuffer). */
  private bufferOf = '';
  /** See `history`. */
  private mapHistory: string | null = null;
  /** Changes sequenced and applied here, waiting for their push (see publish). */
  private readonly outbox: { seq: SequencerState; change: Change; bytes: number; done: ((pushed: boolean) => void) | undefined }[] = [];
  private pushing = false;
  private timer: TimerHandle | undefined;

  constructor(
    private readonly node: ClusterNode,
    options: RegistryOptions,
  ) {
    super();
    checkNode(node);
    this.opts = resolveOptions(options);
    this.name = this.opts.name;
    this.keyService = `registry.${this.name}`;
    this.replica = new ReplicaState(this.opts.maxBuffered);
    node.registerKeyService({
      name: this.keyService,
      critical: this.opts.critical,
      subservice: this.opts.subservice,
      idempotent: ['status'],
      handlers: {
        write: (args, ctx) => this.onWrite(args, ctx),
        sync: (_args, ctx) => this.onSync(ctx),
        status: (args, ctx) => this.onStatus(args, ctx),
      },
      failover: (ctx) => this.onFailover(ctx),
      pullData: (ctx) => this.onPull(ctx),
      failoverData: (results, ctx) => this.onFailoverData(results, ctx),
      handover: () => encodeSnapshot(this.sequencer?.snapshot() ?? this.replica.snapshot()),
    });
    node.registerSubsystem({ name: this.keyService, nodedown: (e) => this.onNodeDown(e) });
    node.on('keyservice', this.onKeyService);
    node.on('evicted', this.onEvicted);
  }

  // ================================================================ lifecycle

  /**
   * Serve the replica and take a snapshot (a late joiner gets the map, then
   * the stream). Call after `node.start()` resolved. Resolves once this
   * node has the map.
   */
  async start(options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<this> {
    if (this.phase === 'closed') throw new RegistryError('REGISTRY_ERR_CLOSED', 'registry closed');
    checkStartOptions(options);
    if (!(this.node.communication as Ics | undefined)) throw new RegistryError('REGISTRY_ERR_NOT_STARTED', 'start the ClusterNode before the registry');
    if (this.phase === 'idle') {
      this.phase = 'started';
      this.timer = every(this.clock, this.opts.checkIntervalMs, () => this.check());
    }
    const deadline = this.clock.now() + (options.timeoutMs ?? 30_000);
    while (!this.replica.installed || !this.ensureService()) {
      if (this.currentPhase() === 'closed') throw new RegistryError('REGISTRY_ERR_CLOSED', 'registry closed');
      try {
        // The node's ICS endpoint may be closing (evicted: a new incarnation comes): wait for the next one.
        if (!this.ensureService()) throw new RegistryError('REGISTRY_ERR_NOT_STARTED', 'the node is restarting as a new incarnation');
        await this.sync();
      } catch (err) {
        if (this.clock.now() >= deadline) throw err;
        await sleep(this.clock, Math.min(100, this.opts.checkIntervalMs), options.signal);
      }
    }
    return this;
  }

  /**
   * Stop following the map on this node: watchers end, the check loop
   * stops, the replica service goes. The key service and its nodedown
   * subsystem stay (core cannot unregister a key service): until the node
   * closes or leaves it may still host the sequencer, which then still
   * sequences writes and removes the entries of owners that go down.
   */
  async close(): Promise<void> {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.timer?.cancel();
    this.service?.unregister();
    this.node.off('keyservice', this.onKeyService);
    this.node.off('evicted', this.onEvicted);
    for (const w of [...this.watchers]) w.end();
    for (const list of this.waiters.values()) for (const r of list) r(false);
    this.waiters.clear();
    await this.syncing?.catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ================================================================ reads: local, never block

  get(key: string): Entry | undefined {
    return this.replica.entries.get(key);
  }

  has(key: string): boolean {
    return this.replica.entries.has(key);
  }

  /** Entries whose key starts with `prefix`, by key. */
  entries(prefix = ''): Entry[] {
    checkPrefix(prefix);
    return [...this.replica.entries.values()].filter((e) => e.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  get size(): number {
    return this.replica.entries.size;
  }

  /** The revision this node's map is at: only grows. */
  get revision(): number {
    return this.replica.revision;
  }

  /**
   * How often this node reset its position because the cluster's history
   * started again (epochs restart with it): the only times `revision` went
   * down. See docs/registry.md.
   */
  get resets(): number {
    return this.resetCount;
  }

  /** This node has the map (a snapshot installed). */
  get synced(): boolean {
    return this.replica.installed;
  }

  /**
   * The cluster history (`node.historyId`) the map belongs to: the node's
   * when its last snapshot was installed (null before the first). Revisions
   * are comparable within one history only: an evicted node keeps its map
   * until its new incarnation's first snapshot, and if the cluster re-formed
   * meanwhile, that map is of the old history whatever its revision says.
   */
  get history(): string | null {
    return this.mapHistory;
  }

  // ================================================================ writes: through the sequencer

  /** Set `key`. Resolves with the entry once the sequencer and every replica it pushes to applied it. */
  async put(key: string, value: PlainValue, options: PutOptions = {}): Promise<Entry> {
    this.usable();
    checkWriteOptions(options, 'put');
    checkEntry(key, value, this.opts);
    const owned = options.owned === true;
    const r = await this.write({ kind: 'put', key, value, ...(options.expectVersion !== undefined ? { expectVersion: options.expectVersion } : {}), ...(owned ? { owned } : {}) }, options);
    return { key, value, version: r.version, ...(owned ? { owner: { node: this.node.nodeNum, incarnation: this.node.incarnation } } : {}) };
  }

  /**
   * Remove `key`. Resolves, once applied like a put, with whether it
   * existed and the revision of the removal (every write has one).
   */
  async delete(key: string, options: WriteOptions = {}): Promise<{ existed: boolean; version: number }> {
    this.usable();
    checkWriteOptions(options, 'delete');
    checkKey(key, this.opts);
    const r = await this.write({ kind: 'delete', key, ...(options.expectVersion !== undefined ? { expectVersion: options.expectVersion } : {}) }, options);
    return { existed: r.existed, version: r.version };
  }

  private async write(op: unknown, options: WriteOptions): Promise<{ version: number; existed: boolean }> {
    const raw = await this.node.callKeyService(this.keyService, 'write', op, {
      timeoutMs: options.timeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const reply = writeReplySchema.parse(raw) as WriteReply;
    if (!reply.ok) throw new RegistryError(reply.code, reply.message, reply.current !== undefined ? { current: reply.current } : {});
    return reply;
  }

  // ================================================================ watch

  /**
   * Changes to keys starting with `prefix`: first the matching entries
   * (unless `initial: false`), then every change in apply order. Ends when
   * `signal` aborts or the registry closes; throws REGISTRY_ERR_WATCH_OVERFLOW
   * if the reader falls `maxWatchQueue` events behind.
   */
  watch(prefix = '', options: WatchOptions = {}): AsyncIterableIterator<RegistryEvent> {
    this.usable();
    checkPrefix(prefix);
    checkWatchOptions(options);
    if (this.watchers.size >= this.opts.maxWatchers) {
      throw new RegistryError('REGISTRY_ERR_TOO_MANY_WATCHERS', `this node has maxWatchers (${this.opts.maxWatchers}) watchers on ${this.name}`);
    }
    const w = new Watcher(prefix, this.opts.maxWatchQueue, (x) => this.watchers.delete(x), options.signal);
    if (options.signal?.aborted) return w;
    this.watchers.add(w);
    if (options.initial !== false) for (const e of this.entries(prefix)) w.push(putEvent(e, undefined, 'initial'));
    return w;
  }

  // ================================================================ replica side

  private get clock() {
    return this.opts.clock ?? this.node.clock;
  }

  /** Read through a call, so TypeScript does not narrow it across awaits. */
  private currentPhase(): 'idle' | 'started' | 'closed' {
    return this.phase;
  }

  private usable(): void {
    if (this.phase === 'closed') throw new RegistryError('REGISTRY_ERR_CLOSED', 'registry closed');
  }

  /**
   * Serve the replica on the node's current ICS endpoint. After an eviction
   * the node has a new one (core carries the services registered on the
   * former one); while it is being replaced the old one is closed.
   */
  private ensureService(): boolean {
    const ics = this.node.communication as Ics | undefined;
    if (!ics) return false;
    if (this.serviceOn === ics) return true;
    try {
      this.service = ics.registerService({
        channel: this.opts.channel,
        subservice: this.opts.subservice,
        name: this.keyService,
        handlers: {
          apply: (args, ctx) => this.onApply(args, ctx.caller.nodeNum, ctx.signal),
          install: (args, ctx) => this.onInstall(args, ctx.caller.nodeNum),
          resync: () => void this.resync(),
        },
      });
    } catch (err) {
      // ServiceExistsError: carried over from the former incarnation's endpoint.
      if (isClusterInfraError(err, 'ICS_ERR_CLOSED')) return false;
      if (!(err instanceof ServiceExistsError)) throw err;
    }
    this.serviceOn = ics;
    return true;
  }

  /**
   * A sequencer at `epoch` that this node's history names as current (on
   * `from`) is ahead of us even when our numbers are higher: the cluster's
   * history started again and key-service epochs restarted with it (or we
   * were evicted into a newer history). Then forget our position, so its
   * snapshot installs. `sameEpochToo`: an install or our own activation, for
   * which having that epoch already can only mean another history.
   *
   * `seq`: the snapshot's, when a snapshot follows. After an eviction the
   * first one the new incarnation gets from the sequencer its history names
   * decides: in the same history it is at least as new as what we have and
   * installs as usual (the revision goes on); if it is older, the new
   * incarnation joined another history, and we yield to it (a reset).
   */
  private yieldTo(from: number, epoch: number, sameEpochToo: boolean, seq?: number): void {
    this.leaveFormerHistory();
    const k = this.node.keyService(this.keyService);
    if (!k || k.host !== from || k.epoch !== epoch) return;
    const r = this.replica;
    const evicted = seq !== undefined && this.evictedFrom !== undefined && this.evictedFrom !== this.node.incarnation;
    if (evicted) this.evictedFrom = undefined;
    if (r.epoch > epoch || r.fence > epoch || (r.epoch === epoch && (sameEpochToo || (evicted && seq <= r.seq)))) {
      const down = !evicted || revision(epoch, seq) < r.revision;
      r.rebase();
      if (down) this.resetCount++;
    }
  }

  /**
   * A map of a former cluster history: its (epoch, seq) mean nothing in the
   * node's current one (epochs start again with a history). Its position is
   * forgotten (a reset), before anything of the current history is taken:
   * a pull (seed 259), a push, a snapshot. Compared as they were, a push of
   * the new history at the same epoch and a lower seq counted as applied
   * already and was skipped, acknowledged (sim seed 288 at 5 nodes, voters
   * 'candidates'); a snapshot of it did not install, yet the map was
   * labelled with the new history and followed it (seed 3284). Not only on
   * 'evicted' (yieldTo): the new history's sequencer may be at another
   * epoch than the node's key-service table says, or answer before it does.
   */
  private leaveFormerHistory(): void {
    if (!this.replica.installed || this.node.historyId === null || this.mapHistory === this.node.historyId) return;
    this.replica.rebase();
    this.resetCount++;
  }

  private get address(): { channel: string; subservice: number } {
    return { channel: this.opts.channel, subservice: this.opts.subservice };
  }

  private deliver(events: RegistryEvent[]): void {
    for (const e of events) {
      this.emit('change', e);
      for (const w of this.watchers) if (w.matches(e.key)) w.push(e);
    }
  }

  /**
   * Keep buffered changes only for the incarnation and cluster history that
   * received them: (epoch, seq) names one change within one history only,
   * and a new incarnation is subscribed afresh by its own sync. A replica
   * that never installed a snapshot buffers every push it gets; after the
   * cluster re-formed (epochs start again), the new history's snapshot at
   * the same epoch drained a change of the former history that followed on
   * (sim seed 3092 at 5 nodes, registry, voters 'candidates': nodes 3 and 5
   * ended one change ahead, with another map). Checked by node.incarnation
   * and node.historyId when a change or snapshot arrives, not on 'evicted':
   * not every new incarnation comes with that event.
   */
  private ownBuffer(): void {
    const of = `${this.node.incarnation}:${this.node.historyId}`;
    if (of === this.bufferOf) return;
    this.bufferOf = of;
    this.replica.dropBuffered();
  }

  private installed(snap: Snapshot): void {
    this.ownBuffer();
    this.mapHistory = this.node.historyId;
    const before = this.replica.revision;
    this.deliver(this.replica.install(snap));
    if (this.replica.revision !== before || this.replica.epoch === snap.epoch) this.emit('synced', { epoch: this.replica.epoch, seq: this.replica.seq });
    this.settleWaiters();
  }

  /** Answer the `apply` handlers whose change is now applied, or can no longer be. */
  private settleWaiters(): void {
    for (const [k, list] of this.waiters) {
      const [epoch, seq] = k.split(':').map(Number) as [number, number];
      const applied = this.replica.hasApplied(epoch, seq);
      if (!applied && !this.replica.abandoned(epoch, seq)) continue;
      this.waiters.delete(k);
      this.waiting -= list.length;
      for (const r of list) r(applied);
    }
  }

  private async onApply(args: unknown, from: number, signal: AbortSignal): Promise<boolean> {
    if (this.phase === 'closed') return false;
    const changes = parseChanges(args, this.opts.maxDepth);
    this.yieldTo(from, changes[0]!.epoch, false);
    this.ownBuffer();
    for (const c of changes) {
      const step = this.replica.receive(c);
      this.deliver(step.events);
      if (step.status === 'stale' || step.status === 'overflow') {
        this.settleWaiters();
        if (step.status === 'overflow') void this.resync();
        return false;
      }
    }
    this.settleWaiters();
    const last = changes.at(-1)!;
    if (this.replica.hasApplied(last.epoch, last.seq)) return true;
    // This node has no snapshot of that epoch yet and asks for none: ask now.
    if (last.epoch > this.replica.epoch && !this.syncing) void this.resync();
    if (this.waiting >= this.opts.maxBuffered) return false;
    return new Promise<boolean>((resolve) => {
      const k = `${last.epoch}:${last.seq}`;
      const list = this.waiters.get(k) ?? [];
      let done = false;
      const finish = (applied: boolean): void => {
        if (done) return;
        done = true;
        signal.removeEventListener('abort', onAbort);
        resolve(applied);
      };
      const onAbort = (): void => {
        const i = list.indexOf(finish);
        if (i >= 0) {
          list.splice(i, 1);
          this.waiting--;
        }
        finish(false);
      };
      list.push(finish);
      this.waiting++;
      this.waiters.set(k, list);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private onInstall(args: unknown, from: number): boolean {
    if (this.phase === 'closed') return false;
    const snap = decodeSnapshot(args, this.opts.maxDepth);
    this.yieldTo(from, snap.epoch, snap.seq <= this.replica.seq, snap.seq);
    this.installed(snap);
    return this.replica.epoch === snap.epoch;
  }

  /** Take a snapshot from the sequencer (and follow it). At most one at a time; a request during one runs once more after it. */
  private sync(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    const run = async (): Promise<void> => {
      do {
        this.syncAgain = false;
        if (this.sequencer) {
          this.installed(this.sequencer.snapshot());
          continue;
        }
        // Failed until a snapshot is installed (a call that timed out, a malformed answer).
        this.syncFailed = true;
        const bytes = await this.node.callKeyService(this.keyService, 'sync', null, { timeoutMs: this.opts.pushTimeoutMs * 2 });
        if (this.phase === 'closed') return;
        const snap = decodeSnapshot(bytes, this.opts.maxDepth);
        const host = this.node.keyService(this.keyService)?.host;
        if (host !== undefined) this.yieldTo(host, snap.epoch, false, snap.seq);
        this.installed(snap);
        this.syncFailed = false;
      } while (this.syncAgain && this.phase !== 'closed');
    };
    this.syncing = detached(run).finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  /** A sync in the background (the check loop retries one that failed). */
  private resync(): Promise<void> {
    if (this.phase !== 'started') return Promise.resolve();
    return this.sync().catch(() => {});
  }

  /** Every checkIntervalMs: does this node still follow the current sequencer? */
  private check(): void {
    if (this.phase !== 'started' || this.syncing || this.checking || !this.ensureService()) return;
    if (this.sequencer) {
      if (this.replica.epoch < this.sequencer.epoch) void this.resync();
      return;
    }
    const info = this.node.keyService(this.keyService);
    if (!info?.ready) return;
    if (!this.replica.installed || this.replica.epoch < info.epoch || this.syncFailed) {
      void this.resync();
      return;
    }
    this.checking = true;
    detached(() => this.node.callKeyService(this.keyService, 'status', { epoch: this.replica.epoch, seq: this.replica.seq }, { timeoutMs: this.opts.pushTimeoutMs }))
      .then((r) => {
        const s = r as { epoch: number; subscribed: boolean };
        if (!s.subscribed || s.epoch !== this.replica.epoch) void this.resync();
      })
      .catch(() => {})
      .finally(() => (this.checking = false));
  }

  private readonly onKeyService = (info: KeyServiceInfo): void => {
    if (info.name !== this.keyService || !info.ready || info.epoch <= this.replica.epoch) return;
    if (info.host === this.node.nodeNum) return;
    void this.resync();
  };

  /**
   * A new incarnation of this node: the sequencer follows the old one no
   * more (and removes what it owned). The map and its position stay until
   * the new incarnation's snapshot (see yieldTo): dropping the position at
   * once took the revision to 0 and `synced` to false in the same history,
   * and two evicted nodes at revision 0 could hold different maps.
   */
  private readonly onEvicted = (e: { incarnation: number }): void => {
    this.evictedFrom = e.incarnation;
    void this.resync();
  };

  // ================================================================ sequencer side (the key service's host)

  /** The owner's incarnation is the one the membership has Up (or coming up). */
  private live(o: Owner): boolean {
    const m = this.node.info(o.node);
    return m !== undefined && m.incarnation === o.incarnation && (m.state === 'Up' || m.state === 'ComingUp');
  }

  /**
   * The membership has the caller's incarnation declared down. The
   * sequencer subscribes it no more and refuses its writes, as it does once
   * its nodedown ran here (SequencerState.wentDown): its nodedown
   * unsubscribed it, or will, so a write would be acknowledged without it.
   */
  private declaredDown(c: Owner): boolean {
    const m = this.node.info(c.node);
    return m !== undefined && m.incarnation === c.incarnation && (m.state === 'GoingDown' || m.state === 'Down');
  }

  private onFailover(ctx: KeyServiceContext): void {
    this.sequencer = undefined;
    ctx.signal.addEventListener('abort', () => {
      if (this.sequencer?.epoch === ctx.epoch) this.sequencer = undefined;
    });
  }

  private onPull(ctx: KeyServiceContext): Uint8Array {
    // A map of a former cluster history could beat the current history's
    // replicas in the rebuild and undo its acknowledged writes (seed 259):
    // it answers (0, 0), and the later install applies here as usual.
    this.leaveFormerHistory();
    // From now on nothing from an older sequencer is applied here.
    this.replica.raiseFence(ctx.epoch);
    this.settleWaiters();
    return encodeSnapshot(this.replica.snapshot());
  }

  /**
   * Rebuild from the survivors: the freshest replica (highest epoch, then
   * seq) holds every change any of them applied. It is installed on every
   * survivor that answers, then the owned entries of incarnations no longer
   * Up are deleted, all before the key service is ready, so before any new
   * write.
   */
  private async onFailoverData(input: FailoverInput, ctx: KeyServiceContext): Promise<void> {
    const results = input.pulled;
    const states: Snapshot[] = [this.replica.snapshot()];
    // The old host's hand-over (a clean leave) is one more replica, the freshest as a rule.
    const given = input.handover?.data === undefined || input.handover.data === null ? [] : [input.handover.data];
    const from = new Set([this.node.nodeNum]);
    for (const [n, data] of [...given.map((d) => [undefined, d] as const), ...results.entries()]) {
      try {
        states.push(decodeSnapshot(data, this.opts.maxDepth));
        if (n !== undefined) from.add(n);
      } catch {
        // A malformed answer counts as no answer.
      }
    }
    this.emit('rebuilt', { epoch: ctx.epoch, from: [...from].sort((a, b) => a - b) });
    const seq = new SequencerState(ctx.epoch, freshest(states), this.opts);
    const snap = seq.snapshot();
    this.yieldTo(this.node.nodeNum, ctx.epoch, true, snap.seq);
    this.installed(snap);
    const ics = this.node.communication;
    const others = [...results.keys()].filter((n) => n !== this.node.nodeNum && this.node.info(n)?.state === 'Up');
    if (others.length > 0) {
      const r = await detached(() => ics.multicast<boolean>(others, this.address, 'install', encodeSnapshot(snap), { timeoutMs: this.opts.pushTimeoutMs }));
      for (const [n, s] of r.results) {
        const m = this.node.info(n);
        if (s.ok && s.value === true && m) seq.subscribe(n, m.incarnation);
        else if (m) this.emit('dropped', { epoch: ctx.epoch, node: n, incarnation: m.incarnation });
      }
    }
    if (ctx.signal.aborted) return;
    // No write comes before this returns (the key service is not ready): the
    // entries of owners no longer Up go first, as sequenced owner-down deletes.
    this.sequencer = seq;
    const gone = seq.sweep((o) => this.live(o));
    if (gone.length > 0) await this.publish(seq, gone);
  }

  /**
   * The sequencer that serves this call: of the call's epoch. Core serves a
   * key-service call only for a caller of this node's cluster history
   * (docs/key-services.md, "Bound to one history"), so a node still in a
   * former history, whose host was this node's former incarnation at the
   * same epoch number, never gets here (sim seed 12, 5 nodes, registry).
   */
  private gate(ctx: KeyServiceHandlerContext): SequencerState | undefined {
    const s = this.sequencer;
    return s && s.epoch === ctx.epoch ? s : undefined;
  }

  private notSequencing(ctx: KeyServiceHandlerContext): string {
    return `node ${this.node.nodeNum} does not sequence epoch ${ctx.epoch} for node ${ctx.caller.nodeNum} (incarnation ${ctx.caller.incarnation})`;
  }

  private async onWrite(args: unknown, ctx: KeyServiceHandlerContext): Promise<WriteReply> {
    const seq = this.gate(ctx);
    if (!seq) return { ok: false, code: 'REGISTRY_ERR_NOT_SEQUENCER', message: this.notSequencing(ctx) };
    const op = parseWrite(args);
    const caller = { node: ctx.caller.nodeNum, incarnation: ctx.caller.incarnation };
    const r = seq.write(op, caller, op.kind === 'put' && op.owned === true ? this.live(caller) : true, this.declaredDown(caller));
    if (!r.ok) return { ok: false, code: r.code, message: r.message, ...(r.current !== undefined ? { current: r.current } : {}) };
    await this.publish(seq, [r.change]);
    return { ok: true, version: r.entry?.version ?? revision(r.change.epoch, r.change.seq), existed: r.existed };
  }

  private onSync(ctx: KeyServiceHandlerContext): Uint8Array {
    const seq = this.gate(ctx);
    if (!seq) throw new RegistryError('REGISTRY_ERR_NOT_SEQUENCER', this.notSequencing(ctx));
    const caller = { node: ctx.caller.nodeNum, incarnation: ctx.caller.incarnation };
    if (seq.wentDown(caller) || this.declaredDown(caller)) throw new RegistryError('REGISTRY_ERR_OWNER_DOWN', `node ${caller.node} incarnation ${caller.incarnation} was declared down: it follows the map as its next incarnation`);
    return encodeSnapshot(seq.subscribe(ctx.caller.nodeNum, ctx.caller.incarnation));
  }

  private onStatus(args: unknown, ctx: KeyServiceHandlerContext): { epoch: number; seq: number; subscribed: boolean } {
    statusSchema.parse(args);
    const seq = this.gate(ctx);
    if (!seq) return { epoch: ctx.epoch, seq: 0, subscribed: false };
    return { epoch: seq.epoch, seq: seq.seq, subscribed: seq.isSubscribed(ctx.caller.nodeNum, ctx.caller.incarnation) };
  }

  /**
   * Apply changes here, push them to every subscriber and wait until each
   * applied them or failed; a subscriber that failed is dropped (and told
   * to resync). So when this resolves, every replica still subscribed has
   * applied the changes.
   *
   * Group commit: one push is in flight at a time; changes sequenced
   * meanwhile wait in the outbox and go together in the next push (at most
   * MAX_BATCH changes or MAX_BATCH_BYTES, so a push stays well below the
   * maximum message size). The outbox holds at most what the key service's
   * handler pool lets run at once.
   */
  private publish(seq: SequencerState, changes: Change[]): Promise<void> {
    for (const c of changes) this.deliver(this.replica.receive(c).events);
    this.settleWaiters();
    if (seq.subscribers().every(([n]) => n === this.node.nodeNum)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = (pushed: boolean): void => (pushed ? resolve() : reject(new RegistryError('REGISTRY_ERR_NOT_SEQUENCER', 'the sequencer stopped while the write was being replicated: it may or may not be in the map')));
      changes.forEach((c, i) => this.outbox.push({ seq, change: c, bytes: changeBytes(c), done: i === changes.length - 1 ? done : undefined }));
      if (!this.pushing) void this.flush();
    });
  }

  /** Push the outbox, batch after batch, until it is empty. */
  private async flush(): Promise<void> {
    this.pushing = true;
    try {
      while (this.outbox.length > 0) {
        const seq = this.outbox[0]!.seq;
        let bytes = 0;
        let n = 0;
        while (n < this.outbox.length && n < MAX_BATCH && this.outbox[n]!.seq === seq && (n === 0 || bytes + this.outbox[n]!.bytes <= MAX_BATCH_BYTES)) bytes += this.outbox[n++]!.bytes;
        const batch = this.outbox.splice(0, n);
        if (registryCanaries.ackBeforeReplicated) {
          for (const b of batch) b.done?.(true);
          for (const b of batch) b.done = undefined;
        }
        // A batch of a sequencer that is no longer this node's is not pushed
        // (its epoch is over), and its writes are not acknowledged: nobody
        // else may have them.
        let pushed = false;
        try {
          if (seq === this.sequencer) {
            await this.push(seq, batch.map((b) => b.change));
            // The activation may have ended meanwhile (a newer epoch pulled the
            // replicas, which then refused the push): no acknowledgment then.
            pushed = seq === this.sequencer;
          }
        } finally {
          for (const b of batch) b.done?.(pushed);
        }
      }
    } finally {
      this.pushing = false;
    }
  }

  private async push(seq: SequencerState, changes: Change[]): Promise<void> {
    const targets = seq.subscribers().filter(([n]) => n !== this.node.nodeNum);
    if (targets.length === 0) return;
    const ics = this.node.communication;
    const r = await detached(() =>
      ics.multicast<boolean>(
        targets.map(([n]) => n),
        this.address,
        'apply',
        { changes },
        { timeoutMs: this.opts.pushTimeoutMs },
      ),
    );
    for (const [n, incarnation] of targets) {
      const s = r.results.get(n);
      if (s?.ok && s.value === true) continue;
      seq.unsubscribe(n, incarnation);
      this.emit('dropped', { epoch: seq.epoch, node: n, incarnation });
      try {
        ics.trySend(n, this.address, 'resync', null);
      } catch {
        // Its check loop notices.
      }
    }
  }

  private async onNodeDown(e: NodeEvent): Promise<void> {
    const seq = this.sequencer;
    if (!seq) return;
    const changes = seq.nodeDown(e.node, e.incarnation);
    if (changes.length > 0) await this.publish(seq, changes);
  }
}

/** A registry (one replicated map) on `node`. Create it before `node.start()`; call `start()` after. */
export function createRegistry(node: ClusterNode, options: RegistryOptions): Registry {
  return new Registry(node, options);
}
