/**
 * OpenTelemetry traces for ClusterInfra: a span per ICS call on the caller
 * (kind CLIENT) and on the serving node (kind SERVER, the caller's span as
 * its parent through the trace context carried in the Request's header
 * field), and a short INTERNAL span per CLMS transition and key-service
 * move, each holding one event.
 *
 * It plugs into core's call-tracing hook (`Ics.instrument`); core never
 * imports OpenTelemetry, and a node without this adapter sends no header
 * bytes and runs no tracing code. Only `@opentelemetry/api` is used (a peer
 * dependency): spans go wherever the application's SDK sends them.
 */
import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapPropagator,
  type TextMapSetter,
  trace,
  type Tracer,
} from '@opentelemetry/api';
import { InvalidArgumentError } from '@clusterinfra/core';
import type { CallTracer, ClusterNode, Ics, KeyServiceInfo, ServeTrace, TraceOutcome, Transition } from '@clusterinfra/core';

/** The name (and instrumentation scope) of the default tracer. */
export const INSTRUMENTATION_NAME = '@clusterinfra/otel';

/** Span attribute names, in one place (`rpc.*` after OpenTelemetry's RPC conventions). */
export const ATTR = Object.freeze({
  rpcSystem: 'rpc.system',
  rpcService: 'rpc.service',
  rpcMethod: 'rpc.method',
  channel: 'clusterinfra.channel',
  subservice: 'clusterinfra.subservice',
  node: 'clusterinfra.node',
  targetNode: 'clusterinfra.target_node',
  callerNode: 'clusterinfra.caller_node',
  status: 'clusterinfra.status',
  transitionNumber: 'clusterinfra.transition.number',
  transitionKind: 'clusterinfra.transition.kind',
  term: 'clusterinfra.term',
  subjectNode: 'clusterinfra.transition.node',
  from: 'clusterinfra.transition.from',
  to: 'clusterinfra.transition.to',
  cause: 'clusterinfra.transition.cause',
  keyService: 'clusterinfra.keyservice',
  keyServiceHost: 'clusterinfra.keyservice.host',
  keyServiceEpoch: 'clusterinfra.keyservice.epoch',
  keyServiceReady: 'clusterinfra.keyservice.ready',
});

export interface OtelOptions {
  /** Where spans are made. @default trace.getTracer('@clusterinfra/otel') (the global provider) */
  tracer?: Tracer;
  /** How the trace context is written into and read from a Request's headers. @default the global propagator (`propagation`) */
  propagator?: Pick<TextMapPropagator, 'inject' | 'extract'>;
  /** Record CLMS transitions and key-service moves (ClusterNode only). @default true */
  membership?: boolean;
}

const setter: TextMapSetter<Record<string, string>> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

const getter: TextMapGetter<Readonly<Record<string, string>>> = {
  keys: (carrier) => Object.keys(carrier),
  // Core hands over a map without a prototype: a plain lookup is safe.
  get: (carrier, key) => carrier[key],
};

function endSpan(span: Span, outcome: TraceOutcome): void {
  span.setAttribute(ATTR.status, outcome.status);
  if (outcome.error) {
    span.recordException(outcome.error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: `${outcome.status}: ${outcome.error.message}` });
  }
  span.end();
}

/** What a span of either side says about the call. */
function rpcAttributes(service: string, call: { channel: string; subservice: number; method: string }, nodeNum: number): Attributes {
  return {
    [ATTR.rpcSystem]: 'clusterinfra',
    [ATTR.rpcService]: service,
    [ATTR.rpcMethod]: call.method,
    [ATTR.channel]: call.channel,
    [ATTR.subservice]: call.subservice,
    [ATTR.node]: nodeNum,
  };
}

/** The tracer handed to core: spans for calls made and served. */
function callTracer(tracer: Tracer, propagator: NonNullable<OtelOptions['propagator']>, nodeNum: number): CallTracer {
  return {
    onCall(call) {
      const parent = context.active();
      const span = tracer.startSpan(
        `${call.channel}/${call.subservice}/${call.method}`,
        { kind: SpanKind.CLIENT, attributes: { ...rpcAttributes(`${call.channel}/${call.subservice}`, call, nodeNum), [ATTR.targetNode]: call.node } },
        parent,
      );
      const headers: Record<string, string> = {};
      propagator.inject(trace.setSpan(parent, span), headers, setter);
      return { headers, end: (outcome) => endSpan(span, outcome) };
    },
    onServe(call, headers): ServeTrace {
      const parent: Context = headers ? propagator.extract(ROOT_CONTEXT, headers, getter) : ROOT_CONTEXT;
      const span = tracer.startSpan(
        `${call.service}/${call.method}`,
        { kind: SpanKind.SERVER, attributes: { ...rpcAttributes(call.service, call, nodeNum), [ATTR.callerNode]: call.caller } },
        parent,
      );
      const active = trace.setSpan(parent, span);
      return {
        // Calls the handler makes are children of this span (with a context manager registered).
        run: (fn) => context.with(active, fn),
        end: (outcome) => endSpan(span, outcome),
      };
    },
  };
}

/** One short INTERNAL span with one event: how a membership fact is recorded. */
function recordFact(tracer: Tracer, name: string, attributes: Attributes): void {
  const span = tracer.startSpan(name, { kind: SpanKind.INTERNAL, attributes }, ROOT_CONTEXT);
  span.addEvent(name, attributes);
  span.end();
}

function transitionAttributes(nodeNum: number, t: Transition): Attributes {
  return {
    [ATTR.node]: nodeNum,
    [ATTR.transitionNumber]: t.number,
    [ATTR.transitionKind]: t.kind,
    [ATTR.term]: t.term,
    [ATTR.subjectNode]: t.node,
    [ATTR.from]: t.from,
    [ATTR.to]: t.to,
    [ATTR.cause]: t.cause,
  };
}

function keyServiceAttributes(nodeNum: number, k: KeyServiceInfo): Attributes {
  return {
    [ATTR.node]: nodeNum,
    [ATTR.keyService]: k.name,
    [ATTR.keyServiceEpoch]: k.epoch,
    [ATTR.keyServiceReady]: k.ready,
    [ATTR.transitionNumber]: k.since,
    // A vacant service has no host: the attribute is left out.
    ...(k.host !== undefined ? { [ATTR.keyServiceHost]: k.host } : {}),
  };
}

function isClusterNode(target: ClusterNode | Ics): target is ClusterNode {
  return 'currentCommunication' in target;
}

/**
 * Trace `target`: an ICS endpoint, or a ClusterNode (its endpoint, the one
 * of each later incarnation too, and its membership). Returns the function
 * that stops it; calls under way still end their spans.
 */
export function instrument(target: ClusterNode | Ics, options: OtelOptions = {}): () => void {
  // A mistake fails here, typed, rather than as a TypeError from the first line that uses it.
  if (typeof target !== 'object' || target === null || (!isClusterNode(target) && typeof (target as { instrument?: unknown }).instrument !== 'function')) {
    throw new InvalidArgumentError('instrument takes a ClusterNode or an ICS endpoint');
  }
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('instrument\'s options must be an object');
  const tracer = options.tracer ?? trace.getTracer(INSTRUMENTATION_NAME);
  const propagator = options.propagator ?? propagation;
  const calls = callTracer(tracer, propagator, target.nodeNum);
  if (!isClusterNode(target)) return target.instrument(calls);

  const node = target;
  let endpoint: Ics | undefined;
  let uninstall: (() => void) | undefined;
  // A rejoin brings a new endpoint (a new incarnation): follow it on the node's next event.
  const follow = (): void => {
    const current = node.currentCommunication as Ics | undefined;
    if (current === undefined || current === endpoint) return;
    uninstall?.();
    endpoint = current;
    uninstall = current.instrument(calls);
  };
  const onTransition = (t: Transition): void => {
    follow();
    if (options.membership !== false) recordFact(tracer, 'clms.transition', transitionAttributes(node.nodeNum, t));
  };
  const onKeyService = (k: KeyServiceInfo): void => {
    if (options.membership !== false) recordFact(tracer, 'clms.keyservice', keyServiceAttributes(node.nodeNum, k));
  };
  follow();
  node.on('joining', follow);
  node.on('transition', onTransition);
  node.on('keyservice', onKeyService);
  return () => {
    node.off('joining', follow);
    node.off('transition', onTransition);
    node.off('keyservice', onKeyService);
    uninstall?.();
    uninstall = undefined;
  };
}
