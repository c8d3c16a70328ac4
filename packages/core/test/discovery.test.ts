/**
 * dnsDiscovery against a tiny DNS server this test runs on 127.0.0.1 (UDP,
 * a port the kernel picks). The server answers A, AAAA and SRV questions
 * from a table the test edits, NXDOMAIN for names it does not hold, and can
 * be told to fail (SERVFAIL) or to go silent (the client times out).
 *
 * Refresh timers run on a VirtualClock; the DNS traffic itself is real, so
 * the test waits (in real time, generously) for lookups to land.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { promises as dnsPromises } from 'node:dns';
import { isIP } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ClusterNode, dnsDiscovery, InvalidOptionError, type Logger, silentLogger, VirtualClock } from '@clusterinfra/core';
import { tcp } from '@clusterinfra/transport-tcp';
import { freePorts } from './process/cluster.js';

// ------------------------------------------------------------ the test's DNS server

interface SrvRecord {
  target: string;
  port: number;
  priority?: number;
  weight?: number;
}

interface Records {
  A?: string[];
  AAAA?: string[];
  SRV?: SrvRecord[];
}

const TYPE = { A: 1, AAAA: 28, SRV: 33 } as const;
const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3 } as const;

/** A question as the server parsed it, for assertions on what was asked. */
interface Question {
  name: string;
  type: number;
}

class TestDnsServer {
  /** Lower-case name → its records. Edit freely: every query reads it afresh. */
  readonly zone = new Map<string, Records>();
  readonly questions: Question[] = [];
  /** `servfail`: answer every query with SERVFAIL; `silent`: never answer. */
  mode: 'answer' | 'servfail' | 'silent' = 'answer';

  private constructor(private readonly socket: Socket) {
    socket.on('message', (msg, from) => this.onQuery(msg, from));
  }

  static async start(): Promise<TestDnsServer> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, '127.0.0.1', () => resolve());
    });
    return new TestDnsServer(socket);
  }

  get address(): string {
    return `127.0.0.1:${this.socket.address().port}`;
  }

  /** Questions asked for `name` so far. */
  asked(name: string): number {
    return this.questions.filter((q) => q.name === name).length;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }

  private onQuery(msg: Buffer, from: RemoteInfo): void {
    const q = parseQuery(msg);
    if (!q) return; // not a query we understand: drop it, as a real server might
    this.questions.push({ name: q.name, type: q.type });
    if (this.mode === 'silent') return;
    const reply = this.mode === 'servfail' ? buildReply(msg, q, RCODE.SERVFAIL, []) : this.answer(msg, q);
    this.socket.send(reply, from.port, from.address);
  }

  private answer(msg: Buffer, q: ParsedQuery): Buffer {
    const records = this.zone.get(q.name);
    if (!records) return buildReply(msg, q, RCODE.NXDOMAIN, []);
    const rdata: Buffer[] = [];
    if (q.type === TYPE.A) for (const ip of records.A ?? []) rdata.push(Buffer.from(ip.split('.').map(Number)));
    if (q.type === TYPE.AAAA) for (const ip of records.AAAA ?? []) rdata.push(ipv6Bytes(ip));
    if (q.type === TYPE.SRV) {
      for (const r of records.SRV ?? []) {
        const fixed = Buffer.alloc(6);
        fixed.writeUInt16BE(r.priority ?? 10, 0);
        fixed.writeUInt16BE(r.weight ?? 10, 2);
        fixed.writeUInt16BE(r.port, 4);
        rdata.push(Buffer.concat([fixed, encodeName(r.target)]));
      }
    }
    // A name that exists without records of this type: NOERROR and no answers (NODATA).
    return buildReply(msg, q, RCODE.NOERROR, rdata);
  }
}

interface ParsedQuery extends Question {
  /** Offset just past the question (header + QNAME + QTYPE + QCLASS). */
  end: number;
}

/** The first question of a DNS query, or undefined when `msg` is not one. */
function parseQuery(msg: Buffer): ParsedQuery | undefined {
  if (msg.length < 12) return undefined;
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000 || msg.readUInt16BE(4) < 1) return undefined; // a response, or no question
  const labels: string[] = [];
  let at = 12;
  for (;;) {
    if (at >= msg.length) return undefined;
    const len = msg[at]!;
    at++;
    if (len === 0) break;
    if (len > 63 || at + len > msg.length) return undefined; // queries carry no compression pointers
    labels.push(msg.toString('latin1', at, at + len));
    at += len;
  }
  if (at + 4 > msg.length) return undefined;
  const type = msg.readUInt16BE(at);
  return { name: labels.join('.').toLowerCase(), type, end: at + 4 };
}

/** A response: the query's id and question echoed, then one answer per rdata (owner = the question's name). */
function buildReply(query: Buffer, q: ParsedQuery, rcode: number, rdata: Buffer[]): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  const rd = query.readUInt16BE(2) & 0x0100;
  header.writeUInt16BE(0x8000 | 0x0400 | rd | 0x0080 | rcode, 2); // QR, AA, RD as asked, RA
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(rdata.length, 6);
  const answers = rdata.map((data) => {
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name at offset 12
    rr.writeUInt16BE(q.type, 2);
    rr.writeUInt16BE(1, 4); // class IN
    rr.writeUInt32BE(5, 6); // TTL
    rr.writeUInt16BE(data.length, 10);
    return Buffer.concat([rr, data]);
  });
  return Buffer.concat([header, query.subarray(12, q.end), ...answers]);
}

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter((l) => l.length > 0);
  return Buffer.concat([...parts.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
}

/** The 16 bytes of an IPv6 literal (`::` expanded). */
function ipv6Bytes(ip: string): Buffer {
  if (isIP(ip) !== 6) throw new Error(`not IPv6: ${ip}`);
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

// ------------------------------------------------------------ helpers

let server: TestDnsServer | undefined;
const closers: (() => unknown)[] = [];

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await server?.close();
  server = undefined;
});

async function startServer(): Promise<TestDnsServer> {
  server = await TestDnsServer.start();
  return server;
}

/** A logger that keeps its warnings, to check that a failed lookup is reported. */
function recordingLogger(): { logger: Logger; warnings: string[] } {
  const warnings: string[] = [];
  const logger: Logger = {
    ...silentLogger,
    warn: (first: unknown, msg?: unknown) => void warnings.push(typeof first === 'string' ? first : String(msg)),
    child: () => logger,
  };
  return { logger, warnings };
}

/** Real-time wait for DNS traffic to land (the machine is loaded: generous). */
const waitFor = <T>(fn: () => T | Promise<T>): Promise<T> => vi.waitFor(fn, { timeout: 10_000, interval: 20 });

/**
 * Ask `d` until its answer is `expected` (sorted), moving the virtual clock a
 * refresh period between tries: a lookup lost to a loaded machine is simply
 * retried at the next period, as a joining node would see it.
 */
async function answerBecomes(d: { addresses(): Promise<string[]> | string[] }, clock: VirtualClock, periodMs: number, expected: string[]): Promise<void> {
  const want = [...expected].sort();
  let last: string[] = [];
  for (let i = 0; i < 200; i++) {
    last = [...(await d.addresses())].sort();
    if (JSON.stringify(last) === JSON.stringify(want)) return;
    await new Promise((r) => setTimeout(r, 50));
    await clock.advance(periodMs);
  }
  expect(last).toEqual(want);
}

// ------------------------------------------------------------ tests

describe('dnsDiscovery: options', () => {
  const bad = (options: unknown, path: string): void => {
    let caught: unknown;
    try {
      dnsDiscovery(options as Parameters<typeof dnsDiscovery>[0]);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidOptionError);
    expect(caught).toMatchObject({ code: 'CONFIG_ERR_INVALID_OPTION', path });
  };

  it('rejects bad options with InvalidOptionError naming the option', () => {
    bad({ name: 'nodes.test' }, 'port'); // A needs a port
    bad({ name: 'nodes.test', type: 'AAAA' }, 'port');
    bad({ name: '_clms._tcp.nodes.test', type: 'SRV', port: 7000 }, 'port'); // SRV carries ports
    bad({ name: 'nodes.test', port: 0 }, 'port');
    bad({ name: 'nodes.test', port: 70_000 }, 'port');
    bad({ name: 'no spaces.test', port: 7000 }, 'name');
    bad({ name: '', port: 7000 }, 'name');
    bad({ name: 'nodes.test', type: 'MX', port: 7000 }, 'type');
    bad({ name: 'nodes.test', port: 7000, refreshMs: 0 }, 'refreshMs');
    bad({ name: 'nodes.test', port: 7000, timeoutMs: -1 }, 'timeoutMs');
    bad({ name: 'nodes.test', port: 7000, servers: [] }, 'servers');
    bad({ name: 'nodes.test', port: 7000, servers: ['not a server'] }, 'servers');
    bad({ name: 'nodes.test', port: 7000, clock: {} }, 'clock');
    bad({ name: 'nodes.test', port: 7000, colour: 'blue' }, '(root)');
  });

  it('accepts an SRV name with underscores and a trailing dot, and leaves the process-wide resolver alone', () => {
    const before = dnsPromises.getServers();
    const d = dnsDiscovery({ name: '_clms._tcp.nodes.test.', type: 'SRV', servers: ['127.0.0.1:5399'] });
    d.close();
    expect(dnsPromises.getServers()).toEqual(before);
  });
});

describe('dnsDiscovery: lookups', () => {
  it('A records become host:port addresses with the configured port', async () => {
    const s = await startServer();
    s.zone.set('nodes.cluster.test', { A: ['10.0.0.1', '10.0.0.2', '10.0.0.3'] });
    const d = dnsDiscovery({ name: 'nodes.cluster.test', port: 7000, servers: [s.address], clock: new VirtualClock(), logger: silentLogger });
    closers.push(() => d.close());
    expect((await d.addresses()).sort()).toEqual(['10.0.0.1:7000', '10.0.0.2:7000', '10.0.0.3:7000']);
    expect(s.questions).toContainEqual({ name: 'nodes.cluster.test', type: TYPE.A });
  });

  it('AAAA records become [ipv6]:port addresses', async () => {
    const s = await startServer();
    s.zone.set('nodes6.cluster.test', { AAAA: ['fd00::1', 'fd00:0:0:1::2'] });
    const d = dnsDiscovery({ name: 'nodes6.cluster.test', type: 'AAAA', port: 7001, servers: [s.address], clock: new VirtualClock() });
    closers.push(() => d.close());
    expect((await d.addresses()).sort()).toEqual(['[fd00:0:0:1::2]:7001', '[fd00::1]:7001']);
  });

  it('SRV records: targets resolved to their A (or else AAAA) records, each with its own port, preferred priority first', async () => {
    const s = await startServer();
    s.zone.set('_clms._tcp.nodes.cluster.test', {
      SRV: [
        { target: 'n2.cluster.test', port: 7002, priority: 20 },
        { target: 'n1.cluster.test', port: 7001, priority: 10 },
        { target: 'n3.cluster.test', port: 7003, priority: 30 },
        { target: 'gone.cluster.test', port: 7004, priority: 30 }, // NXDOMAIN target: skipped
      ],
    });
    s.zone.set('n1.cluster.test', { A: ['10.1.0.1'] });
    s.zone.set('n2.cluster.test', { A: ['10.1.0.2', '10.1.0.22'] });
    s.zone.set('n3.cluster.test', { AAAA: ['fd01::3'] });
    const d = dnsDiscovery({ name: '_clms._tcp.nodes.cluster.test', type: 'SRV', servers: [s.address], clock: new VirtualClock() });
    closers.push(() => d.close());
    const found = await d.addresses();
    expect(found.slice(0, 1)).toEqual(['10.1.0.1:7001']);
    expect(found.slice(1, 3).sort()).toEqual(['10.1.0.2:7002', '10.1.0.22:7002'].sort());
    expect(found.slice(3)).toEqual(['[fd01::3]:7003']);
    // The targets were asked for separately (the SRV answer carries no addresses).
    expect(s.asked('n1.cluster.test')).toBeGreaterThan(0);
    expect(s.asked('n3.cluster.test')).toBeGreaterThanOrEqual(2); // A (no data), then AAAA
  });

  it('NXDOMAIN, and a name without records of the type asked, give [] (no throw)', async () => {
    const s = await startServer();
    s.zone.set('mail.cluster.test', { AAAA: ['fd00::9'] });
    const clock = new VirtualClock();
    const missing = dnsDiscovery({ name: 'missing.cluster.test', port: 7000, servers: [s.address], clock });
    const noA = dnsDiscovery({ name: 'mail.cluster.test', port: 7000, servers: [s.address], clock });
    const noSrv = dnsDiscovery({ name: 'missing.cluster.test', type: 'SRV', servers: [s.address], clock });
    closers.push(() => missing.close(), () => noA.close(), () => noSrv.close());
    expect(await missing.addresses()).toEqual([]);
    expect(await noA.addresses()).toEqual([]);
    expect(await noSrv.addresses()).toEqual([]);
    expect(s.asked('missing.cluster.test')).toBeGreaterThanOrEqual(2);
  });

  it('bounds the answer by maxAddresses', async () => {
    const s = await startServer();
    s.zone.set('many.cluster.test', { A: Array.from({ length: 20 }, (_, i) => `10.2.0.${i + 1}`) });
    const d = dnsDiscovery({ name: 'many.cluster.test', port: 7000, maxAddresses: 5, servers: [s.address], clock: new VirtualClock() });
    closers.push(() => d.close());
    const found = await d.addresses();
    expect(found).toHaveLength(5);
    for (const a of found) expect(a).toMatch(/^10\.2\.0\.\d+:7000$/);
  });
});

describe('dnsDiscovery: cache and refresh', () => {
  it('answers from the cache between refreshes, and picks up a changed record set after refreshMs', async () => {
    const s = await startServer();
    const clock = new VirtualClock();
    s.zone.set('nodes.cluster.test', { A: ['10.0.0.1'] });
    const d = dnsDiscovery({ name: 'nodes.cluster.test', port: 7000, refreshMs: 5000, servers: [s.address], clock });
    closers.push(() => d.close());
    expect(await d.addresses()).toEqual(['10.0.0.1:7000']);
    const first = s.asked('nodes.cluster.test');

    s.zone.set('nodes.cluster.test', { A: ['10.0.0.1', '10.0.0.2'] });
    await clock.advance(4999);
    expect(await d.addresses()).toEqual(['10.0.0.1:7000']); // cached: no new query before refreshMs
    expect(s.asked('nodes.cluster.test')).toBe(first);

    await clock.advance(1); // the refresh timer fires
    await answerBecomes(d, clock, 5000, ['10.0.0.1:7000', '10.0.0.2:7000']);
    expect(s.asked('nodes.cluster.test')).toBeGreaterThan(first);
  });

  it('keeps the last good answer while the server fails (SERVFAIL, then silence), logs it, and recovers', async () => {
    const s = await startServer();
    const clock = new VirtualClock();
    const { logger, warnings } = recordingLogger();
    s.zone.set('nodes.cluster.test', { A: ['10.0.0.1', '10.0.0.2'] });
    const d = dnsDiscovery({ name: 'nodes.cluster.test', port: 7000, refreshMs: 1000, timeoutMs: 1000, tries: 1, servers: [s.address], clock, logger });
    closers.push(() => d.close());
    const good = (await d.addresses()).sort();
    expect(good).toEqual(['10.0.0.1:7000', '10.0.0.2:7000']);

    // The timer refreshes only while someone keeps asking (as a joining node does).
    const tick = async (): Promise<void> => {
      await d.addresses();
      await clock.advance(1000);
    };
    s.mode = 'servfail';
    s.zone.set('nodes.cluster.test', { A: ['10.9.9.9'] });
    let asked = s.asked('nodes.cluster.test');
    await tick();
    await waitFor(() => expect(warnings.length).toBeGreaterThan(0));
    expect(s.asked('nodes.cluster.test')).toBeGreaterThan(asked);
    expect((await d.addresses()).sort()).toEqual(good);

    s.mode = 'silent'; // the client's query times out
    const warned = warnings.length;
    asked = s.asked('nodes.cluster.test');
    await tick();
    await waitFor(() => expect(warnings.length).toBeGreaterThan(warned));
    expect(s.asked('nodes.cluster.test')).toBeGreaterThan(asked);
    expect((await d.addresses()).sort()).toEqual(good);

    s.mode = 'answer';
    await tick();
    await answerBecomes(d, clock, 1000, ['10.9.9.9:7000']);
  });

  it('a name that disappears (NXDOMAIN) empties the answer: an answer, not a failure', async () => {
    const s = await startServer();
    const clock = new VirtualClock();
    const { logger, warnings } = recordingLogger();
    s.zone.set('nodes.cluster.test', { A: ['10.0.0.1'] });
    const d = dnsDiscovery({ name: 'nodes.cluster.test', port: 7000, refreshMs: 1000, servers: [s.address], clock, logger });
    closers.push(() => d.close());
    expect(await d.addresses()).toEqual(['10.0.0.1:7000']);
    s.zone.delete('nodes.cluster.test');
    await d.addresses(); // keep the timer polling
    await clock.advance(1000);
    await answerBecomes(d, clock, 1000, []);
    expect(warnings).toEqual([]);
  });

  it('a first lookup that fails gives [] without throwing, and a later one fills the cache', async () => {
    const s = await startServer();
    const clock = new VirtualClock();
    s.mode = 'servfail';
    s.zone.set('nodes.cluster.test', { A: ['10.0.0.7'] });
    const d = dnsDiscovery({ name: 'nodes.cluster.test', port: 7000, refreshMs: 1000, servers: [s.address], clock, logger: silentLogger });
    closers.push(() => d.close());
    expect(await d.addresses()).toEqual([]);
    s.mode = 'answer';
    await clock.advance(1000);
    await answerBecomes(d, clock, 1000, ['10.0.0.7:7000']);
  });

  it('stops polling when nobody asked for a whole period, and looks up afresh on the next call', async () => {
    const s = await startServer();
    const clock = new VirtualClock();
    s.zone.set('nodes.cluster.test', { A: ['10.0.0.1'] });
    const d = dnsDiscovery({ name: 'nodes.cluster.test', port: 7000, refreshMs: 1000, servers: [s.address], clock });
    closers.push(() => d.close());
    await d.addresses();
    const first = s.asked('nodes.cluster.test');
    await clock.advance(1000); // nobody asked since the lookup: the timer stops instead of polling
    await clock.advance(10_000);
    expect(clock.pending).toBe(0);
    expect(s.asked('nodes.cluster.test')).toBe(first);

    s.zone.set('nodes.cluster.test', { A: ['10.0.0.5'] });
    expect(await d.addresses()).toEqual(['10.0.0.5:7000']); // a stale cache is not served after idling
    expect(s.asked('nodes.cluster.test')).toBeGreaterThan(first);
  });

  it('close() stops the refresh timer; later calls give [] and send nothing', async () => {
    const s = await startServer();
    const clock = new VirtualClock();
    s.zone.set('nodes.cluster.test', { A: ['10.0.0.1'] });
    const d = dnsDiscovery({ name: 'nodes.cluster.test', port: 7000, refreshMs: 1000, servers: [s.address], clock });
    await d.addresses();
    expect(clock.pending).toBe(1); // the refresh timer
    d.close();
    expect(clock.pending).toBe(0);
    const asked = s.questions.length;
    await clock.advance(10_000);
    expect(await d.addresses()).toEqual([]);
    // Give a stray query time to arrive (real time), then check none did.
    await new Promise((r) => setTimeout(r, 200));
    expect(s.questions.length).toBe(asked);
    d.close(); // idempotent
  });
});

describe('dnsDiscovery: a cluster found through DNS', () => {
  it(
    'three ClusterNodes over TCP with no seeds form one cluster from SRV records',
    async () => {
      const s = await startServer();
      const ports = await freePorts(3);
      const name = 'nodes.cluster.test';
      s.zone.set(name, { SRV: ports.map((port, i) => ({ target: `n${i + 1}.cluster.test`, port })) });
      ports.forEach((_, i) => s.zone.set(`n${i + 1}.cluster.test`, { A: ['127.0.0.1'] }));

      const nodes = ports.map(
        (port, i) =>
          new ClusterNode({
            nodeNum: i + 1,
            clusterName: 'dns',
            transport: tcp({ host: '127.0.0.1', port, secret: 'dns-discovery-test' }),
            candidates: [1, 2, 3],
            seeds: [],
            discovery: dnsDiscovery({ name, type: 'SRV', refreshMs: 500, timeoutMs: 1000, servers: [s.address] }),
            preset: 'local',
          }),
      );
      closers.push(() => Promise.all(nodes.map((n) => n.close())));
      await Promise.all(nodes.map((n) => n.start()));

      await vi.waitFor(
        () => {
          for (const n of nodes) {
            expect(n.membership().members.filter((m) => m.state === 'Up').map((m) => m.node).sort()).toEqual([1, 2, 3]);
            expect(n.master).toBe(nodes[0]!.master);
            expect(n.lastTransition).toBe(nodes[0]!.lastTransition);
          }
        },
        { timeout: 60_000, interval: 100 },
      );
      expect([1, 2, 3]).toContain(nodes[0]!.master);
      // The nodes found each other through the server, not through a static list.
      expect(s.asked(name)).toBeGreaterThan(0);
    },
    90_000,
  );
});
