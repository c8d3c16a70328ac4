/** Multipath behaviour below ICS, on a virtual clock: duplicates, windows, options, hostile peers, health. */
import { describe, expect, it } from 'vitest';
import { HandshakeRejectedError, InvalidAddressError, InvalidOptionError, type Link, type LinkCloseInfo, MalformedFrameError, seededRandom, silentLogger, VirtualClock } from '@clusterinfra/core';
import { createMemoryNetwork, memory } from '@clusterinfra/transport-mem';
import { formatMultipathAddress, multipath, type MultipathLink, type MultipathTransport, parseMultipathAddress } from '../src/index.js';
import { decode, encodeAck, encodeHello, Kind } from '../src/wire.js';
import { connectOn, factoryFor, linkPair, numbered, pathAddress, TEST_TIMERS, upTo, watch } from './helpers.js';

describe('options and addresses', () => {
  it('refuses bad options with InvalidOptionError naming the option', () => {
    const network = createMemoryNetwork();
    const path = memory({ network });
    const cases: [unknown, unknown, string][] = [
      [[], {}, '(root)'],
      [[path, 'not a factory'], {}, '1'],
      [[path], { policy: 'round-robin' }, 'policy'],
      [[path], { heartbeatIntervalMs: 500, pathTimeoutMs: 400 }, 'pathTimeoutMs'],
      [[path], { redialMinMs: 500, redialMaxMs: 100 }, 'redialMaxMs'],
      [[path], { receiveWindow: 10 }, 'receiveWindow'],
      [[path], { bogus: 1 }, '(root)'],
    ];
    for (const [paths, options, where] of cases) {
      let err: unknown;
      try {
        multipath(paths as never, options as never);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(options)).toBeInstanceOf(InvalidOptionError);
      expect((err as InvalidOptionError).message).toContain(where);
    }
  });

  it('connect refuses an address that is not a multipath address', async () => {
    const clock = new VirtualClock();
    const t = factoryFor(createMemoryNetwork({ clock }), 1).create({ identity: { clusterName: 'x', nodeNum: 1, incarnation: 1 }, clock, random: seededRandom(1), logger: silentLogger });
    await expect(t.connect('n2-p0')).rejects.toBeInstanceOf(InvalidAddressError);
    t.destroy();
  });
});

describe('misuse', () => {
  it('listen and connect refuse options they cannot take, at once and before any path is asked; formatMultipathAddress refuses what would not parse', async () => {
    const clock = new VirtualClock();
    const network = createMemoryNetwork({ clock });
    const make = (n: number): MultipathTransport =>
      factoryFor(network, n).create({ identity: { clusterName: 'x', nodeNum: n, incarnation: 1 }, clock, random: seededRandom(n), logger: silentLogger });
    const server = make(2);
    const client = make(1);
    const bad = (x: unknown) => x as never;
    /** What `p` rejects with: its class and option path. It must settle without the clock moving. */
    const refusal = async (p: () => Promise<unknown>): Promise<unknown> => {
      let out: unknown = 'pending';
      try {
        p().then(
          () => (out = 'resolved'),
          (e: InvalidOptionError) => (out = { name: e.name, path: e.path }),
        );
      } catch (e) {
        return { thrown: (e as Error).name };
      }
      for (let i = 0; i < 5 && out === 'pending'; i++) await new Promise((r) => setImmediate(r));
      return out;
    };
    const option = (path: string) => ({ name: 'InvalidOptionError', path });
    // listen ignored a signal that was not one, and threw a TypeError on null.
    expect(await refusal(() => server.listen(bad(null)))).toEqual(option('(root)'));
    expect(await refusal(() => server.listen({ signal: bad({}) }))).toEqual(option('signal'));
    const listener = await server.listen();
    // connect threw a TypeError on null (not even a rejection), and a signal of 5 failed as a TypeError inside a path.
    expect(await refusal(() => client.connect(listener.address, bad(null)))).toEqual(option('(root)'));
    expect(await refusal(() => client.connect(listener.address, { signal: bad(5) }))).toEqual(option('signal'));
    expect(await refusal(() => client.connect(listener.address, { signal: bad({ aborted: false }) }))).toEqual(option('signal'));
    expect(await refusal(() => client.connect(listener.address, { timeoutMs: -1 }))).toEqual(option('timeoutMs'));
    // No path was dialled.
    expect(client.health()).toEqual([]);
    expect(server.health()).toEqual([]);
    // An address that would not parse is refused when it is made (null and [1] threw TypeErrors, [] and [''] gave 'multipath:').
    for (const paths of [null, 'n1-p0', [], [''], ['n1-p0', 5], Array.from({ length: 9 }, (_, i) => `p${i}`)]) {
      expect(() => formatMultipathAddress(bad(paths)), JSON.stringify(paths)).toThrow(InvalidAddressError);
    }
    expect(parseMultipathAddress(formatMultipathAddress(['a,b', 'c%d']))).toEqual(['a,b', 'c%d']);
    client.destroy();
    server.destroy();
  });
});

describe('delivery', () => {
  it('a path that only fails one way: frames it delivered are sent again on the other path, and the receiver drops the duplicates', async () => {
    const clock = new VirtualClock();
    const { network, outbound, inbound } = await linkPair(clock);
    watch(outbound);
    // Node 2 can no longer answer on path 0: node 1 hears nothing there.
    network.partition(pathAddress(2, 0), pathAddress(1, 0), { oneWay: true });
    for (let i = 0; i < 100; i++) outbound.send(numbered(i));
    // Node 2 receives them on path 0 but does not consume them yet (paused): nothing is acknowledged,
    // so node 1, once it declared path 0 failed, sends them all again on path 1.
    expect(await clock.advanceUntil(() => (outbound as MultipathLink).health().retransmitted === 100, 5000)).toBe(true);
    await clock.advance(100);
    expect((inbound as MultipathLink).health().duplicatesDropped).toBe(100);
    const inW = watch(inbound);
    expect(await clock.advanceUntil(() => outbound.bufferedBytes === 0, 5000)).toBe(true);
    expect(inW.frames).toEqual(upTo(100));
  });

  it('a path that loses frames while its connection stays up: the lost ones are sent again, nothing stalls', async () => {
    const clock = new VirtualClock();
    const { network, outbound, inbound } = await linkPair(clock);
    // The active path drops a tenth of what it carries, both ways, and never goes silent long enough to fail.
    network.setLinkFaults(pathAddress(1, 0), pathAddress(2, 0), { dropRate: 0.1 }, { bothWays: true });
    const inW = watch(inbound);
    const outW = watch(outbound);
    for (let i = 0; i < 300; i++) {
      outbound.send(numbered(i));
      inbound.send(numbered(i));
      if (i % 10 === 0) await clock.advance(5);
    }
    expect(await clock.advanceUntil(() => inW.frames.length === 300 && outW.frames.length === 300, 30_000)).toBe(true);
    expect(inW.frames).toEqual(upTo(300));
    expect(outW.frames).toEqual(upTo(300));
    expect((outbound as MultipathLink).health().retransmitted).toBeGreaterThan(0);
    expect((outbound as MultipathLink).health().paths[0]!.failures).toBe(0);
    expect(inW.closed).toBeUndefined();
  });

  it('both-active spreads frames over both paths and delivers them in order', async () => {
    const clock = new VirtualClock();
    const { network, outbound, inbound } = await linkPair(clock, { policy: 'both-active' });
    // Path 1 is slower: frames overtake each other between the paths.
    network.setLinkFaults(pathAddress(1, 1), pathAddress(2, 1), { latencyMs: 5 });
    const inW = watch(inbound);
    watch(outbound);
    for (let i = 0; i < 200; i++) outbound.send(numbered(i));
    expect(await clock.advanceUntil(() => inW.frames.length === 200, 5000)).toBe(true);
    expect(inW.frames).toEqual(upTo(200));
    const paths = (outbound as MultipathLink).health().paths;
    expect(paths[0]!.framesSent).toBeGreaterThan(50);
    expect(paths[1]!.framesSent).toBeGreaterThan(50);
  });

  it('a paused receiver holds no more than its window; the rest waits at the sender until it reads', async () => {
    const clock = new VirtualClock();
    const window = 256 * 1024;
    const { outbound, inbound } = await linkPair(clock, { receiveWindow: window });
    watch(outbound);
    const size = 16 * 1024;
    for (let i = 0; i < 200; i++) outbound.send(numbered(i, size)); // ignores backpressure on purpose
    await clock.advance(1000);
    const held = (inbound as MultipathLink).health().receiveBuffered;
    expect(held).toBeGreaterThan(window / 2);
    expect(held).toBeLessThanOrEqual(window);
    // What the window did not let through waits at the sender, and counts as buffered there.
    expect(outbound.bufferedBytes).toBeGreaterThanOrEqual(200 * size - window);
    expect(outbound.needDrain).toBe(true);
    const inW = watch(inbound);
    expect(await clock.advanceUntil(() => inW.frames.length === 200 && !outbound.needDrain, 5000)).toBe(true);
    expect(inW.frames).toEqual(upTo(200));
  });
});

describe('paths that are down when the link opens', () => {
  it('the link opens on the path that works and brings the other up once it can', async () => {
    const clock = new VirtualClock();
    const network = createMemoryNetwork({ clock });
    // Path 1 fails (its connect times out) before path 0, which is slow, finishes its handshake.
    network.partition(pathAddress(1, 1), pathAddress(2, 1));
    network.setLinkFaults(pathAddress(1, 0), pathAddress(2, 0), { latencyMs: 300 }, { bothWays: true });
    const ctx = (n: number) => ({ identity: { clusterName: 'd', nodeNum: n, incarnation: n }, clock, random: seededRandom(n), logger: silentLogger });
    const server = factoryFor(network, 2, { pathTimeoutMs: 2000 }).create(ctx(2));
    const listener = await server.listen();
    listener.on('link', (l) => l.resume());
    const client = multipath(
      [memory({ network, address: pathAddress(1, 0), connectTimeoutMs: 5000 }), memory({ network, address: pathAddress(1, 1), connectTimeoutMs: 100 })],
      { ...TEST_TIMERS, pathTimeoutMs: 2000 },
    ).create(ctx(1));
    const link = (await connectOn(clock, client, listener.address)) as MultipathLink;
    await clock.advance(1000);
    expect(link.health().paths.map((p) => p.state)).toEqual(['up', expect.stringMatching(/down|connecting/)]);
    network.heal();
    expect(await clock.advanceUntil(() => link.health().paths[1]!.state === 'up', 5000)).toBe(true);
    client.destroy();
    server.destroy();
  });
});

describe('failure detection', () => {
  it('a process that stalled does not fail its paths for the silence it caused itself', async () => {
    const virtual = new VirtualClock();
    // The nodes read time through this clock; `offset` jumps as if the process had not run for a while.
    const stalling = { offset: 0, now: () => virtual.now() + stalling.offset, wallNow: () => virtual.wallNow() + stalling.offset, setTimeout: (fn: () => void, ms: number) => virtual.setTimeout(fn, ms) };
    const network = createMemoryNetwork({ clock: virtual });
    const ctx = (n: number) => ({ identity: { clusterName: 's', nodeNum: n, incarnation: n }, clock: stalling, random: seededRandom(n), logger: silentLogger });
    const server = factoryFor(network, 2).create(ctx(2));
    const listener = await server.listen();
    listener.on('link', (l) => l.resume());
    const client = factoryFor(network, 1).create(ctx(1));
    const link = (await connectOn(virtual, client, listener.address)) as MultipathLink;
    link.resume();
    const downs: string[] = [];
    for (const t of [client, server]) t.on('path', (e) => e.state === 'down' && downs.push(`${e.link}/${e.path}: ${e.reason}`));
    await virtual.advance(200);
    // The stall: nothing is read (the input waits, held), and the clock jumps a second ahead.
    for (const p of [0, 1]) network.pause(pathAddress(1, p));
    await virtual.advance(16);
    stalling.offset += 1000;
    await virtual.advance(16);
    for (const p of [0, 1]) network.resume(pathAddress(1, p));
    await virtual.advance(500);
    expect(downs).toEqual([]);
    expect(link.health().paths.map((p) => p.state)).toEqual(['up', 'up']);
    // Real silence is still noticed.
    network.partition(pathAddress(1, 0), pathAddress(2, 0));
    await virtual.advance(200);
    expect(downs.length).toBeGreaterThan(0);
    client.destroy();
    server.destroy();
  });
});

describe('hostile or broken peers', () => {
  async function server(clock: VirtualClock) {
    const network = createMemoryNetwork({ clock, seed: 3 });
    const t = factoryFor(network, 2).create({ identity: { clusterName: 'h', nodeNum: 2, incarnation: 20 }, clock, random: seededRandom(2), logger: silentLogger }) as MultipathTransport;
    const listener = await t.listen();
    const links: Link[] = [];
    const rejected: unknown[] = [];
    listener.on('link', (l) => links.push(l));
    listener.on('rejected', (r) => rejected.push(r.error));
    // A raw path connection to path 0, speaking the multipath frames by hand.
    const raw = memory({ network, address: 'raw' }).create({ identity: { clusterName: 'h', nodeNum: 9, incarnation: 90 }, clock, random: seededRandom(9), logger: silentLogger });
    const conn = await connectOn(clock, raw, pathAddress(2, 0));
    const got: ReturnType<typeof decode>[] = [];
    conn.on('frame', (f) => got.push(decode(f)));
    const closed: { closed: LinkCloseInfo | undefined } = { closed: undefined };
    conn.on('close', (info) => (closed.closed = info));
    conn.resume();
    return { t, links, rejected, conn, got, closed };
  }

  it('a path connection that does not begin with HELLO is refused, reported, and makes no link', async () => {
    const clock = new VirtualClock();
    const s = await server(clock);
    s.conn.send(encodeAck(Kind.Ack, 0, 0));
    await clock.advance(100);
    expect(s.got.map((m) => m.kind)).toEqual([Kind.Refuse]);
    expect(s.closed.closed?.reason).toBe('remote-closed');
    expect(s.rejected[0]).toBeInstanceOf(HandshakeRejectedError);
    expect((s.rejected[0] as HandshakeRejectedError).reason).toBe('malformed');
    expect(s.links).toEqual([]);
    s.t.destroy();
  });

  it('a HELLO that leaves no room for a frame is refused', async () => {
    const clock = new VirtualClock();
    const s = await server(clock);
    s.conn.send(encodeHello({ version: 1, open: true, path: 0, session: 7, maxFrameSize: 17, receiveWindow: 65536, ack: 0 }));
    await clock.advance(100);
    expect(s.got.map((m) => m.kind)).toEqual([Kind.Refuse]);
    expect((s.rejected[0] as HandshakeRejectedError).reason).toBe('malformed');
    expect(s.links).toEqual([]);
    s.t.destroy();
  });

  it('a HELLO that joins an unknown session is refused without a link', async () => {
    const clock = new VirtualClock();
    const s = await server(clock);
    s.conn.send(encodeHello({ version: 1, open: false, path: 0, session: 12345, maxFrameSize: 65536, receiveWindow: 65536, ack: 0 }));
    await clock.advance(100);
    expect(s.got.map((m) => m.kind)).toEqual([Kind.Refuse]);
    expect(s.links).toEqual([]);
    s.t.destroy();
  });

  it('an acknowledgement of a frame never sent closes the link with a protocol error', async () => {
    const clock = new VirtualClock();
    const s = await server(clock);
    s.conn.send(encodeHello({ version: 1, open: true, path: 0, session: 1, maxFrameSize: 65536, receiveWindow: 65536, ack: 0 }));
    await clock.advance(10);
    expect(s.got.map((m) => m.kind)).toEqual([Kind.Welcome]);
    expect(s.links).toHaveLength(1);
    const w = watch(s.links[0]!);
    s.conn.send(encodeAck(Kind.Ack, 1000, 1000));
    await clock.advance(10);
    expect(w.closed?.reason).toBe('error');
    expect(w.closed?.error).toBeInstanceOf(MalformedFrameError);
    expect(s.got.map((m) => m.kind)).toContain(Kind.Rst);
    s.t.destroy();
  });
});

describe('health', () => {
  it('reports each path of each link, in health() and in Prometheus text', async () => {
    const clock = new VirtualClock();
    const network = createMemoryNetwork({ clock });
    const f1 = factoryFor(network, 1);
    const f2 = factoryFor(network, 2);
    const ctx = (n: number) => ({ identity: { clusterName: 'm', nodeNum: n, incarnation: n }, clock, random: seededRandom(n), logger: silentLogger });
    const t1 = f1.create(ctx(1));
    const t2 = f2.create(ctx(2));
    const events: string[] = [];
    f1.on('path', (e) => events.push(`${e.path}:${e.state}`));
    const listener = await t2.listen();
    listener.on('link', (l) => l.resume());
    const link = await connectOn(clock, t1, listener.address);
    link.resume();
    await clock.advance(100);
    expect(events.sort()).toEqual(['0:up', '1:up']);
    const [h] = f1.health();
    expect(h).toMatchObject({ localNode: 1, remoteNode: 2, direction: 'outbound', state: 'open' });
    expect(h!.paths.map((p) => [p.state, p.active])).toEqual([
      ['up', true],
      ['up', false],
    ]);
    network.killLinks(pathAddress(1, 0), pathAddress(2, 0));
    await clock.advance(1);
    expect(events).toContain('0:down');
    const text = f1.metrics();
    expect(text).toContain(`clusterinfra_multipath_path_up{node="1",peer="2",link="${link.id}",path="0"} 0`);
    expect(text).toContain(`clusterinfra_multipath_path_up{node="1",peer="2",link="${link.id}",path="1"} 1`);
    expect(text).toContain(`clusterinfra_multipath_path_failures_total{node="1",peer="2",link="${link.id}",path="0"} 1`);
    t1.destroy();
    t2.destroy();
    expect(f1.health()).toEqual([]);
  });
});
