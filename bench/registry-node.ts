/**
 * One node of the registry benchmark (bench/registry.ts): a ClusterNode
 * over transport-tcp on 127.0.0.1 with the map `bench`, and an `echo` ICS
 * service for the baseline. Driven over IPC by its parent; reports its
 * state, and when it applies a `conv/` key (stamped with
 * performance.timeOrigin + performance.now(), one clock for every process).
 */
import { performance } from 'node:perf_hooks';
import { ClusterNode, silentLogger } from '../packages/core/src/index.js';
import { createRegistry } from '../packages/registry/src/index.js';
import { tcp } from '../packages/transport-tcp/src/index.js';

const nodeNum = Number(process.env.REG_NODE);
const ports = JSON.parse(process.env.REG_PORTS!) as number[];
const secret = process.env.REG_SECRET!;
const hr = (): number => performance.timeOrigin + performance.now();
const send = (m: unknown): void => void process.send?.(m);
const ECHO = { channel: 'default', subservice: 41 };

const node = new ClusterNode({
  nodeNum,
  clusterName: 'bench-registry',
  transport: tcp({ host: '127.0.0.1', port: ports[nodeNum - 1]!, secret }),
  candidates: [1, 2, 3].filter((n) => n <= ports.length),
  seeds: ports.map((p, i) => ({ p, n: i + 1 })).filter((x) => x.n !== nodeNum).map((x) => `127.0.0.1:${x.p}`),
  preset: 'lan',
  logger: silentLogger,
});
const reg = createRegistry(node, { name: 'bench', subservice: 40 });
// A key service that does nothing: what core's key-service call costs without the registry.
node.registerKeyService({ name: 'noop', subservice: 42, handlers: { noop: (x) => x } });
reg.on('change', (e) => {
  if (e.key.startsWith('conv/') && e.type === 'put') send({ t: 'applied', node: nodeNum, key: e.key, at: hr() });
});

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

/** `count` sequential operations: p50 and p99 in µs. */
async function latency(count: number, op: (i: number) => Promise<unknown>): Promise<{ p50: number; p99: number }> {
  const us: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await op(i);
    us.push((performance.now() - t) * 1000);
  }
  return { p50: quantile(us, 0.5), p99: quantile(us, 0.99) };
}

/** Operations per second with `inflight` outstanding, for `seconds`. */
async function throughput(seconds: number, inflight: number, op: (i: number) => Promise<unknown>): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  let i = 0;
  const t0 = performance.now();
  const lane = async (): Promise<void> => {
    while (performance.now() < end) {
      await op(i++);
      done++;
    }
  };
  await Promise.all(Array.from({ length: inflight }, lane));
  return done / ((performance.now() - t0) / 1000);
}

process.on('message', (m: { cmd: string; host?: number; count?: number; seconds?: number; inflight?: number; key?: string }) => {
  const echo = (i: number): Promise<unknown> => node.communication.call(m.host!, ECHO, 'echo', i, { timeoutMs: 15_000 });
  const noop = (i: number): Promise<unknown> => node.callKeyService('noop', 'noop', i, { timeoutMs: 15_000 });
  const put = (i: number): Promise<unknown> => reg.put(`k/${i % 256}`, i, { timeoutMs: 15_000 });
  const reply = (p: Promise<unknown>): void => {
    p.then(
      (value) => send({ t: 'result', value }),
      (err: unknown) => send({ t: 'result', error: String(err) }),
    );
  };
  if (m.cmd === 'latency') reply(latency(m.count!, put));
  else if (m.cmd === 'baseline-latency') reply(latency(m.count!, echo));
  else if (m.cmd === 'noop-latency') reply(latency(m.count!, noop));
  else if (m.cmd === 'noop-throughput') reply(throughput(m.seconds!, m.inflight!, noop));
  else if (m.cmd === 'throughput') reply(throughput(m.seconds!, m.inflight!, put));
  else if (m.cmd === 'baseline-throughput') reply(throughput(m.seconds!, m.inflight!, echo));
  else if (m.cmd === 'conv') {
    const start = hr();
    reply(reg.put(m.key!, 1, { timeoutMs: 15_000 }).then(() => ({ start, acked: hr() })));
  } else if (m.cmd === 'exit') {
    void reg.close().then(() => node.close()).finally(() => process.exit(0));
  }
});

await node.start();
await reg.start({ timeoutMs: 120_000 });
node.communication.registerService({ ...ECHO, name: 'echo', handlers: { echo: (x) => x } });
setInterval(() => {
  const up = node.membership().members.filter((x) => x.state === 'Up').length;
  send({ t: 'status', node: nodeNum, up, host: node.keyService('registry.bench')?.host ?? null, synced: reg.synced });
}, 200).unref();
send({ t: 'started', node: nodeNum });
