/**
 * otel: OpenTelemetry traces across a three-node cluster (@clusterinfra/otel).
 *
 * - Every node is instrumented with `instrument(node, { tracer, propagator })`.
 * - Node 1 calls `shop/checkout` on node 2 inside a `checkout` span of its
 *   own; the handler calls `stock/reserve` on node 3. The trace context
 *   travels in each Request's header field, so the five spans form one
 *   trace: checkout → CLIENT (1) → SERVER (2) → CLIENT (2) → SERVER (3).
 * - A call whose handler throws (`refund`: no such order) ends both its spans
 *   in error, with the error's code.
 * - Membership: each CLMS transition and key-service move is a short span.
 *
 * Spans go to the SDK's in-memory exporter and are printed as a tree; a real
 * application registers its own SDK (OTLP exporter, sampler) instead.
 *
 *   npx tsx examples/otel.ts           # on the in-memory network
 *   npx tsx examples/otel.ts --tcp     # over TCP on 127.0.0.1
 */
import { pathToFileURL } from 'node:url';
import { context, SpanKind } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ClusterNode, NotFoundError } from '@clusterinfra/core';
import { instrument } from '@clusterinfra/otel';
import { exampleNetwork, type TransportKind } from './lib/transports.js';

export interface OtelExampleResult {
  /** The checkout trace, parents before children: `KIND name @node`. */
  tree: string[];
  /** Trace ids seen in the checkout trace (one). */
  traceIds: number;
  /** Status of the spans of the failed call: `KIND code`. */
  failed: string[];
  /** How many transition and key-service spans node 1 recorded. */
  transitions: number;
  keyServiceMoves: number;
}

const SHOP = { channel: 'default', subservice: 10 };
const STOCK = { channel: 'default', subservice: 11 };

export async function main(transport: TransportKind = 'memory', print: (line: string) => void = (l) => console.log(l)): Promise<OtelExampleResult> {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracer = provider.getTracer('otel-example');
  // Handlers' own calls find their server span through the active context.
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  const options = { tracer, propagator: new W3CTraceContextPropagator() };

  const net = await exampleNetwork(transport, 3);
  const nodes: ClusterNode[] = [];
  const stops: (() => void)[] = [];
  try {
    for (const n of [1, 2, 3]) {
      const node = new ClusterNode({
        nodeNum: n,
        clusterName: 'otel-demo',
        transport: net.transport(n),
        candidates: [1, 2, 3],
        seeds: [1, 2, 3].filter((m) => m !== n).map((m) => net.address(m)),
        preset: 'local',
      });
      node.registerKeyService({ name: 'ledger', subservice: 1, handlers: { total: () => 42 } });
      stops.push(instrument(node, options));
      nodes.push(node);
    }
    const [one, two, three] = nodes as [ClusterNode, ClusterNode, ClusterNode];
    await Promise.all(nodes.map((node) => node.start()));
    three.communication.registerService({ ...STOCK, name: 'stock', handlers: { reserve: (sku) => ({ sku, reserved: true }) } });
    two.communication.registerService({
      ...SHOP,
      name: 'shop',
      handlers: {
        checkout: (order) => two.communication.call(3, STOCK, 'reserve', (order as { sku: string }).sku),
        refund: () => {
          throw new NotFoundError('no such order');
        },
      },
    });

    await tracer.startActiveSpan('checkout', async (span) => {
      const result = await one.communication.call(2, SHOP, 'checkout', { sku: 'A-7' });
      print(`node 1 got ${JSON.stringify(result)}`);
      span.end();
    });
    await one.communication.call(2, SHOP, 'refund').catch((err: { code?: string }) => print(`refund failed as expected: ${err.code}`));

    const spans = exporter.getFinishedSpans();
    const root = spans.find((s) => s.name === 'checkout')!;
    const inTrace = spans.filter((s) => s.spanContext().traceId === root.spanContext().traceId);
    const label = (s: ReadableSpan): string => `${s.kind === SpanKind.CLIENT ? 'CLIENT' : s.kind === SpanKind.SERVER ? 'SERVER' : 'INTERNAL'} ${s.name}${s.attributes['clusterinfra.node'] !== undefined ? ` @${String(s.attributes['clusterinfra.node'])}` : ''}`;
    const tree: string[] = [];
    const walk = (s: ReadableSpan, depth: number): void => {
      tree.push(label(s));
      print(`${'  '.repeat(depth)}${label(s)} (${s.spanContext().spanId})`);
      for (const child of inTrace.filter((c) => c.parentSpanContext?.spanId === s.spanContext().spanId)) walk(child, depth + 1);
    };
    walk(root, 0);
    const failed = spans.filter((s) => s.attributes['rpc.method'] === 'refund').map((s) => `${s.kind === SpanKind.CLIENT ? 'CLIENT' : 'SERVER'} ${String(s.attributes['clusterinfra.status'])}`);
    const ofNode1 = (name: string): number => spans.filter((s) => s.name === name && s.attributes['clusterinfra.node'] === 1).length;
    const result: OtelExampleResult = {
      tree,
      traceIds: new Set(inTrace.map((s) => s.spanContext().traceId)).size,
      failed,
      transitions: ofNode1('clms.transition'),
      keyServiceMoves: ofNode1('clms.keyservice'),
    };
    print(`node 1 recorded ${result.transitions} transitions and ${result.keyServiceMoves} key-service moves`);
    return result;
  } finally {
    for (const stop of stops) stop();
    await Promise.all(nodes.map((node) => node.close()));
    context.disable();
    await provider.shutdown();
    print('all nodes closed');
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.includes('--tcp') ? 'tcp' : 'memory').catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
