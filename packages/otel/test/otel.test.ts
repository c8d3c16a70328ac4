/**
 * @clusterinfra/otel over the memory transport, spans caught by the SDK's
 * in-memory exporter: the server span is the child of the caller's span on
 * another node, a failing call ends both spans in error, transitions and
 * key-service moves are recorded, and an endpoint without the adapter puts
 * no header bytes on the wire.
 */
import { context, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClusterNode, createIcs, type Ics, InvalidArgumentError, NotFoundError, seededRandom, silentLogger, VirtualClock } from '@clusterinfra/core';
import { createMemoryNetwork, type MemoryNetwork, memory } from '@clusterinfra/transport-mem';
import { ATTR, instrument } from '../src/index.js';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer('test');
const propagator = new W3CTraceContextPropagator();
const options = { tracer, propagator };

// Calls made inside a handler find the server span through the active context.
beforeAll(() => void context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable()));
afterAll(() => context.disable());

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  exporter.reset();
});

const SVC = { channel: 'default', subservice: 3 };

/** Three ICS endpoints on one memory network; 2 serves `echo`, `fail` and `relay` (which calls 3). */
async function endpoints(): Promise<{ network: MemoryNetwork; ics: Ics[] }> {
  const network = createMemoryNetwork({ seed: 1 });
  const addresses = new Map<number, string>();
  const ics: Ics[] = [];
  for (const nodeNum of [1, 2, 3]) {
    const e = createIcs({ transport: memory({ network, address: `node-${nodeNum}` }), clusterName: 'otel', nodeNum, logger: silentLogger, peers: (n) => addresses.get(n) });
    await e.start();
    addresses.set(nodeNum, e.address!);
    closers.push(() => e.close());
    ics.push(e);
  }
  const [, two, three] = ics as [Ics, Ics, Ics];
  two.registerService({
    ...SVC,
    name: 'shop',
    handlers: {
      echo: (args) => args,
      fail: () => {
        throw new NotFoundError('no such article');
      },
      relay: (args) => two.call(3, SVC, 'echo', args),
    },
  });
  three.registerService({ ...SVC, name: 'stock', handlers: { echo: (args) => args } });
  return { network, ics };
}

const spanId = (s: ReadableSpan): string => s.spanContext().spanId;
const parentId = (s: ReadableSpan): string | undefined => s.parentSpanContext?.spanId;
const byKind = (kind: SpanKind): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.kind === kind);

describe('ICS calls', () => {
  it('the server span is the child of the caller span, across nodes', async () => {
    const { ics } = await endpoints();
    for (const e of ics) closers.push(instrument(e, options));
    await tracer.startActiveSpan('checkout', async (root: Span) => {
      await expect(ics[0]!.call(2, SVC, 'echo', { sku: 7 })).resolves.toEqual({ sku: 7 });
      root.end();
    });
    const [client] = byKind(SpanKind.CLIENT);
    const [server] = byKind(SpanKind.SERVER);
    const root = exporter.getFinishedSpans().find((s) => s.name === 'checkout')!;
    expect(client!.name).toBe('default/3/echo');
    expect(client!.attributes).toMatchObject({ [ATTR.rpcMethod]: 'echo', [ATTR.subservice]: 3, [ATTR.node]: 1, [ATTR.targetNode]: 2, [ATTR.status]: 'OK' });
    expect(parentId(client!)).toBe(spanId(root));
    expect(server!.name).toBe('shop/echo');
    expect(server!.attributes).toMatchObject({ [ATTR.rpcService]: 'shop', [ATTR.node]: 2, [ATTR.callerNode]: 1, [ATTR.status]: 'OK' });
    expect(server!.spanContext().traceId).toBe(root.spanContext().traceId);
    expect(parentId(server!)).toBe(spanId(client!));
  });

  it('a call made inside a handler continues the trace to a third node', async () => {
    const { ics } = await endpoints();
    for (const e of ics) closers.push(instrument(e, options));
    await ics[0]!.call(2, SVC, 'relay', 'x');
    const spans = exporter.getFinishedSpans();
    const server2 = spans.find((s) => s.kind === SpanKind.SERVER && s.attributes[ATTR.node] === 2)!;
    const client2 = spans.find((s) => s.kind === SpanKind.CLIENT && s.attributes[ATTR.node] === 2)!;
    const server3 = spans.find((s) => s.kind === SpanKind.SERVER && s.attributes[ATTR.node] === 3)!;
    expect(parentId(client2)).toBe(spanId(server2));
    expect(parentId(server3)).toBe(spanId(client2));
    expect(new Set(spans.map((s) => s.spanContext().traceId)).size).toBe(1);
  });

  it('a failing call ends both spans in error, with the error code', async () => {
    const { ics } = await endpoints();
    for (const e of ics) closers.push(instrument(e, options));
    await expect(ics[0]!.call(2, SVC, 'fail')).rejects.toBeInstanceOf(NotFoundError);
    for (const span of [...byKind(SpanKind.CLIENT), ...byKind(SpanKind.SERVER)]) {
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
      expect(span.attributes[ATTR.status]).toBe('ICS_ERR_NOT_FOUND');
      expect(span.events.map((e) => e.name)).toContain('exception');
    }
    expect(byKind(SpanKind.CLIENT)).toHaveLength(1);
    expect(byKind(SpanKind.SERVER)).toHaveLength(1);
  });

  it('no header bytes on the wire without the adapter; the trace context when instrumented; none again once disposed', async () => {
    const { network, ics } = await endpoints();
    const sent = (): number[] => network.trace.filter((e) => e.event === 'deliver' && e.from === 'node-1' && e.to === 'node-2').map((e) => e.size!);
    const oneCall = async (): Promise<number[]> => {
      const mark = sent().length;
      await ics[0]!.call(2, SVC, 'echo', 'same-args');
      return sent().slice(mark);
    };
    await oneCall(); // the first call brings the link up and its credits
    const [plain] = await oneCall();
    const dispose = instrument(ics[0]!, options);
    const [traced] = await oneCall();
    // u16 block length, count, key length, `traceparent`, u16 value length, 55 bytes of W3C traceparent.
    expect(traced! - plain!).toBe(2 + 1 + 1 + 'traceparent'.length + 2 + 55);
    dispose();
    expect(await oneCall()).toEqual([plain]);
    expect(byKind(SpanKind.SERVER)).toHaveLength(0); // node 2 was never instrumented
    expect(byKind(SpanKind.CLIENT)).toHaveLength(1);
  });
});

/** Two ClusterNodes with a critical key service `ledger`, on a virtual clock; closed after the test. */
function twoClusterNodes(): { clock: VirtualClock; nodes: ClusterNode[] } {
    const clock = new VirtualClock();
    const network = createMemoryNetwork({ seed: 3, clock });
    const nodes = [1, 2].map(
      (n) =>
        new ClusterNode({
          nodeNum: n,
          clusterName: 'otel',
          transport: memory({ network, address: `node-${n}` }),
          candidates: [1, 2],
          seeds: [`node-${3 - n}`],
          preset: 'local',
          clock,
          random: seededRandom(`otel/${n}`),
          logger: silentLogger,
        }),
    );
    // Closing runs timers of the virtual clock: advance it until both nodes have closed.
    closers.push(async () => {
      let closed = false;
      const closing = Promise.all(nodes.map((n) => n.close())).then(() => (closed = true));
      await clock.advanceUntil(() => closed, 60_000);
      await closing;
    });
    for (const node of nodes) node.registerKeyService({ name: 'ledger', critical: true, subservice: 1, handlers: { add: () => node.nodeNum } });
    return { clock, nodes };
}

const bothUp = (nodes: ClusterNode[]) => (): boolean => nodes.every((n) => n.formed && n.info(1)?.state === 'Up' && n.info(2)?.state === 'Up');

describe('misuse', () => {
  it('instrument refuses what is not a ClusterNode or an ICS endpoint, and options that are not an object, with InvalidArgumentError (it was a TypeError)', async () => {
    for (const target of [null, undefined, {}, 5]) expect(() => instrument(target as never, options)).toThrow(InvalidArgumentError);
    const { ics } = await endpoints();
    expect(() => instrument(ics[0]!, null as never)).toThrow(expect.objectContaining({ code: 'ICS_ERR_INVALID_ARGUMENT' }));
    // A valid target still works.
    instrument(ics[0]!, options)();
  });
});

describe('membership', () => {
  it('records CLMS transitions and key-service moves, and traces the node\'s calls', async () => {
    const { clock, nodes } = twoClusterNodes();
    const one = nodes[0]!;
    closers.push(instrument(one, options));
    for (const node of nodes) void node.start().catch(() => {});
    expect(await clock.advanceUntil(bothUp(nodes), 30_000)).toBe(true);

    const transitions = exporter.getFinishedSpans().filter((s) => s.name === 'clms.transition');
    expect(transitions.length).toBeGreaterThan(0);
    expect(transitions.map((s) => s.attributes[ATTR.transitionNumber])).toEqual(transitions.map((_, i) => i + 1));
    expect(transitions.every((s) => s.attributes[ATTR.node] === 1 && s.events[0]?.name === 'clms.transition')).toBe(true);
    expect(transitions.map((s) => s.attributes[ATTR.subjectNode])).toEqual(expect.arrayContaining([1, 2]));
    const moves = exporter.getFinishedSpans().filter((s) => s.name === 'clms.keyservice');
    const host = one.keyService('ledger')!.host!;
    expect(moves.some((s) => s.attributes[ATTR.keyService] === 'ledger' && s.attributes[ATTR.keyServiceHost] === host && s.attributes[ATTR.keyServiceReady] === true)).toBe(true);

    // Calls from node 1 are traced: the adapter installed itself on the node's endpoint.
    const call = one.callKeyService('ledger', 'add', null);
    await clock.advanceUntil(() => byKind(SpanKind.CLIENT).length > 0 || byKind(SpanKind.SERVER).length > 0, 5_000);
    await call;
    expect(exporter.getFinishedSpans().some((s) => s.kind === SpanKind.CLIENT || s.kind === SpanKind.SERVER)).toBe(true);
  });

  it('follows a node to the endpoint of its next incarnation (evicted, it rejoins)', async () => {
    const { clock, nodes } = twoClusterNodes();
    const [one, two] = nodes as [ClusterNode, ClusterNode];
    closers.push(instrument(two, options));
    for (const node of nodes) void node.start().catch(() => {});
    expect(await clock.advanceUntil(bothUp(nodes), 30_000)).toBe(true);
    const first = two.currentCommunication;
    void one.declareDown(2).catch(() => {});
    expect(await clock.advanceUntil(() => two.currentCommunication !== first && bothUp(nodes)(), 60_000)).toBe(true);
    exporter.reset();
    const call = two.communication.call(1, { channel: 'default', subservice: 1 }, 'nothing').catch(() => undefined);
    await clock.advanceUntil(() => byKind(SpanKind.CLIENT).length > 0, 5_000);
    await call;
    const [client] = byKind(SpanKind.CLIENT);
    expect(client?.attributes[ATTR.node]).toBe(2);
    expect(client?.attributes[ATTR.targetNode]).toBe(1);
  });
});
