/**
 * Reference libraries for the ICS rows of `npm run bench`: Moleculer and
 * gRPC, measured in the same run, between the same two OS processes, on the
 * same workloads as ICS and the net+msgpackr baseline (see bench/README.md,
 * "Reference libraries"). Both ends live here: `startReferenceServers` runs
 * in bench/server.ts, `connectReferences` in bench/run.ts.
 *
 * - Moleculer 0.14 (0.15 needs Node 22): TCP transporter with UDP discovery
 *   off and the peer given by URL (no broker process, no discovery), a
 *   msgpackr serializer (the same Packr settings as the baseline), metrics,
 *   tracing and logging off. RPC is `broker.call`; one-way is `broker.emit`
 *   of a balanced event, with at most ONEWAY_OUTSTANDING emits whose socket
 *   write has not completed (Moleculer has no backpressure of its own).
 * - gRPC (`@grpc/grpc-js`): a bytes service defined in code whose messages
 *   are msgpackr-encoded (no protobuf schema to compile); RPC is a unary
 *   call; one-way is one long-lived client stream, with HTTP/2 flow control
 *   as backpressure (`write` false, then `drain`).
 */
import * as grpc from '@grpc/grpc-js';
import moleculer from 'moleculer';
import { BENCH_SERVICE, type BenchSystem, type OneWayCounter, packr, unpackr } from './common.js';

/** The reference systems; each row says which of them it runs (`bulk` none: its ICS side is the out-of-line lane). */
export type ReferenceName = 'moleculer' | 'grpc';
export const REFERENCE_ROWS: Record<ReferenceName, readonly string[]> = {
  moleculer: ['latency', 'pipelined-small', 'pipelined-64k', 'oneway'],
  grpc: ['latency', 'pipelined-small', 'pipelined-64k', 'oneway'],
};

export interface ReferencePorts {
  moleculer: number;
  grpc: number;
}

const MOLECULER_SERVER_ID = 'bench-server';
const MOLECULER_CLIENT_ID = 'bench-client';
const SERVICE = 'bench';
/** Moleculer: emits whose write has not completed before trySend says wait. */
const ONEWAY_OUTSTANDING = 4096;
/** The 1 MiB default would refuse nothing here (64 KiB is the largest row), but say it. */
const MOLECULER_MAX_PACKET = 4 * 1024 * 1024;

class MsgpackrSerializer extends moleculer.Serializers.Base {
  override serialize(obj: object): Buffer {
    return packr.pack(obj);
  }
  override deserialize(buf: Buffer): object {
    return unpackr.unpack(buf) as object;
  }
}

function moleculerBroker(nodeID: string, port: number, urls?: string[]): moleculer.ServiceBroker {
  return new moleculer.ServiceBroker({
    nodeID,
    namespace: 'bench',
    logger: false,
    metrics: false,
    tracing: false,
    serializer: new MsgpackrSerializer(),
    transporter: {
      type: 'TCP',
      options: { udpDiscovery: false, port, urls: urls ?? null, maxPacketSize: MOLECULER_MAX_PACKET },
    },
    requestTimeout: 15_000,
  });
}

// ------------------------------------------------------------------ gRPC service

const ser = (v: unknown): Buffer => packr.pack(v);
const de = (b: Buffer): unknown => unpackr.unpack(b);
const method = (name: string, requestStream: boolean): grpc.MethodDefinition<unknown, unknown> => ({
  path: `/bench.Bench/${name}`,
  requestStream,
  responseStream: false,
  requestSerialize: ser,
  requestDeserialize: de,
  responseSerialize: ser,
  responseDeserialize: de,
});
const GRPC_SERVICE = {
  echo: method('Echo', false),
  notes: method('Notes', true),
  reset: method('Reset', false),
  waitCount: method('WaitCount', false),
} satisfies grpc.ServiceDefinition;

// ------------------------------------------------------------------ server side

/** Starts the Moleculer broker and the gRPC server on 127.0.0.1; they count one-way messages in `counter`. */
export async function startReferenceServers(counter: OneWayCounter): Promise<{ ports: ReferencePorts; close(): Promise<void> }> {
  const broker = moleculerBroker(MOLECULER_SERVER_ID, 0);
  broker.createService({
    name: SERVICE,
    actions: {
      echo: (ctx: moleculer.Context) => ctx.params,
      reset: () => counter.reset(),
      waitCount: (ctx: moleculer.Context<{ n: number }>) => counter.waitCount(ctx.params.n),
    },
    events: { [`${SERVICE}.note`]: () => counter.counted() },
  });
  await broker.start();
  const transporter = broker.transit!.tx as unknown as { opts: { port: number } };

  const server = new grpc.Server();
  server.addService(GRPC_SERVICE, {
    echo: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, call.request),
    notes: (call: grpc.ServerReadableStream<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      call.on('data', () => counter.counted());
      call.on('end', () => cb(null, null));
      call.on('error', () => {});
    },
    reset: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { n: counter.reset() }),
    waitCount: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      void Promise.resolve(counter.waitCount(call.request as number)).then((n) => cb(null, n));
    },
  });
  const grpcPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
  return {
    ports: { moleculer: transporter.opts.port, grpc: grpcPort },
    async close() {
      server.forceShutdown();
      await broker.stop();
    },
  };
}

// ------------------------------------------------------------------ client side

/** What run.ts drives; `sink` rejects (the references do not run the bulk row). */
export interface ReferenceSystem extends BenchSystem {
  readonly name: ReferenceName;
}

class MoleculerSystem implements ReferenceSystem {
  readonly name = 'moleculer';
  private outstanding = 0;
  private waiting: (() => void) | undefined;
  private readonly settled = (): void => {
    this.outstanding--;
    if (this.waiting && this.outstanding <= ONEWAY_OUTSTANDING / 4) {
      const w = this.waiting;
      this.waiting = undefined;
      w();
    }
  };
  constructor(private readonly broker: moleculer.ServiceBroker) {}
  call(payload: unknown): Promise<unknown> {
    return this.broker.call(`${SERVICE}.echo`, payload as object);
  }
  trySend(payload: unknown): boolean {
    this.outstanding++;
    this.broker.emit(`${SERVICE}.note`, payload).then(this.settled, this.settled);
    return this.outstanding < ONEWAY_OUTSTANDING;
  }
  drained(): Promise<void> {
    if (this.outstanding <= ONEWAY_OUTSTANDING / 4) return Promise.resolve();
    return new Promise((resolve) => (this.waiting = resolve));
  }
  reset(): Promise<unknown> {
    return this.broker.call(`${SERVICE}.reset`);
  }
  waitCount(n: number): Promise<unknown> {
    return this.broker.call(`${SERVICE}.waitCount`, { n });
  }
  sink(): Promise<unknown> {
    return Promise.reject(new Error('moleculer: no bulk row'));
  }
  close(): Promise<void> {
    return this.broker.stop();
  }
}

type GrpcClient = grpc.Client & Record<keyof typeof GRPC_SERVICE, (...args: unknown[]) => unknown>;

class GrpcSystem implements ReferenceSystem {
  readonly name = 'grpc';
  private readonly notes: grpc.ClientWritableStream<unknown>;
  constructor(private readonly client: GrpcClient) {
    this.notes = client.notes(() => {}) as grpc.ClientWritableStream<unknown>;
    this.notes.on('error', () => {});
  }
  private unary(m: 'echo' | 'reset' | 'waitCount', arg: unknown): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.client[m](arg, (err: grpc.ServiceError | null, v: unknown) => (err ? reject(err) : resolve(v)));
    });
  }
  call(payload: unknown): Promise<unknown> {
    return this.unary('echo', payload);
  }
  trySend(payload: unknown): boolean {
    return this.notes.write(payload);
  }
  drained(): Promise<void> {
    return new Promise((resolve) => this.notes.once('drain', () => resolve()));
  }
  reset(): Promise<unknown> {
    return this.unary('reset', {}); // grpc-js takes a falsy message for none
  }
  waitCount(n: number): Promise<unknown> {
    return this.unary('waitCount', n);
  }
  sink(): Promise<unknown> {
    return Promise.reject(new Error('grpc: no bulk row'));
  }
  async close(): Promise<void> {
    this.notes.end();
    this.client.close();
  }
}

/** Connects to the reference servers of bench/server.ts; resolves once each answered a call. */
export async function connectReferences(ports: ReferencePorts): Promise<ReferenceSystem[]> {
  const broker = moleculerBroker(MOLECULER_CLIENT_ID, 0, [`127.0.0.1:${ports.moleculer}/${MOLECULER_SERVER_ID}`]);
  await broker.start();
  await broker.waitForServices(SERVICE, 15_000);
  const Client = grpc.makeGenericClientConstructor(GRPC_SERVICE, 'Bench');
  const client = new Client(`127.0.0.1:${ports.grpc}`, grpc.credentials.createInsecure()) as unknown as GrpcClient;
  const systems = [new MoleculerSystem(broker), new GrpcSystem(client)];
  for (const s of systems) await s.call({ hello: BENCH_SERVICE.channel });
  return systems;
}
