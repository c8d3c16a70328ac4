/**
 * The typed runtime: a service descriptor is plain data (methods, their
 * kind, zod schemas for arguments and results) that icsgen generates and
 * people may write by hand. `serve` validates arguments at the serving edge
 * (INVALID_ARGUMENT back to the caller, never a crash) and results before
 * they leave; `client` gives typed methods.
 */
import type { z } from 'zod';
import { InvalidArgumentError, InvalidOptionError, RemoteInternalError } from '../errors/index.js';
import { safeParse } from '../schema/check.js';
import type { Ics } from './ics.js';
import { checkNode, type PoolConfig } from './options.js';
import type { CallOptions, HandlerContext, RegisteredService, RequestHandle } from './types.js';

export interface RpcMethod<I extends z.ZodType = z.ZodType, O extends z.ZodType = z.ZodType> {
  kind: 'rpc';
  input: I;
  output: O;
  /** Safe to run twice: a key-service call may be retried on a new host. @default false */
  idempotent?: boolean;
  description?: string;
}

export interface OneWayMethod<I extends z.ZodType = z.ZodType> {
  kind: 'oneway';
  input: I;
  description?: string;
}

export type MethodDescriptor = RpcMethod | OneWayMethod;

export interface ServiceDescriptor<M extends Record<string, MethodDescriptor> = Record<string, MethodDescriptor>> {
  /** Unique per node, e.g. `kv.Store`. */
  name: string;
  /** Channel name. @default 'default' */
  channel?: string;
  /** Subservice number on the channel, 0–65535. */
  subservice: number;
  /** Interface version, for humans and tools. @default 1 */
  version?: number;
  description?: string;
  methods: M;
}

/** Keeps the literal types of a descriptor; throws InvalidOptionError when it is not one (checkDescriptor). */
export function defineService<const M extends Record<string, MethodDescriptor>>(d: ServiceDescriptor<M>): ServiceDescriptor<M> {
  checkDescriptor(d);
  return d;
}

/** A zod schema (anything with `safeParse`), as descriptors carry them. */
export const isSchema = (s: unknown): boolean => typeof (s as { safeParse?: unknown } | null)?.safeParse === 'function';

/**
 * A descriptor's shape, for descriptors written by hand (or past the
 * types): a name of 1–200 characters, a subservice 0–65535, a channel name
 * when given, and methods each of kind `rpc` (with `input` and `output`
 * schemas) or `oneway` (with `input`). InvalidOptionError naming what is wrong.
 */
export function checkDescriptor(d: ServiceDescriptor): void {
  if (typeof d !== 'object' || d === null) throw new InvalidOptionError('(root)', 'a service descriptor must be { name, subservice, methods, channel? }');
  if (typeof d.name !== 'string' || d.name.length === 0 || d.name.length > 200) throw new InvalidOptionError('name', 'service descriptor: name must be a string of 1–200 characters');
  if (!Number.isInteger(d.subservice) || d.subservice < 0 || d.subservice > 0xffff) throw new InvalidOptionError('subservice', `service ${d.name}: subservice must be an integer 0–65535, got ${String(d.subservice)}`);
  if (d.channel !== undefined && typeof d.channel !== 'string') throw new InvalidOptionError('channel', `service ${d.name}: channel must be a channel's name`);
  if (typeof d.methods !== 'object' || d.methods === null) throw new InvalidOptionError('methods', `service ${d.name}: methods must be an object`);
  for (const [name, m] of Object.entries(d.methods)) {
    const kind = (m as { kind?: unknown } | null)?.kind;
    if (kind !== 'rpc' && kind !== 'oneway') throw new InvalidOptionError(`methods.${name}.kind`, `service ${d.name}: method ${name} must be of kind 'rpc' or 'oneway'`);
    if (!isSchema(m.input)) throw new InvalidOptionError(`methods.${name}.input`, `service ${d.name}: method ${name} needs an input schema`);
    if (kind === 'rpc' && !isSchema((m as RpcMethod).output)) throw new InvalidOptionError(`methods.${name}.output`, `service ${d.name}: rpc method ${name} needs an output schema`);
  }
}

/** The endpoint `serve` and `client` are given: an ICS (node.communication), not something else. */
function checkEndpoint(ics: Ics, what: string): void {
  if (typeof (ics as { registerService?: unknown } | null)?.registerService !== 'function') throw new InvalidArgumentError(`${what}: the first argument must be an ICS endpoint (node.communication)`);
}

type MaybePromise<T> = T | Promise<T>;

export type ServiceImpl<M extends Record<string, MethodDescriptor>> = {
  [K in keyof M]: M[K] extends RpcMethod<infer I, infer O>
    ? (args: z.output<I>, ctx: HandlerContext) => MaybePromise<z.input<O>>
    : M[K] extends OneWayMethod<infer I>
      ? (args: z.output<I>, ctx: HandlerContext) => MaybePromise<void>
      : never;
};

export type ServiceClient<M extends Record<string, MethodDescriptor>> = {
  [K in keyof M]: M[K] extends RpcMethod<infer I, infer O>
    ? (args: z.input<I>, options?: CallOptions) => Promise<z.output<O>>
    : M[K] extends OneWayMethod<infer I>
      ? (args: z.input<I>) => Promise<void>
      : never;
} & {
  /** Asynchronous request/response for a method: the handle now, the result later. */
  $request<K extends keyof M & string>(
    method: K,
    args: M[K] extends RpcMethod<infer I> ? z.input<I> : never,
    options?: CallOptions,
  ): RequestHandle<M[K] extends RpcMethod<z.ZodType, infer O> ? z.output<O> : never>;
};

function issues(error: z.ZodError): { path: string; message: string }[] {
  return error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message }));
}

/**
 * `fn` behind the method's schemas: arguments that fail `input` are refused
 * with INVALID_ARGUMENT before `fn` runs; a result that fails `output` is the
 * implementation's bug (INTERNAL). Shared by `serve` and the typed key services.
 */
export function validatedHandler<C>(
  service: string,
  name: string,
  method: MethodDescriptor,
  fn: (args: unknown, ctx: C) => unknown,
): (args: unknown, ctx: C) => Promise<unknown> {
  return async (args, ctx) => {
    const parsed = safeParse(method.input, args);
    if (!parsed.success) {
      throw new InvalidArgumentError(`invalid arguments for ${service}.${name}`, { details: issues(parsed.error) });
    }
    const result = await fn(parsed.data, ctx);
    if (method.kind === 'oneway') return null;
    const out = method.output.safeParse(result);
    if (!out.success) {
      // The implementation broke its own contract: a server bug, not the caller's.
      throw new RemoteInternalError(`${service}.${name} returned a value that does not match its output schema`);
    }
    return out.data;
  };
}

/** A method's result as received: a value that fails `output` is the serving node's bug (INTERNAL). */
export function parseResult(service: string, name: string, method: RpcMethod, value: unknown, from: string): unknown {
  const out = safeParse(method.output, value);
  if (!out.success) throw new RemoteInternalError(`${from} answered ${service}.${name} with a value that does not match its output schema`);
  return out.data;
}

/** Serve `impl` under `descriptor` on `ics`. */
export function serve<M extends Record<string, MethodDescriptor>>(
  ics: Ics,
  descriptor: ServiceDescriptor<M>,
  impl: ServiceImpl<M>,
  options: { pool?: PoolConfig } = {},
): RegisteredService {
  checkEndpoint(ics, 'serve');
  checkDescriptor(descriptor);
  if (typeof impl !== 'object' || impl === null) throw new InvalidOptionError('impl', `serve ${descriptor.name}: the implementation must be an object of functions`);
  const handlers: Record<string, (args: unknown, ctx: HandlerContext) => Promise<unknown>> = {};
  for (const [name, method] of Object.entries(descriptor.methods)) {
    const fn = (impl as Record<string, ((args: unknown, ctx: HandlerContext) => unknown) | undefined>)[name];
    if (typeof fn !== 'function') throw new InvalidOptionError(`impl.${name}`, `serve ${descriptor.name}: no implementation for method ${name}`);
    handlers[name] = validatedHandler(descriptor.name, name, method, fn);
  }
  return ics.registerService({
    name: descriptor.name,
    channel: descriptor.channel ?? 'default',
    subservice: descriptor.subservice,
    handlers,
    ...(options.pool ? { pool: options.pool } : {}),
  });
}

/** A typed client of `descriptor` on node `node`. */
export function client<M extends Record<string, MethodDescriptor>>(ics: Ics, descriptor: ServiceDescriptor<M>, node: number): ServiceClient<M> {
  checkEndpoint(ics, 'client');
  checkDescriptor(descriptor);
  checkNode(node);
  const address = { channel: descriptor.channel ?? 'default', subservice: descriptor.subservice };
  const parsed = (name: string, method: RpcMethod, value: unknown): unknown => parseResult(descriptor.name, name, method, value, `node ${node}`);
  const result: Record<string, unknown> = {
    $request: (name: string, args: unknown, options?: CallOptions) => {
      const method = Object.hasOwn(descriptor.methods, name) ? descriptor.methods[name] : undefined;
      if (!method || method.kind !== 'rpc') throw new InvalidArgumentError(`${descriptor.name}.${name} is not an rpc method`);
      const handle = ics.request(node, address, name, args, options);
      return {
        node,
        result: () => handle.result().then((v) => parsed(name, method, v)),
        cancel: (reason?: unknown) => handle.cancel(reason),
        get settled() {
          return handle.settled;
        },
      };
    },
  };
  for (const [name, method] of Object.entries(descriptor.methods)) {
    result[name] =
      method.kind === 'rpc'
        ? (args: unknown, options?: CallOptions) => ics.call(node, address, name, args, options).then((v) => parsed(name, method, v))
        : (args: unknown) => {
            // A one-way message gets no answer: arguments its schema refuses would be
            // dropped by the serving node unseen, so they are refused here, before sending.
            const checked = safeParse(method.input, args);
            if (!checked.success) return Promise.reject(new InvalidArgumentError(`invalid arguments for ${descriptor.name}.${name}`, { details: issues(checked.error) }));
            return ics.send(node, address, name, args);
          };
  }
  return result as ServiceClient<M>;
}
