/**
 * The call-tracing hook (`Ics.instrument`): headers a tracer returns on the
 * caller reach `onServe` on the serving node, both sides see how the call
 * ended, a handler runs inside the tracer's `run`, a throwing tracer costs
 * nothing but its trace, and without a tracer the Request's bytes carry no
 * header field.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type CallTracer, FrameType, InvalidArgumentError, NotFoundError, type ServedCall, type TraceOutcome, type TracedCall } from '@clusterinfra/core';
import { encodeFrame } from '../../src/ics/wire/index.js';
import { makeCluster, type TestCluster } from './harness.js';

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const ECHO = { channel: 'default', subservice: 7 };

async function twoNodes(): Promise<TestCluster> {
  cluster = await makeCluster('memory', 2);
  cluster.node(2).registerService({
    ...ECHO,
    name: 'echo',
    handlers: {
      echo: (args) => args,
      fail: () => {
        throw new NotFoundError('no such thing');
      },
      // Returns normally once aborted: the trace must still end as the abort.
      slow: (_, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve('late'))),
    },
  });
  return cluster;
}

/** Records what a tracer sees; the client side sends `headers`. */
function recorder(headers: Record<string, string> | undefined) {
  const log = {
    calls: [] as TracedCall[],
    callEnds: [] as TraceOutcome[],
    serves: [] as { call: ServedCall; headers: Record<string, string> | undefined }[],
    serveEnds: [] as TraceOutcome[],
    ranInside: 0,
  };
  const tracer: CallTracer = {
    onCall: (call) => {
      log.calls.push(call);
      return { ...(headers ? { headers } : {}), end: (o) => void log.callEnds.push(o) };
    },
    onServe: (call, h) => {
      log.serves.push({ call, headers: h ? { ...h } : undefined });
      return {
        run: (fn) => {
          log.ranInside++;
          return fn();
        },
        end: (o) => void log.serveEnds.push(o),
      };
    },
  };
  return { log, tracer };
}

/** Sizes of the frames node 1 sent to node 2 (the memory network's trace). */
function framesFrom1To2(c: TestCluster): number[] {
  return c.network!.trace.filter((e) => e.event === 'deliver' && e.from === 'node-1' && e.to === 'node-2').map((e) => e.size!);
}

describe('ICS call tracing hook', () => {
  it('carries the headers to the server and tells both sides how the call ended', async () => {
    const c = await twoNodes();
    const { log, tracer } = recorder({ traceparent: '00-abc-def-01' });
    c.node(1).instrument(tracer);
    c.node(2).instrument(tracer);
    await expect(c.node(1).call(2, ECHO, 'echo', { x: 1 })).resolves.toEqual({ x: 1 });
    await expect(c.node(1).call(2, ECHO, 'fail')).rejects.toBeInstanceOf(NotFoundError);
    expect(log.calls).toEqual([
      { node: 2, channel: 'default', subservice: 7, method: 'echo' },
      { node: 2, channel: 'default', subservice: 7, method: 'fail' },
    ]);
    expect(log.serves.map((s) => s.headers)).toEqual([{ traceparent: '00-abc-def-01' }, { traceparent: '00-abc-def-01' }]);
    expect(log.serves[0]!.call).toEqual({ caller: 1, service: 'echo', channel: 'default', subservice: 7, method: 'echo' });
    expect(log.ranInside).toBe(2);
    expect(log.callEnds.map((o) => o.status)).toEqual(['OK', 'ICS_ERR_NOT_FOUND']);
    expect(log.callEnds[1]!.error).toBeInstanceOf(NotFoundError);
    expect(log.serveEnds.map((o) => o.status)).toEqual(['OK', 'ICS_ERR_NOT_FOUND']);
  });

  it('a request aborted by its deadline ends its server trace with the abort, though the handler returned', async () => {
    const c = await twoNodes();
    const { log, tracer } = recorder(undefined);
    c.node(1).instrument(tracer);
    c.node(2).instrument(tracer);
    await expect(c.node(1).call(2, ECHO, 'slow', null, { timeoutMs: 50 })).rejects.toMatchObject({ code: 'ICS_ERR_DEADLINE_EXCEEDED' });
    // The Cancel travels to node 2 and aborts the handler: wait for its trace to end (bounded).
    for (let i = 0; i < 500 && log.serveEnds.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(log.callEnds.map((o) => o.status)).toEqual(['ICS_ERR_DEADLINE_EXCEEDED']);
    expect(log.serveEnds.map((o) => o.status)).toEqual(['ICS_ERR_DEADLINE_EXCEEDED']);
  });

  it('traces a call to this node itself the same way', async () => {
    const c = await twoNodes();
    const { log, tracer } = recorder({ tp: 'local' });
    c.node(2).instrument(tracer);
    await c.node(2).call(2, ECHO, 'echo', 1);
    expect(log.serves.map((s) => [s.call.caller, s.headers])).toEqual([[2, { tp: 'local' }]]);
    expect(log.callEnds.map((o) => o.status)).toEqual(['OK']);
  });

  it('without a tracer a Request has exactly the bytes of a Request without headers; with one, the header block more', async () => {
    const c = await twoNodes();
    // Warm the link up (credits, first call) so that the next call is the only frame of its size.
    await c.node(1).call(2, ECHO, 'echo', 'warm');
    const before = framesFrom1To2(c).length;
    await c.node(1).call(2, ECHO, 'echo', 'payload-0123456789');
    const plain = framesFrom1To2(c).slice(before);
    const request = { type: FrameType.Request, channel: 1, service: 0x1_0007, id: 1, timeoutMs: 1, method: 'echo', priority: false, body: 'payload-0123456789' } as const;
    const expected = encodeFrame(request).byteLength;
    expect(plain).toEqual([expected]);

    const remove = c.node(1).instrument(recorder({ traceparent: 'x'.repeat(20) }).tracer);
    const mark = framesFrom1To2(c).length;
    await c.node(1).call(2, ECHO, 'echo', 'payload-0123456789');
    expect(framesFrom1To2(c).slice(mark)).toEqual([encodeFrame({ ...request, headers: { traceparent: 'x'.repeat(20) } }).byteLength]);
    expect(framesFrom1To2(c).slice(mark)[0]! - expected).toBe(2 + 1 + 1 + 'traceparent'.length + 2 + 20);

    // A tracer that returns no headers, and a removed tracer, leave the bytes as they were.
    remove();
    c.node(1).instrument(recorder(undefined).tracer);
    const again = framesFrom1To2(c).length;
    await c.node(1).call(2, ECHO, 'echo', 'payload-0123456789');
    expect(framesFrom1To2(c).slice(again)).toEqual([expected]);
  });

  it('one tracer per endpoint; the disposer frees the place', async () => {
    const c = await twoNodes();
    const remove = c.node(1).instrument({});
    expect(() => c.node(1).instrument({})).toThrow(InvalidArgumentError);
    remove();
    expect(() => c.node(1).instrument({})).not.toThrow();
  });

  it('a tracer that throws leaves the calls working, untraced', async () => {
    const c = await twoNodes();
    const boom = (): never => {
      throw new Error('broken tracer');
    };
    c.node(1).instrument({ onCall: boom });
    c.node(2).instrument({ onServe: boom });
    await expect(c.node(1).call(2, ECHO, 'echo', 5)).resolves.toBe(5);
    await expect(c.node(1).call(2, ECHO, 'fail')).rejects.toBeInstanceOf(NotFoundError);
  });
});
