/**
 * Typed key services: a key-service descriptor is plain data (name,
 * subservice, rpc methods with zod schemas, and the schemas of what
 * `pullData` and `handover` return) that icsgen generates from a
 * `keyservice` declaration and people may write by hand.
 *
 * `serveKeyService` registers it on a node with every edge checked: method
 * arguments on arrival (INVALID_ARGUMENT, the handler never runs) and
 * results before they leave, exactly as `serve` does; a node's own
 * `pullData` and `handover` results before they leave it; and the data the
 * new host receives before `failoverData` sees it (a peer on another
 * version may send something else: it is set apart in `rejected`, never
 * passed on as if it matched). `keyServiceClient` gives typed methods.
 */
import type { z } from 'zod';
import { InvalidArgumentError, InvalidOptionError, RemoteInternalError } from '../errors/index.js';
import { checkCallOptions } from '../ics/options.js';
import { checkDescriptor, isSchema, parseResult, type RpcMethod, type ServiceDescriptor, validatedHandler } from '../ics/typed.js';
import { CALLBACKS, MAX_KEY_SERVICE_NAME } from './registrations.js';
import type { FailoverInput, KeyServiceContext, KeyServiceHandler, KeyServiceHandlerContext, KeyServiceRegistration } from './types.js';

export interface KeyServiceDescriptor<
  M extends Record<string, RpcMethod> = Record<string, RpcMethod>,
  P extends z.ZodType | undefined = z.ZodType | undefined,
  H extends z.ZodType | undefined = z.ZodType | undefined,
> {
  /** The key service's clusterwide name: hosts register it and callers call it by this name. */
  name: string;
  /** Its subservice on the `keyservice` channel, 1–65535. */
  subservice: number;
  description?: string;
  /** Rpc methods only: a key service is called, never sent one-way messages. */
  methods: M;
  /** The schema of what each survivor's `pullData` returns; absent: nothing is pulled. */
  pullData?: P;
  /** The schema of what the old host's `handover` returns on a clean leave; absent: nothing is handed over. */
  handover?: H;
}

/** Keeps the literal types of a descriptor; throws InvalidOptionError when it is not one (checkKeyServiceDescriptor). */
export function defineKeyService<const M extends Record<string, RpcMethod>, P extends z.ZodType | undefined = undefined, H extends z.ZodType | undefined = undefined>(
  d: KeyServiceDescriptor<M, P, H>,
): KeyServiceDescriptor<M, P, H> {
  checkKeyServiceDescriptor(d);
  return d;
}

/**
 * A key-service descriptor's shape, for descriptors written by hand (or
 * past the types): a service descriptor's (ics/typed.ts, checkDescriptor)
 * with a name a key service may have, a subservice 1–65535, `rpc` methods
 * only, and schemas for `pullData` and `handover` when given.
 * InvalidOptionError naming what is wrong.
 */
export function checkKeyServiceDescriptor(d: KeyServiceDescriptor): void {
  if (typeof d !== 'object' || d === null) throw new InvalidOptionError('(root)', 'a key-service descriptor must be { name, subservice, methods, pullData?, handover? }');
  checkDescriptor(d as ServiceDescriptor);
  if (d.name.length > MAX_KEY_SERVICE_NAME) throw new InvalidOptionError('name', `key-service descriptor: name must be at most ${MAX_KEY_SERVICE_NAME} characters`);
  if (d.subservice === 0) throw new InvalidOptionError('subservice', `key service ${d.name}: subservice must be 1–65535 (0 is the key services' own)`);
  for (const [m, method] of Object.entries(d.methods)) {
    if ((method as { kind: string }).kind !== 'rpc') throw new InvalidOptionError(`methods.${m}.kind`, `key service ${d.name}: method ${m} must be of kind 'rpc' (a key service is called, never sent one-way messages)`);
  }
  for (const what of ['pullData', 'handover'] as const) {
    if (d[what] !== undefined && !isSchema(d[what])) throw new InvalidOptionError(what, `key service ${d.name}: ${what} must be a zod schema when given`);
  }
}

/** `impl` fits `d`: a handler per method, each callback a function, and `pullData` / `handover` exactly when `d` has their schema. */
function checkImpl(d: KeyServiceDescriptor, impl: unknown): void {
  if (typeof impl !== 'object' || impl === null) throw new InvalidOptionError('impl', `serveKeyService ${d.name}: the implementation must be an object { handlers, failover?, pullData?, failoverData?, handover? }`);
  const i = impl as Record<string, unknown>;
  if (typeof i.handlers !== 'object' || i.handlers === null) throw new InvalidOptionError('impl.handlers', `serveKeyService ${d.name}: handlers must be an object of functions`);
  for (const m of Object.keys(d.methods)) {
    if (typeof (i.handlers as Record<string, unknown>)[m] !== 'function') throw new InvalidOptionError(`impl.handlers.${m}`, `serveKeyService ${d.name}: no handler for method ${m}`);
  }
  for (const c of CALLBACKS) {
    if (i[c] !== undefined && typeof i[c] !== 'function') throw new InvalidOptionError(`impl.${c}`, `serveKeyService ${d.name}: ${c} must be a function`);
  }
  // Without the schema the callback used to be dropped in silence; without the callback, nothing was pulled or handed over.
  for (const c of ['pullData', 'handover'] as const) {
    if ((d[c] === undefined) !== (i[c] === undefined)) {
      throw new InvalidOptionError(`impl.${c}`, `serveKeyService ${d.name}: ${d[c] === undefined ? `the descriptor declares no ${c} schema, so impl.${c} would never run` : `the descriptor declares a ${c} schema: impl.${c} is required`}`);
    }
  }
}

/** The node `serveKeyService` and `keyServiceClient` are given: a ClusterNode, not something else. */
function checkNodeArg(node: KeyServiceNode, what: string, method: keyof KeyServiceNode): void {
  if (typeof (node as Partial<KeyServiceNode> | null)?.[method] !== 'function') throw new InvalidArgumentError(`${what}: the first argument must be a ClusterNode`);
}

type MaybePromise<T> = T | Promise<T>;

type AnyMethods = Record<string, RpcMethod>;
type MaybeSchema = z.ZodType | undefined;
/** The `pullData` schema of a descriptor's type (undefined when it declares none). */
type PullSchema<D> = D extends KeyServiceDescriptor<AnyMethods, infer P, MaybeSchema> ? P : undefined;
/** The `handover` schema of a descriptor's type (undefined when it declares none). */
type HandoverSchema<D> = D extends KeyServiceDescriptor<AnyMethods, MaybeSchema, infer H> ? H : undefined;

/** What each survivor's `pullData` gives the new host (never when nothing is pulled). */
export type PulledData<D extends KeyServiceDescriptor> = PullSchema<D> extends z.ZodType ? z.output<PullSchema<D>> : never;
/** What the old host's `handover` gives the new host (null when nothing is handed over). */
export type HandoverData<D extends KeyServiceDescriptor> = HandoverSchema<D> extends z.ZodType ? z.output<HandoverSchema<D>> : null;

/** What a typed `failoverData` is given: pulled and hand-over data apart, each checked against its schema. */
export interface TypedFailoverInput<P, H> {
  /** Each surviving node's `pullData` result that matched the schema, by node number. */
  readonly pulled: Map<number, P>;
  /** A clean leave's hand-over, when it was collected and matched the schema (see FailoverInput). */
  readonly handover: { readonly from: number; readonly data: H } | undefined;
  /** Nodes whose pulled or handed-over data did not match the schema, and why: left out of the above. */
  readonly rejected: Map<number, string>;
}

export type KeyServiceHandlers<M extends Record<string, RpcMethod>> = {
  [K in keyof M]: M[K] extends RpcMethod<infer I, infer O> ? (args: z.output<I>, ctx: KeyServiceHandlerContext) => MaybePromise<z.input<O>> : never;
};

/** What `serveKeyService(node, descriptor, impl)` takes: the handlers and the callbacks of docs/key-services.md, typed. */
export type KeyServiceImpl<D extends KeyServiceDescriptor> = {
  handlers: KeyServiceHandlers<D['methods']>;
  failover?: (ctx: KeyServiceContext) => MaybePromise<void>;
  failoverData?: (input: TypedFailoverInput<PulledData<D>, HandoverData<D>>, ctx: KeyServiceContext) => MaybePromise<void>;
} & (PullSchema<D> extends z.ZodType ? { pullData: (ctx: KeyServiceContext) => MaybePromise<z.input<PullSchema<D>>> } : { pullData?: never }) &
  (HandoverSchema<D> extends z.ZodType ? { handover: (ctx: KeyServiceContext) => MaybePromise<z.input<HandoverSchema<D>>> } : { handover?: never });

/** Options of one key-service call (as `callKeyService` takes). */
export interface KeyServiceCallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Retry once on a new host after a failure that may have run the call. @default the descriptor's `idempotent` */
  idempotent?: boolean;
}

export type KeyServiceClient<D extends KeyServiceDescriptor> = {
  [K in keyof D['methods']]: D['methods'][K] extends RpcMethod<infer I, infer O> ? (args: z.input<I>, options?: KeyServiceCallOptions) => Promise<z.output<O>> : never;
};

/** What the typed runtime needs of a node: a `ClusterNode` has both. */
export interface KeyServiceNode {
  registerKeyService(reg: KeyServiceRegistration): void;
  callKeyService(name: string, method: string, args?: unknown, options?: KeyServiceCallOptions): Promise<unknown>;
}

function checked(schema: z.ZodType, value: unknown): { ok: true; data: unknown } | { ok: false; why: string } {
  const r = schema.safeParse(value);
  return r.success ? { ok: true, data: r.data } : { ok: false, why: r.error.issues.map((i) => `${i.path.map(String).join('.') || '(value)'}: ${i.message}`).join('; ') };
}

/** A callback whose result must match `schema` before it leaves this node. */
function producing(service: string, what: string, schema: z.ZodType, fn: (ctx: KeyServiceContext) => unknown): (ctx: KeyServiceContext) => Promise<unknown> {
  return async (ctx) => {
    const r = checked(schema, await fn(ctx));
    if (!r.ok) throw new RemoteInternalError(`${service}.${what} returned a value that does not match its schema: ${r.why}`);
    return r.data;
  };
}

/**
 * Register `impl` as the key service `descriptor` describes on `node`
 * (before `start()`, like `registerKeyService`). `critical`: see
 * docs/key-services.md. @default { critical: false }
 */
export function serveKeyService<D extends KeyServiceDescriptor>(node: KeyServiceNode, descriptor: D, impl: KeyServiceImpl<D>, options: { critical?: boolean } = {}): void {
  checkNodeArg(node, 'serveKeyService', 'registerKeyService');
  checkKeyServiceDescriptor(descriptor);
  checkImpl(descriptor, impl);
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', `serveKeyService ${descriptor.name}: options must be an object { critical? }`);
  const name = descriptor.name;
  const handlers: Record<string, KeyServiceHandler> = {};
  const given = impl.handlers as Record<string, (args: unknown, ctx: KeyServiceHandlerContext) => unknown>;
  for (const [m, method] of Object.entries(descriptor.methods)) handlers[m] = validatedHandler(name, m, method, given[m]!);
  const { pullData: pullSchema, handover: handoverSchema } = descriptor;
  const pull = impl.pullData as ((ctx: KeyServiceContext) => unknown) | undefined;
  const handover = impl.handover as ((ctx: KeyServiceContext) => unknown) | undefined;
  const failoverData = impl.failoverData as ((input: TypedFailoverInput<unknown, unknown>, ctx: KeyServiceContext) => MaybePromise<void>) | undefined;
  node.registerKeyService({
    name,
    subservice: descriptor.subservice,
    critical: options.critical ?? false,
    handlers,
    idempotent: Object.entries(descriptor.methods)
      .filter(([, m]) => m.idempotent === true)
      .map(([m]) => m),
    ...(impl.failover ? { failover: impl.failover } : {}),
    ...(pullSchema && pull ? { pullData: producing(name, 'pullData', pullSchema, pull) } : {}),
    ...(handoverSchema && handover ? { handover: producing(name, 'handover', handoverSchema, handover) } : {}),
    failoverData: async (input: FailoverInput, ctx) => {
      const pulled = new Map<number, unknown>();
      const rejected = new Map<number, string>();
      for (const [from, data] of input.pulled) {
        const r = pullSchema ? checked(pullSchema, data) : { ok: false as const, why: 'this key service pulls no data' };
        if (r.ok) pulled.set(from, r.data);
        else rejected.set(from, `pulled data: ${r.why}`);
      }
      let handed: TypedFailoverInput<unknown, unknown>['handover'];
      if (input.handover) {
        // Without a hand-over schema the old host sends null (it has no `handover`); anything else is a peer on another version.
        const r = handoverSchema ? checked(handoverSchema, input.handover.data) : input.handover.data === null ? { ok: true as const, data: null } : { ok: false as const, why: 'this key service hands no data over' };
        if (r.ok) handed = { from: input.handover.from, data: r.data };
        else rejected.set(input.handover.from, `hand-over data: ${r.why}`);
      }
      await failoverData?.({ pulled, handover: handed, rejected }, ctx);
    },
  });
}

/** A typed client of the key service `descriptor` describes, called by name through `node` (to whichever node hosts it). */
export function keyServiceClient<D extends KeyServiceDescriptor>(node: KeyServiceNode, descriptor: D): KeyServiceClient<D> {
  checkNodeArg(node, 'keyServiceClient', 'callKeyService');
  checkKeyServiceDescriptor(descriptor);
  const result: Record<string, unknown> = {};
  for (const [m, method] of Object.entries(descriptor.methods)) {
    result[m] = async (args: unknown, options: KeyServiceCallOptions = {}) => {
      // Checked before the spread below, which turned null, 5 or 'abc' into options.
      checkCallOptions(options);
      const value = await node.callKeyService(descriptor.name, m, args, { idempotent: method.idempotent === true, ...options });
      return parseResult(descriptor.name, m, method, value, `the host of ${descriptor.name}`);
    };
  }
  return result as KeyServiceClient<D>;
}
