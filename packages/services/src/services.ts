/**
 * Services by name, pub/sub events and roles on one node, built on the
 * public API of @clusterinfra/core and a @clusterinfra/registry map.
 *
 * - A node serves a service (an icsgen descriptor or plain handlers) on its
 *   ICS endpoint and announces it in the map as `svc/<name>/<node>`, an
 *   entry owned by its incarnation: gone when that incarnation goes down.
 * - `call(name, method, args)` picks a live node that announces `name` by
 *   policy and calls it; a call that certainly did not run there (or any
 *   call of an idempotent method) is tried again on another node.
 * - `subscribe(topic)` announces `evt/<topic>/<node>` with the node's
 *   groups; `publish(topic, data)` sends one one-way message per target
 *   node: every subscriber node (broadcast) or one node per group
 *   (balanced).
 *
 * Everything this node knows about the others comes from the map (the
 * Directory) and from the membership (which incarnation is Up, its roles).
 */
import {
  AbortedError,
  type ClusterNode,
  detached,
  every,
  type HandlerContext,
  type Ics,
  type MethodDescriptor,
  NodeDownError,
  NotFoundError,
  type PoolConfig,
  type RegisteredService,
  RemoteInternalError,
  type RpcMethod,
  serve as serveOn,
  ServiceExistsError,
  type ServiceDescriptor,
  type ServiceImpl,
  type ServiceRegistration,
  type TimerHandle,
  UnavailableError,
} from '@clusterinfra/core';
import type { Registry, RegistryEvent } from '@clusterinfra/registry';
import { EventEmitter } from 'eventemitter3';
import type { z } from 'zod';
import { pick, type Policy } from './balance.js';
import {
  checkCallOptions,
  checkDescriptor,
  checkMethod,
  checkNode,
  checkNodeNumber,
  checkProvidersOptions,
  checkPublishOptions,
  checkRegistration,
  checkServeOptions,
  checkStartOptions,
  checkSubscribe,
} from './args.js';
import { MAX_CURSORS, MAX_NAME_BYTES } from './constants.js';
import { Directory, type MethodKind, type Provider, type ProviderValue, serviceKey, topicKey, type TopicNode, type TopicValue } from './directory.js';
import { ServicesError } from './errors.js';
import { type Delivery, type EventHandler, type EventInfo, eventMessage, LocalSubscription } from './events.js';
import { type ResolvedServicesOptions, resolveOptions, type ServicesOptions } from './options.js';
import { checkRoles, hasAnyRole, rolesOf } from './roles.js';

export interface ByNameCallOptions {
  /** How to choose the node. @default the `policy` option */
  policy?: Policy;
  /** Only nodes with at least one of these roles. @default any node */
  roles?: readonly string[];
  /** Safe to run twice: retried on another node even when it may have run. @default what the serving nodes announce for the method */
  idempotent?: boolean;
  /** Nodes to try at most. @default the `maxAttempts` option */
  attempts?: number;
  signal?: AbortSignal;
  /** Deadline of each attempt (ICS's default when absent). */
  timeoutMs?: number;
}

export interface ServeOptions {
  /** Serve only when this node has at least one of these roles (else `active` is false and nothing is served). */
  roles?: readonly string[];
  pool?: PoolConfig;
}

/** A service this node serves by name. */
export interface ServedService {
  readonly name: string;
  /** False when this node lacks the roles the service asked for: nothing is served or announced. */
  readonly active: boolean;
  /** Withdraw the announcement (callers stop choosing this node), then stop serving; running handlers finish. */
  unregister(): Promise<void>;
}

export interface SubscribeOptions {
  /** Balanced delivery gives each event to one subscription per group. Without a group a subscription gets every event. */
  group?: string;
  /** Aborting it unsubscribes. */
  signal?: AbortSignal;
}

export interface Subscription {
  readonly topic: string;
  readonly group: string | undefined;
  /** Events waiting for the handler. */
  readonly queued: number;
  /** Stop: the announcement is updated (or withdrawn); events still queued are not run (counted in `stats().discarded`). */
  unsubscribe(): Promise<void>;
}

export interface PublishOptions {
  /** `broadcast`: every subscriber node runs every subscription of the topic; `balanced`: one subscription per group (and every one without a group). @default 'broadcast' */
  delivery?: Delivery;
  /**
   * Wait for each target node to take the event (an RPC per node instead of a
   * one-way message): an event for a node that goes down is then reported in
   * `failed` even when it had been handed to the link, and a balanced event
   * goes to another node of its group (at least once per group, see
   * docs/services.md). @default false
   */
  confirm?: boolean;
  /** Stop waiting (the messages already queued still go). */
  signal?: AbortSignal;
}

export interface PublishResult {
  /** Nodes the event was handed to (their link, or this node's own handler). */
  readonly nodes: readonly number[];
  /** Nodes it could not be handed to, with the error (also counted in `stats().undelivered` and emitted as `undelivered`). */
  readonly failed: readonly { node: number; error: Error }[];
}

export interface ServicesStats {
  /** By-name calls started, attempts beyond the first, and calls in flight. */
  calls: number;
  retries: number;
  pending: number;
  /** Events published by this node, and (node, event) pairs that could not be handed over. */
  published: number;
  undelivered: number;
  /** Events given to a subscription here (queued for its handler), handlers that threw, events queued here now. */
  delivered: number;
  handlerErrors: number;
  queued: number;
  /** Events a publisher sent here that never arrived (a gap in its sequence), and events dropped unrun when a subscription ended. */
  lost: number;
  discarded: number;
}

export interface ServicesEvents {
  /** An event could not be handed to a node (publish also returns it). */
  undelivered: (info: { topic: string; node: number; error: Error }) => void;
  /** Events from `publisher` never arrived here: `missed` of them before `seq`. */
  lost: (info: { publisher: number; missed: number; seq: number }) => void;
  /** A subscription's handler threw. */
  'handler-error': (info: { topic: string; group: string | undefined; error: unknown; event: EventInfo }) => void;
}

/** A typed client of a descriptor, routed by name. */
export type ByNameClient<M extends Record<string, MethodDescriptor>> = {
  [K in keyof M]: M[K] extends RpcMethod<infer I, infer O>
    ? (args: z.input<I>, options?: ByNameCallOptions) => Promise<z.output<O>>
    : (args: z.input<M[K]['input']>, options?: ByNameCallOptions) => Promise<void>;
};

/** Per target node of an event: the groups it delivers to (`null`: every subscription), and whether its ungrouped ones too. */
type Plan = Map<number, { groups: string[] | null; solo: boolean }>;
/** How sending to one node went. */
interface Sent {
  node: number;
  groups: string[] | null;
  error?: Error;
}

/** A by-name call across its attempts. */
interface CallPlan {
  readonly name: string;
  readonly method: string;
  readonly args: unknown;
  readonly options: ByNameCallOptions;
  readonly roles: readonly string[];
  readonly attempts: number;
}

interface Announcement {
  value: ProviderValue | TopicValue;
  served?: RegisteredService;
}

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

function checkName(name: unknown, what: string): string {
  if (typeof name !== 'string' || name.length === 0 || bytes(name) > MAX_NAME_BYTES || name.trim() !== name) {
    throw new ServicesError('SERVICES_ERR_INVALID_NAME', `${what} must be a non-empty string of at most ${MAX_NAME_BYTES} bytes without surrounding spaces (got ${JSON.stringify(name)})`);
  }
  return name;
}

/** The call certainly did not run on that node: safe to try another whatever the method. */
function neverRan(err: unknown): boolean {
  return (err instanceof NodeDownError && err.sent === 'never-sent') || (err instanceof UnavailableError && !err.mayHaveRun) || err instanceof NotFoundError;
}

/** The node failed mid-call: another node may serve an idempotent method. */
function nodeFailed(err: unknown): boolean {
  return err instanceof NodeDownError || err instanceof UnavailableError;
}

/** Services by name, events and roles on one node. Create it with `createServices`; docs/services.md. */
export class Services extends EventEmitter<ServicesEvents> implements AsyncDisposable {
  private readonly opts: ResolvedServicesOptions;
  private readonly registry: Registry;
  private readonly dir = new Directory();
  private phase: 'idle' | 'started' | 'closed' = 'idle';
  private eventsOn: Ics | undefined;
  private eventService: RegisteredService | undefined;
  private timer: TimerHandle | undefined;
  /** What this node announces, by registry key; writes to one key go one at a time, each writing what is wanted then. */
  private readonly wanted = new Map<string, Announcement>();
  private readonly writing = new Map<string, Promise<void>>();
  private readonly served = new Map<string, ServedService>();
  private readonly subs = new Map<string, Set<LocalSubscription>>();
  private subCount = 0;
  /** Rotation counters by service name (and `topic\0group` for balanced events); calls in flight by node. */
  private readonly cursors = new Map<string, number>();
  private readonly inFlight = new Map<number, number>();
  /** Sequence numbers: of events sent to each node, and the last one seen from each publisher incarnation. */
  private readonly sentSeq = new Map<number, number>();
  private readonly seenSeq = new Map<number, { incarnation: number; seq: number }>();
  private readonly counters = { calls: 0, retries: 0, pending: 0, published: 0, undelivered: 0, delivered: 0, handlerErrors: 0, lost: 0, discarded: 0 };
  private readonly onChange = (e: RegistryEvent): void => this.dir.apply(e);
  private readonly outstandingOf = (n: number): number => this.inFlight.get(n) ?? 0;

  constructor(
    private readonly node: ClusterNode,
    options: ServicesOptions,
  ) {
    super();
    checkNode(node);
    this.opts = resolveOptions(options);
    this.registry = this.opts.registry;
  }

  // ================================================================ lifecycle

  /** Start after `node.start()`: starts the registry if needed, serves the event service, loads the directory. */
  async start(options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<this> {
    checkStartOptions(options);
    if (this.phase === 'closed') throw new ServicesError('SERVICES_ERR_CLOSED', 'services closed');
    if (this.phase === 'started') return this;
    await this.registry.start(options);
    if (this.currentPhase() !== 'idle') return this;
    this.phase = 'started';
    this.registry.on('change', this.onChange);
    this.dir.load(this.registry.entries());
    this.ensureEventService();
    this.timer = every(this.node.clock, this.opts.announceIntervalMs, () => this.reconcile());
    this.node.on('evicted', this.onEvicted);
    return this;
  }

  /** Withdraw every announcement of this node (best effort), stop serving, end subscriptions. */
  async close(): Promise<void> {
    if (this.phase === 'closed') return;
    const wasStarted = this.phase === 'started';
    this.phase = 'closed';
    this.timer?.cancel();
    this.node.off('evicted', this.onEvicted);
    this.registry.off('change', this.onChange);
    for (const set of this.subs.values()) for (const s of set) this.counters.discarded += s.close();
    this.subs.clear();
    const keys = [...this.wanted.keys()];
    const served = [...this.wanted.values()].flatMap((a) => (a.served ? [a.served] : []));
    this.wanted.clear();
    if (wasStarted) await Promise.all(keys.map((k) => this.write(k).catch(() => {})));
    for (const s of served) s.unregister();
    this.eventService?.unregister();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private currentPhase(): 'idle' | 'started' | 'closed' {
    return this.phase;
  }

  private usable(): void {
    if (this.phase === 'closed') throw new ServicesError('SERVICES_ERR_CLOSED', 'services closed');
    if (this.phase !== 'started') throw new ServicesError('SERVICES_ERR_NOT_STARTED', 'call start() (after node.start()) first');
  }

  private get ics(): Ics {
    return this.node.communication;
  }

  /** The event service on the node's current ICS endpoint (after an eviction core carries it to the new one). */
  private ensureEventService(): void {
    const ics = this.ics;
    if (this.eventsOn === ics) return;
    try {
      this.eventService = ics.registerService({
        name: 'services.events',
        channel: this.opts.channel,
        subservice: this.opts.subservice,
        pool: this.opts.pool,
        handlers: { event: (args, ctx) => this.onEvent(args, ctx) },
      });
    } catch (err) {
      // Carried over from the former incarnation's endpoint.
      if (!(err instanceof ServiceExistsError)) throw err;
    }
    this.eventsOn = ics;
  }

  // ================================================================ roles

  /** This node's roles (`meta.roles`, see withRoles). */
  get roles(): readonly string[] {
    return rolesOf(this.node.info());
  }

  /** Node `n`'s roles, as the membership has them. */
  rolesOf(n: number): readonly string[] {
    checkNodeNumber(n);
    return rolesOf(this.node.info(n));
  }

  /** Up members with at least one of `roles`, ascending. */
  nodesWithRole(...roles: string[]): number[] {
    const want = checkRoles(roles);
    return this.node
      .membership()
      .members.filter((m) => m.state === 'Up' && hasAnyRole(m, want))
      .map((m) => m.node)
      .sort((a, b) => a - b);
  }

  // ================================================================ announcements

  private live(x: { node: number; incarnation: number }): boolean {
    const m = this.node.info(x.node);
    return m !== undefined && m.incarnation === x.incarnation && m.state === 'Up';
  }

  /** Bring the map's entry for `key` to what is wanted (a put, or a delete when nothing is). One write per key at a time. */
  private write(key: string): Promise<void> {
    const before = this.writing.get(key) ?? Promise.resolve();
    const next = before
      .catch(() => {})
      .then(async () => {
        const want = this.wanted.get(key);
        const have = this.registry.get(key);
        if (!want) {
          if (have?.owner?.node === this.node.nodeNum) await detached(() => this.registry.delete(key));
          return;
        }
        if (this.announced(key, want)) return;
        await detached(() => this.registry.put(key, want.value, { owned: true }));
      });
    const tracked = next.finally(() => {
      if (this.writing.get(key) === tracked) this.writing.delete(key);
    });
    this.writing.set(key, tracked);
    return tracked;
  }

  private announced(key: string, a: Announcement): boolean {
    const have = this.registry.get(key);
    return have?.owner?.node === this.node.nodeNum && have.owner.incarnation === this.node.incarnation && JSON.stringify(have.value) === JSON.stringify(a.value);
  }

  /** Every announceIntervalMs: write again what the map lacks under this incarnation (after an eviction, a lost write). */
  private reconcile(): void {
    if (this.phase !== 'started') return;
    this.ensureEventService();
    for (const [key, a] of this.wanted) if (!this.writing.has(key) && !this.announced(key, a)) void this.write(key).catch(() => {});
  }

  private readonly onEvicted = (): void => {
    this.sentSeq.clear();
    this.reconcile();
  };

  // ================================================================ serving

  /** Serve `impl` under an icsgen descriptor and announce it by the descriptor's `name`. Resolves once announced clusterwide. */
  serve<M extends Record<string, MethodDescriptor>>(descriptor: ServiceDescriptor<M>, impl: ServiceImpl<M>, options: ServeOptions = {}): Promise<ServedService> {
    try {
      checkDescriptor(descriptor, 'serve');
      checkServeOptions(options);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const methods: Record<string, MethodKind> = {};
    for (const [m, d] of Object.entries(descriptor.methods)) methods[m] = d.kind === 'oneway' ? 'oneway' : d.idempotent ? 'idempotent' : 'rpc';
    return this.offer(descriptor.name, { channel: descriptor.channel ?? 'default', subservice: descriptor.subservice, methods }, options, () =>
      serveOn(this.ics, descriptor, impl, options.pool ? { pool: options.pool } : {}),
    );
  }

  /** Serve plain handlers (a core ServiceRegistration) by `reg.name`; `idempotent` lists the methods safe to run twice. */
  register(reg: ServiceRegistration & { idempotent?: readonly string[] }, options: ServeOptions = {}): Promise<ServedService> {
    try {
      checkRegistration(reg);
      checkServeOptions(options);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const methods: Record<string, MethodKind> = {};
    for (const m of Object.keys(reg.handlers)) methods[m] = reg.idempotent?.includes(m) ? 'idempotent' : 'rpc';
    const { idempotent: _, ...plain } = reg;
    return this.offer(reg.name, { channel: reg.channel ?? 'default', subservice: reg.subservice, methods }, options, () =>
      this.ics.registerService(options.pool ? { ...plain, pool: options.pool } : plain),
    );
  }

  private async offer(name: string, value: ProviderValue, options: ServeOptions, start: () => RegisteredService): Promise<ServedService> {
    this.usable();
    checkName(name, 'service name');
    const roles = checkRoles(options.roles ?? [], 'serve roles');
    if (!hasAnyRole(this.node.info(), roles)) return { name, active: false, unregister: async () => {} };
    if (this.served.has(name)) throw new ServicesError('SERVICES_ERR_ALREADY_SERVED', `this node already serves ${name}`);
    if (this.served.size >= this.opts.maxServed) throw new ServicesError('SERVICES_ERR_LIMIT', `this node serves maxServed (${this.opts.maxServed}) services`);
    const key = serviceKey(name, this.node.nodeNum);
    const served = start();
    const handle: ServedService = {
      name,
      active: true,
      unregister: async () => {
        if (this.served.get(name) !== handle) return;
        this.served.delete(name);
        this.wanted.delete(key);
        try {
          await this.write(key);
        } finally {
          served.unregister();
        }
      },
    };
    this.served.set(name, handle);
    this.wanted.set(key, { value, served });
    try {
      await this.write(key);
    } catch (err) {
      this.served.delete(name);
      this.wanted.delete(key);
      served.unregister();
      throw err;
    }
    return handle;
  }

  // ================================================================ calling by name

  /** Live nodes announcing `name` (with one of `roles`), ascending. */
  providers(name: string, options: { roles?: readonly string[] } = {}): number[] {
    checkName(name, 'service name');
    checkProvidersOptions(options);
    return this.candidates(name, checkRoles(options.roles ?? []), undefined).map((p) => p.node);
  }

  private candidates(name: string, roles: readonly string[], tried: Set<number> | undefined): Provider[] {
    const out: Provider[] = [];
    for (const p of this.dir.providersOf(name).list) {
      if (tried?.has(p.node) || !this.live(p)) continue;
      if (roles.length > 0 && !hasAnyRole(this.node.info(p.node), roles)) continue;
      out.push(p);
    }
    return out;
  }

  /**
   * Call `method` of the service `name` on a node that serves it, chosen by
   * policy. A failure that certainly did not run there (never sent, no such
   * service there) is tried on another node; one that may have run only for
   * an idempotent method. Resolves with the result, or rejects with the last
   * error (SERVICES_ERR_NO_PROVIDER when no node was left to try).
   *
   * Written as one promise chain rather than async functions: a by-name call
   * should cost next to nothing beyond the ICS call it makes.
   */
  call<T = unknown>(name: string, method: string, args?: unknown, options: ByNameCallOptions = {}): Promise<T> {
    try {
      this.usable();
      if (!this.dir.providers.has(name)) checkName(name, 'service name');
      checkMethod(method);
      checkCallOptions(options);
      const roles = options.roles ? checkRoles(options.roles) : [];
      if (this.counters.pending >= this.opts.maxPending) throw new ServicesError('SERVICES_ERR_LIMIT', `maxPending (${this.opts.maxPending}) by-name calls in flight`);
      this.counters.calls++;
      return this.attempt<T>({ name, method, args, options, roles, attempts: options.attempts ?? this.opts.maxAttempts }, 0, undefined, undefined);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** One attempt on a node not in `tried`; on a failure that allows it, the next attempt. */
  private attempt<T>(c: CallPlan, attempt: number, tried: Set<number> | undefined, last: unknown): Promise<T> {
    const { name, method, options } = c;
    if (options.signal?.aborted) return Promise.reject(new AbortedError(`call ${name}.${method} aborted`, { cause: options.signal.reason }));
    // The common case allocates nothing: every provider of the name is a candidate.
    let { list: found, nodes } = this.dir.providersOf(name);
    if (found.length === 0 || tried !== undefined || c.roles.length > 0 || found.some((p) => !this.live(p) || p.methods[method] === undefined)) {
      const all = this.candidates(name, c.roles, tried);
      found = all.filter((p) => p.methods[method] !== undefined);
      if (found.length === 0) {
        if (all.length > 0) return Promise.reject(new ServicesError('SERVICES_ERR_UNKNOWN_METHOD', `no node serving ${name} announces method ${method}`));
        if (last !== undefined) return Promise.reject(last as Error);
        const where = c.roles.length ? ` with role ${c.roles.join(' or ')}` : '';
        return Promise.reject(new ServicesError('SERVICES_ERR_NO_PROVIDER', `no live node serves ${name}${where}`));
      }
      nodes = found.map((p) => p.node);
    }
    const cursor = this.cursors.get(name) ?? 0;
    this.turned(name, cursor);
    const chosen = pick(options.policy ?? this.opts.policy, { candidates: nodes, self: this.node.nodeNum, cursor, outstanding: this.outstandingOf });
    const p = found[nodes.indexOf(chosen)]!;
    if (attempt > 0) this.counters.retries++;
    this.counters.pending++;
    this.inFlight.set(p.node, (this.inFlight.get(p.node) ?? 0) + 1);
    const done = (): void => {
      this.counters.pending--;
      const left = (this.inFlight.get(p.node) ?? 1) - 1;
      if (left === 0) this.inFlight.delete(p.node);
      else this.inFlight.set(p.node, left);
    };
    const address = { channel: p.channel, subservice: p.subservice };
    let sent: Promise<T>;
    try {
      sent = p.methods[method] === 'oneway' ? (this.ics.send(p.node, address, method, c.args) as Promise<T>) : this.ics.call<T>(p.node, address, method, c.args, options);
    } catch (err) {
      sent = Promise.reject(err as Error);
    }
    return sent.then(
      (value) => {
        done();
        return value;
      },
      (err: unknown) => {
        done();
        const idempotent = options.idempotent ?? p.methods[method] === 'idempotent';
        if (!(neverRan(err) || (idempotent && nodeFailed(err))) || attempt + 1 >= c.attempts) throw err;
        return this.attempt<T>(c, attempt + 1, (tried ?? new Set<number>()).add(p.node), err);
      },
    );
  }

  /** A typed client of `descriptor`, every method routed by the descriptor's name; results are checked against the output schema. */
  client<M extends Record<string, MethodDescriptor>>(descriptor: ServiceDescriptor<M>, defaults: ByNameCallOptions = {}): ByNameClient<M> {
    checkDescriptor(descriptor, 'client');
    checkCallOptions(defaults, 'client');
    const out: Record<string, unknown> = {};
    for (const [m, d] of Object.entries(descriptor.methods)) {
      out[m] = async (args: unknown, options: ByNameCallOptions = {}) => {
        checkCallOptions(options);
        const merged = { ...defaults, ...options };
        if (d.kind === 'rpc' && merged.idempotent === undefined && d.idempotent) merged.idempotent = true;
        const value = await this.call(descriptor.name, m, args, merged);
        if (d.kind === 'oneway') return undefined;
        const parsed = d.output.safeParse(value);
        if (!parsed.success) throw new RemoteInternalError(`${descriptor.name}.${m} answered with a value that does not match its output schema`);
        return parsed.data;
      };
    }
    return out as ByNameClient<M>;
  }

  /** Advance a rotation counter. The counters are kept for names seen lately only: past MAX_CURSORS they all start again (a rotation restarts, nothing else). */
  private turned(key: string, cursor: number): void {
    if (this.cursors.size >= MAX_CURSORS && !this.cursors.has(key)) this.cursors.clear();
    this.cursors.set(key, cursor + 1);
  }

  // ================================================================ pub/sub

  /** Subscribe to `topic`; resolves once the subscription is announced clusterwide. */
  async subscribe(topic: string, handler: EventHandler, options: SubscribeOptions = {}): Promise<Subscription> {
    this.usable();
    checkName(topic, 'topic');
    checkSubscribe(handler, options);
    if (options.group !== undefined) checkName(options.group, 'group');
    // An aborted signal fires no more 'abort': the subscription would never end.
    if (options.signal?.aborted) throw new AbortedError(`subscribe ${topic} aborted`, { cause: options.signal.reason });
    if (this.subCount >= this.opts.maxSubscriptions) throw new ServicesError('SERVICES_ERR_LIMIT', `this node has maxSubscriptions (${this.opts.maxSubscriptions}) subscriptions`);
    const sub = new LocalSubscription(topic, options.group, handler, this.opts.maxQueue, (error, event) => {
      this.counters.handlerErrors++;
      this.emit('handler-error', { topic, group: options.group, error, event });
    });
    let set = this.subs.get(topic);
    if (!set) this.subs.set(topic, (set = new Set()));
    set.add(sub);
    this.subCount++;
    const key = topicKey(topic, this.node.nodeNum);
    const unsubscribe = async (): Promise<void> => {
      if (sub.closed || !set.has(sub)) return;
      this.counters.discarded += sub.close();
      set.delete(sub);
      this.subCount--;
      if (set.size === 0 && this.subs.get(topic) === set) this.subs.delete(topic);
      if (options.group !== undefined && ![...set].some((s) => s.group === options.group)) this.cursors.delete(`\u0001${topic}\u0000${options.group}`);
      if (this.phase !== 'started') return;
      this.announceTopic(topic);
      await this.write(key);
    };
    options.signal?.addEventListener('abort', () => void unsubscribe().catch(() => {}), { once: true });
    this.announceTopic(topic);
    try {
      await this.write(key);
    } catch (err) {
      await unsubscribe().catch(() => {});
      throw err;
    }
    return {
      topic,
      group: options.group,
      get queued() {
        return sub.queued;
      },
      unsubscribe,
    };
  }

  private announceTopic(topic: string): void {
    const key = topicKey(topic, this.node.nodeNum);
    const set = this.subs.get(topic);
    if (!set || set.size === 0) {
      this.wanted.delete(key);
      return;
    }
    const groups = [...new Set([...set].flatMap((s) => (s.group === undefined ? [] : [s.group])))].sort();
    this.wanted.set(key, { value: { groups, solo: [...set].some((s) => s.group === undefined) } });
  }

  /** Live subscriber nodes of `topic`, ascending, with their groups. */
  subscribers(topic: string): TopicNode[] {
    checkName(topic, 'topic');
    return this.liveSubscribers(topic);
  }

  private liveSubscribers(topic: string): TopicNode[] {
    const byNode = this.dir.topics.get(topic);
    return byNode ? [...byNode.values()].filter((t) => this.live(t)).sort((a, b) => a.node - b.node) : [];
  }

  /**
   * Publish `data` on `topic`: one one-way message per target node, in
   * publish order per node. Resolves once each was handed over (flow
   * control paces a publisher that outruns its subscribers) with the nodes
   * and the failures. A balanced event whose node failed before it was sent
   * goes to another node of its group.
   */
  publish(topic: string, data: unknown, options: PublishOptions = {}): Promise<PublishResult> {
    let first: Promise<Sent[]>;
    let delivery: Delivery;
    let confirm: boolean;
    try {
      this.usable();
      checkPublishOptions(options);
      delivery = options.delivery ?? 'broadcast';
      confirm = options.confirm === true;
      const byNode = this.dir.topics.get(topic);
      if (!byNode) checkName(topic, 'topic');
      this.counters.published++;
      const plan: Plan = new Map();
      if (delivery === 'broadcast') {
        if (byNode) for (const t of byNode.values()) if (this.live(t)) plan.set(t.node, { groups: null, solo: false });
      } else {
        const targets = this.liveSubscribers(topic);
        for (const t of targets) if (t.solo) plan.set(t.node, { groups: [], solo: true });
        for (const [group, nodes] of this.groupsOf(targets)) this.assign(plan, topic, group, nodes);
      }
      if (plan.size === 0) return Promise.resolve({ nodes: [], failed: [] });
      first = this.raced(this.sendPlan(topic, data, plan, confirm), options.signal);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    // The common case, every message handed over, costs no more promises than this.
    return first.then((settled) => (settled.every((r) => r.error === undefined) ? { nodes: settled.map((r) => r.node), failed: [] } : this.afterFailures(topic, data, delivery, confirm, settled, options.signal)));
  }

  /** Some messages of a publish failed: report them, and send a balanced event on to other nodes of its groups where that is safe. */
  private async afterFailures(topic: string, data: unknown, delivery: Delivery, confirm: boolean, settled: Sent[], signal: AbortSignal | undefined): Promise<PublishResult> {
    const nodes: number[] = [];
    const failed: { node: number; error: Error }[] = [];
    const tried = new Set<number>();
    for (let attempt = 1; ; attempt++) {
      const again: Plan = new Map();
      for (const r of settled) {
        tried.add(r.node);
        if (r.error === undefined) {
          nodes.push(r.node);
          continue;
        }
        // A balanced event that certainly never ran (or, confirmed, whose node failed) goes to another node of each of its groups.
        const groups = r.groups ?? [];
        const resend = neverRan(r.error) || (confirm && nodeFailed(r.error));
        if (delivery === 'balanced' && groups.length > 0 && resend && attempt < this.opts.maxAttempts) {
          const byGroup = this.groupsOf(this.liveSubscribers(topic).filter((t) => !tried.has(t.node)));
          for (const g of groups) {
            const others = byGroup.get(g);
            if (others) this.assign(again, topic, g, others);
          }
        }
        failed.push({ node: r.node, error: r.error });
        this.counters.undelivered++;
        this.emit('undelivered', { topic, node: r.node, error: r.error });
      }
      if (again.size === 0) return { nodes, failed };
      settled = await this.raced(this.sendPlan(topic, data, again, confirm), signal);
    }
  }

  private groupsOf(targets: readonly TopicNode[]): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (const t of targets) for (const g of t.groups) out.set(g, [...(out.get(g) ?? []), t.node]);
    return out;
  }

  /** One node of `nodes` (ascending) for `group`, in turn. */
  private assign(plan: Plan, topic: string, group: string, nodes: number[]): void {
    const k = `${topic}\u0000${group}`;
    const cursor = this.cursors.get(k) ?? 0;
    this.turned(k, cursor);
    const n = pick('round-robin', { candidates: nodes, self: this.node.nodeNum, cursor, outstanding: () => 0 });
    const entry = plan.get(n) ?? { groups: [], solo: false };
    entry.groups!.push(group);
    plan.set(n, entry);
  }

  /** Send one message per planned node now (sequence numbers in send order); the promises settle when each was handed over. */
  private sendPlan(topic: string, data: unknown, plan: Plan, confirm: boolean): Promise<Sent>[] {
    const address = { channel: this.opts.channel, subservice: this.opts.subservice };
    const ics = this.ics;
    // Outside any handler's context, so the messages are flow-controlled even when a handler publishes.
    return detached(() => {
      const out: Promise<Sent>[] = [];
      for (const [node, p] of plan) {
        const s = (this.sentSeq.get(node) ?? 0) + 1;
        this.sentSeq.set(node, s);
        const msg = { t: topic, s, g: p.groups, o: p.solo, d: data };
        let sent: Promise<unknown>;
        try {
          sent = confirm ? ics.call(node, address, 'event', msg) : ics.send(node, address, 'event', msg);
        } catch (err) {
          sent = Promise.reject(err as Error);
        }
        out.push(sent.then(() => ({ node, groups: p.groups }), (error: Error) => ({ node, groups: p.groups, error })));
      }
      return out;
    });
  }

  private raced<T>(round: Promise<T>[], signal: AbortSignal | undefined): Promise<T[]> {
    const all = Promise.all(round);
    if (!signal) return all;
    if (signal.aborted) return Promise.reject(new AbortedError('publish aborted', { cause: signal.reason }));
    return new Promise((resolve, reject) => {
      const onAbort = (): void => reject(new AbortedError('publish aborted', { cause: signal.reason }));
      signal.addEventListener('abort', onAbort, { once: true });
      all.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  /** The event service's handler: to the queues in arrival order first, then wait while a target queue is full. */
  private onEvent(args: unknown, ctx: HandlerContext): Promise<void> | undefined {
    const msg = eventMessage.parse(args);
    const from = ctx.caller.nodeNum;
    const seen = this.seenSeq.get(from);
    if (seen && seen.incarnation === ctx.caller.incarnation) {
      if (msg.s <= seen.seq) {
        // Overtaken (ICS delivers a message at most once): counted as lost when the later one came; it is not.
        this.counters.lost = Math.max(0, this.counters.lost - 1);
      } else if (msg.s > seen.seq + 1) {
        const missed = msg.s - seen.seq - 1;
        this.counters.lost += missed;
        this.emit('lost', { publisher: from, missed, seq: msg.s });
      }
    }
    if (!seen || seen.incarnation !== ctx.caller.incarnation || msg.s > seen.seq) this.seenSeq.set(from, { incarnation: ctx.caller.incarnation, seq: msg.s });
    const set = this.subs.get(msg.t);
    if (!set) return undefined;
    const info: EventInfo = { topic: msg.t, publisher: from, seq: msg.s, delivery: msg.g === null ? 'broadcast' : 'balanced' };
    const targets: LocalSubscription[] = [];
    for (const s of set) if (msg.g === null || (s.group === undefined && msg.o)) targets.push(s);
    for (const g of msg.g ?? []) {
      const members = [...set].filter((s) => s.group === g);
      if (members.length === 0) continue;
      const k = `\u0001${msg.t}\u0000${g}`;
      const cursor = this.cursors.get(k) ?? 0;
      this.turned(k, cursor);
      targets.push(members[cursor % members.length]!);
    }
    for (const s of targets) {
      this.counters.delivered++;
      s.push(msg.d, info);
    }
    const full = targets.filter((s) => s.full);
    return full.length > 0 ? Promise.all(full.map((s) => s.whenBelow())).then(() => {}) : undefined;
  }

  stats(): ServicesStats {
    let queued = 0;
    for (const set of this.subs.values()) for (const s of set) queued += s.queued;
    return { ...this.counters, queued };
  }
}

/** The services layer of `node`, on the map `options.registry`. Call `start()` after `node.start()`. */
export function createServices(node: ClusterNode, options: ServicesOptions): Services {
  return new Services(node, options);
}

