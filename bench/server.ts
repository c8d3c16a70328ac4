/**
 * The bench's server process (forked by run.ts over IPC; never run by hand).
 * Serves the same work three ways: an ICS node over transport-tcp (with a
 * pre-shared secret), the baseline RPC server (raw node:net + msgpackr), and
 * the baseline bulk sink (raw node:net, no msgpackr); plus the reference
 * libraries (bench/reference.ts).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { BENCH_SERVICE, benchHandlers, bodyOf, CLUSTER, FrameParser, FrameWriter, idOf, Kind, kindOf, OneWayCounter, SERVER_NODE } from './common.js';
import { loadLib } from './load.js';
import { startReferenceServers } from './reference.js';

const secret = process.env.BENCH_SECRET;
if (!secret || typeof process.send !== 'function') {
  console.error('bench/server.ts is started by bench/run.ts');
  process.exit(2);
}

// One-way counting, shared by ICS and the baseline (they never run at once).
const counter = new OneWayCounter();

// ---- ICS (bundled like the published build: see load.ts)
const { createIcs, tcp } = await loadLib();
const ics = createIcs({
  transport: tcp({ host: '127.0.0.1', port: 0, secret, ...(process.env.BENCH_PLAIN === '1' ? { encrypt: false } : {}) }),
  clusterName: CLUSTER,
  nodeNum: SERVER_NODE,
});
await ics.start();
ics.registerService({ ...BENCH_SERVICE, name: 'bench', handlers: benchHandlers(counter) });

// ---- baseline RPC: decode every body, re-encode every reply (as ICS does)
const sockets = new Set<Socket>();
const rpc = createServer({ noDelay: true }, (socket) => {
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
  socket.on('error', () => {});
  const w = new FrameWriter(socket);
  const parser = new FrameParser((f) => {
    const kind = kindOf(f);
    const id = idOf(f);
    const body = bodyOf(f);
    switch (kind) {
      case Kind.Call:
        w.sendPacked(Kind.Reply, id, body);
        return;
      case Kind.OneWay:
        counter.counted();
        return;
      case Kind.Reset:
        w.sendPacked(Kind.Reply, id, counter.reset());
        return;
      case Kind.WaitCount: {
        const r = counter.waitCount(body as number);
        if (typeof r === 'number') w.sendPacked(Kind.Reply, id, r);
        else void r.then((c) => w.sendPacked(Kind.Reply, id, c));
        return;
      }
      default:
        socket.destroy(new Error(`unknown kind ${kind}`));
    }
  });
  socket.on('data', (chunk: Buffer) => parser.push(chunk));
});

// ---- baseline bulk: raw length + bytes; an empty frame acks each one
const EMPTY = new Uint8Array(0);
const bulk = createServer({ noDelay: true }, (socket) => {
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
  socket.on('error', () => {});
  const w = new FrameWriter(socket);
  const parser = new FrameParser(() => {
    w.sendRaw(EMPTY);
  });
  socket.on('data', (chunk: Buffer) => parser.push(chunk));
});

const listen = (s: Server): Promise<number> =>
  new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port));
  });
const rpcPort = await listen(rpc);
const bulkPort = await listen(bulk);

// ---- reference libraries (Moleculer, gRPC): bench/reference.ts (not when profiling or --no-references)
const references = process.env.BENCH_REFERENCES === '0' ? undefined : await startReferenceServers(counter);

// ---- profiling on request (the client profiles itself the same way)
let session: Session | undefined;
const post = <T>(method: string, params?: object): Promise<T> =>
  new Promise((resolve, reject) => session!.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))));

async function profileStart(): Promise<void> {
  session = new Session();
  session.connect();
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 200 });
  await post('Profiler.start');
}
async function profileStop(file: string): Promise<void> {
  const { profile } = await post<{ profile: unknown }>('Profiler.stop');
  session!.disconnect();
  session = undefined;
  writeFileSync(file, JSON.stringify(profile));
}

async function exit(): Promise<void> {
  for (const s of sockets) s.destroy();
  rpc.close();
  bulk.close();
  await Promise.race([Promise.all([ics.close(), references?.close()]), new Promise((r) => setTimeout(r, 2000))]);
  process.exit(0);
}

process.on('message', (m: { cmd: string; seq: number; file?: string }) => {
  const reply = (ok: boolean, error?: string, data?: unknown): void => {
    process.send!({ seq: m.seq, ok, error, data });
  };
  const run = async (): Promise<void> => {
    if (m.cmd === 'profile-start') await profileStart();
    else if (m.cmd === 'profile-stop') await profileStop(m.file!);
    else if (m.cmd === 'cpu') {
      const c = process.cpuUsage();
      reply(true, undefined, c.user + c.system);
      return;
    } else if (m.cmd === 'stats') {
      reply(true, undefined, ics.stats());
      return;
    } else if (m.cmd === 'exit') {
      reply(true);
      await exit();
      return;
    }
    reply(true);
  };
  run().catch((e: Error) => reply(false, e.message));
});
// The parent is gone (even by SIGKILL): do not linger.
process.on('disconnect', () => process.exit(0));

process.send({ ready: true, ics: ics.address, rpcPort, bulkPort, references: references?.ports });
