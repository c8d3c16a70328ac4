import { ConnectTimeoutError, InvalidAddressError, InvalidOptionError, type Link, type LinkCloseInfo, LinkClosedError, TransportClosedError } from '@clusterinfra/core';
import { describe, expect, it } from 'vitest';
import { connect, failure, frame, range, record, seqOf, settle, world } from './helpers.js';

/** Three nodes; 2 and 3 connected to 1. */
async function triangle(options: Parameters<typeof world>[0] = {}) {
  const w = world(options);
  const n1 = w.node(1);
  const n2 = w.node(2);
  const n3 = w.node(3);
  const l1 = await n1.listen();
  const p12 = await connect(w, l1, n2);
  const p13 = await connect(w, l1, n3);
  return { w, n1, n2, n3, l1, p12, p13 };
}

describe('partition', () => {
  it('symmetric: frames are lost both ways, the link stays open, and heal restores flow', async () => {
    const { w, p12, p13 } = await triangle();
    const at1 = record(p12.in);
    const at2 = record(p12.out);
    const at1from3 = record(p13.in);
    w.network.partition('node-1', 'node-2');
    expect(w.network.canReach('node-1', 'node-2')).toBe(false);
    expect(w.network.canReach('node-2', 'node-1')).toBe(false);
    p12.out.send(frame(1));
    p12.in.send(frame(2));
    p13.out.send(frame(3)); // unaffected pair
    await w.clock.advance(1000);
    expect(at1).toEqual([]);
    expect(at2).toEqual([]);
    expect(at1from3).toEqual([3]);
    expect(w.network.stats().blackholed).toBe(2);
    expect(p12.out.state).toBe('open');
    expect(p12.out.bufferedBytes).toBe(0); // lost bytes are not owed forever

    w.network.heal('node-1', 'node-2');
    p12.out.send(frame(4));
    p12.in.send(frame(5));
    await w.clock.advance(0);
    expect(at1).toEqual([4]);
    expect(at2).toEqual([5]);
  });

  it('one-way: frames flow from b to a only', async () => {
    const { w, p12 } = await triangle();
    const at1 = record(p12.in);
    const at2 = record(p12.out);
    w.network.partition('node-2', 'node-1', { oneWay: true });
    for (const i of range(5)) {
      p12.out.send(frame(i)); // node-2 -> node-1: blocked
      p12.in.send(frame(i)); // node-1 -> node-2: flows
    }
    await w.clock.advance(10);
    expect(at1).toEqual([]);
    expect(at2).toEqual(range(5));
  });

  it('blackholes frames already in flight when it starts', async () => {
    const { w, p12 } = await triangle({ faults: { latencyMs: 20 } });
    const at1 = record(p12.in);
    p12.out.send(frame(1));
    await w.clock.advance(10);
    w.network.partition('node-1', 'node-2');
    await w.clock.advance(100);
    expect(at1).toEqual([]);
  });

  it('makes a connect across it hang until the connect timeout', async () => {
    const w = world();
    const n1 = w.node(1);
    const n2 = w.node(2, { connectTimeoutMs: 500 });
    const l1 = await n1.listen();
    const accepted: Link[] = [];
    l1.on('link', (link) => accepted.push(link));
    // Cutting only the answer's way is enough: the request arrives, the acceptance never does.
    w.network.partition('node-1', 'node-2', { oneWay: true });
    let outcome: unknown;
    const p = n2.connect(l1.address).then(
      () => (outcome = 'connected'),
      (e: unknown) => (outcome = e),
    );
    await w.clock.advance(499);
    expect(outcome).toBeUndefined();
    expect(accepted.length).toBe(1);
    await w.clock.advance(1);
    await p;
    expect(outcome).toBeInstanceOf(ConnectTimeoutError);
    expect((outcome as ConnectTimeoutError).code).toBe('TRANSPORT_ERR_CONNECT_TIMEOUT');
    // The dialler gave up and reset its end; the reset travels the open direction.
    await w.clock.advance(0);
    expect((await accepted[0]!.closed).reason).toBe('reset');
    expect(w.network.stats().openConnections).toBe(0);
  });

  it('blocks both ways: the request itself is lost, nothing is accepted', async () => {
    const w = world();
    const n1 = w.node(1);
    const n2 = w.node(2);
    const l1 = await n1.listen();
    let accepted = 0;
    l1.on('link', () => accepted++);
    w.network.partition('node-2', 'node-1');
    const err = await failure(w.clock, n2.connect(l1.address, { timeoutMs: 200 }));
    expect(err).toBeInstanceOf(ConnectTimeoutError);
    expect(w.clock.now()).toBe(200);
    expect(accepted).toBe(0);
  });

  it('heal() with no argument heals everything, heal(a) everything involving a', async () => {
    const { w, p12, p13 } = await triangle();
    w.network.partition('node-1', 'node-2');
    w.network.partition('node-1', 'node-3');
    w.network.heal('node-2');
    expect(w.network.canReach('node-1', 'node-2')).toBe(true);
    expect(w.network.canReach('node-1', 'node-3')).toBe(false);
    w.network.heal();
    expect(w.network.canReach('node-3', 'node-1')).toBe(true);
    const at1 = record(p13.in);
    p13.out.send(frame(9));
    p12.out.send(frame(8));
    await w.clock.advance(0);
    expect(at1).toEqual([9]);
  });
});

describe('misuse', () => {
  it('fault calls refuse options and addresses of the wrong kind with typed errors, and change nothing', async () => {
    const { w, p12 } = await triangle();
    const before = w.network.traceLength;
    // Each was a TypeError (null options, heal(5)) or taken (a oneWay of 5 cut one way).
    expect(() => w.network.partition('node-1', 'node-2', null as never)).toThrow(InvalidOptionError);
    expect(() => w.network.partition('node-1', 'node-2', { oneWay: 5 as never })).toThrow(expect.objectContaining({ path: 'oneWay' }));
    expect(() => w.network.setLinkFaults('node-1', 'node-2', { latencyMs: 5 }, null as never)).toThrow(InvalidOptionError);
    expect(() => w.network.setLinkFaults('node-1', 'node-2', { latencyMs: 5 }, { bothWays: 'yes' as never })).toThrow(expect.objectContaining({ path: 'bothWays' }));
    expect(() => w.network.heal(5 as never)).toThrow(InvalidAddressError);
    expect(() => w.network.heal('node-1', null as never)).toThrow(InvalidAddressError);
    expect(w.network.traceLength).toBe(before);
    expect(w.network.canReach('node-2', 'node-1')).toBe(true);
    expect(w.network.faultsOf('node-1', 'node-2').latencyMs).toBe(0);
    const at1 = record(p12.in);
    const at2 = record(p12.out);
    p12.out.send(frame(1));
    p12.in.send(frame(2));
    await w.clock.advance(10);
    expect([at1, at2]).toEqual([[1], [2]]);
  });
});

describe('isolate', () => {
  it('cuts one address from all others, both ways, until healed', async () => {
    const w = world();
    const [n1, n2, n3] = [w.node(1), w.node(2), w.node(3)];
    const l1 = await n1.listen();
    const l2 = await n2.listen();
    const p12 = await connect(w, l1, n2);
    const p31 = await connect(w, l1, n3);
    const p32 = await connect(w, l2, n3);
    const got = { p12: record(p12.in), p21: record(p12.out), p31: record(p31.in), p32: record(p32.in) };
    w.network.isolate('node-3');
    p12.out.send(frame(1));
    p12.in.send(frame(2));
    p31.out.send(frame(3));
    p32.out.send(frame(4));
    await w.clock.advance(100);
    expect(got).toEqual({ p12: [1], p21: [2], p31: [], p32: [] });
    expect(await failure(w.clock, n3.connect(l1.address, { timeoutMs: 50 }))).toBeInstanceOf(ConnectTimeoutError);
    w.network.heal('node-3');
    p31.out.send(frame(5));
    await w.clock.advance(0);
    expect(got.p31).toEqual([5]);
  });
});

describe('link faults', () => {
  it('latency: a frame with 50 ms latency is not delivered at 49 ms and is at 50 ms', async () => {
    const { w, p12 } = await triangle();
    w.network.setLinkFaults('node-2', 'node-1', { latencyMs: 50 });
    const at1 = record(p12.in);
    const at2 = record(p12.out);
    p12.out.send(frame(1));
    p12.in.send(frame(2)); // the other direction has no latency
    await w.clock.advance(0);
    expect(at2).toEqual([2]);
    await w.clock.advance(49);
    expect(at1).toEqual([]);
    expect(p12.out.bufferedBytes).toBe(8); // in flight counts
    await w.clock.advance(1);
    expect(at1).toEqual([1]);
    expect(p12.out.bufferedBytes).toBe(0);
  });

  it('jitter never reorders a link direction', async () => {
    const { w, p12 } = await triangle({ seed: 7 });
    w.network.setLinkFaults('node-2', 'node-1', { latencyMs: 5, jitterMs: 40 });
    const at1 = record(p12.in);
    for (const i of range(200)) {
      p12.out.send(frame(i));
      if (i % 10 === 0) await w.clock.advance(3);
    }
    await w.clock.advance(1000);
    expect(at1).toEqual(range(200));
  });

  it('drop rate 1.0 drops every frame', async () => {
    const { w, p12 } = await triangle();
    w.network.setLinkFaults('node-2', 'node-1', { dropRate: 1 });
    const at1 = record(p12.in);
    const at2 = record(p12.out);
    for (const i of range(100)) expect(p12.out.send(frame(i))).toBe(true);
    p12.in.send(frame(7)); // the reverse direction is untouched
    await w.clock.advance(100);
    expect(at1).toEqual([]);
    expect(at2).toEqual([7]);
    expect(w.network.stats()).toMatchObject({ sent: 101, dropped: 100, delivered: 1 });
    expect(p12.out.bufferedBytes).toBe(0);
  });

  it('a partial drop rate loses some frames and keeps the rest in order', async () => {
    const { w, p12 } = await triangle({ seed: 3, faults: { dropRate: 0.3 } });
    const at1 = record(p12.in);
    for (const i of range(1000)) p12.out.send(frame(i));
    await w.clock.advance(0);
    const dropped = w.network.stats().dropped;
    expect(dropped).toBeGreaterThan(200);
    expect(dropped).toBeLessThan(400);
    expect(at1.length).toBe(1000 - dropped);
    expect([...at1].sort((a, b) => a - b)).toEqual(at1);
  });

  it('duplication delivers frames twice, each copy its own array', async () => {
    const { w, p12 } = await triangle();
    w.network.setLinkFaults('node-2', 'node-1', { duplicateRate: 1 });
    const frames: Uint8Array[] = [];
    p12.in.on('frame', (f) => frames.push(f));
    for (const i of range(5)) p12.out.send(frame(i));
    await w.clock.advance(0);
    expect(frames.map(seqOf)).toEqual([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
    expect(frames[0]!.buffer).not.toBe(frames[1]!.buffer);
    expect(w.network.stats().duplicated).toBe(5);
    expect(p12.out.bufferedBytes).toBe(0); // duplicates are not owed by the sender
  });

  it('reordering swaps delivery order within a link direction, losing nothing', async () => {
    const { w, p12 } = await triangle();
    w.network.setLinkFaults('node-2', 'node-1', { reorderRate: 1 });
    const at1 = record(p12.in);
    for (const i of range(6)) p12.out.send(frame(i));
    await w.clock.advance(0);
    expect(at1).toEqual([1, 0, 3, 2, 5, 4]);
    expect(w.network.stats().reordered).toBe(3);
  });

  it('a partial reorder rate permutes the frames', async () => {
    const { w, p12 } = await triangle({ seed: 11, faults: { reorderRate: 0.2, latencyMs: 1 } });
    const at1 = record(p12.in);
    for (const i of range(300)) p12.out.send(frame(i));
    await w.clock.advance(10);
    expect(at1).not.toEqual(range(300));
    expect([...at1].sort((a, b) => a - b)).toEqual(range(300));
  });

  it('per-direction faults override the network default; null restores it', async () => {
    const { w } = await triangle({ faults: { latencyMs: 10 } });
    w.network.setLinkFaults('node-1', 'node-2', { dropRate: 0.5 }, { bothWays: true });
    expect(w.network.faultsOf('node-1', 'node-2')).toEqual({
      latencyMs: 0,
      jitterMs: 0,
      dropRate: 0.5,
      duplicateRate: 0,
      reorderRate: 0,
    });
    expect(w.network.faultsOf('node-2', 'node-1').dropRate).toBe(0.5);
    expect(w.network.faultsOf('node-1', 'node-3').latencyMs).toBe(10);
    w.network.setLinkFaults('node-1', 'node-2', null);
    expect(w.network.faultsOf('node-1', 'node-2').latencyMs).toBe(10);
    w.network.clearFaults();
    expect(w.network.faultsOf('node-2', 'node-1').dropRate).toBe(0);
  });
});

describe('killLinks', () => {
  it('kills every link between two addresses: both ends see reset at once, other links live on', async () => {
    const { w, n2, l1, p12, p13 } = await triangle({ faults: { latencyMs: 5 } });
    const second = await connect(w, l1, n2);
    const closes: LinkCloseInfo[] = [];
    for (const l of [p12.out, p12.in, second.out, second.in]) l.on('close', (info) => closes.push(info));
    const at1 = record(p12.in);
    p12.out.send(frame(1)); // in flight when the links die: lost
    expect(w.network.killLinks('node-1', 'node-2')).toBe(2);
    expect(closes.map((c) => c.reason)).toEqual(['reset', 'reset', 'reset', 'reset']);
    expect(closes[0]!.error?.code).toBe('TRANSPORT_ERR_LINK_RESET');
    expect(p13.out.state).toBe('open');
    expect(() => p12.out.send(frame(2))).toThrow(LinkClosedError);
    await w.clock.advance(10);
    expect(at1).toEqual([]);
    expect(w.network.stats().discarded).toBe(1);
    // Not a partition: a new link can be made at once.
    const again = await connect(w, l1, n2);
    const got = record(again.in);
    again.out.send(frame(3));
    await w.clock.advance(5);
    expect(got).toEqual([3]);
  });

  it('with one address kills every link of that address', async () => {
    const { w, p12, p13 } = await triangle();
    expect(w.network.killLinks('node-1')).toBe(2);
    expect(p12.in.state).toBe('closed');
    expect(p13.out.state).toBe('closed');
  });
});

describe('crash', () => {
  it('kills the node: its links reset on both sides, its listener closes, it can neither listen nor connect', async () => {
    const { w, n1, n2, n3, l1, p12, p13 } = await triangle();
    let listenerClosed = 0;
    l1.on('close', () => listenerClosed++);
    const l3 = await n3.listen();
    const p23 = await connect(w, l3, n2);
    expect(w.network.crash('node-1')).toBe(1);
    // The crashed side's own links end at once.
    expect(p12.in.state).toBe('closed');
    expect((await p12.in.closed).reason).toBe('reset');
    expect((await p13.in.closed).reason).toBe('reset');
    expect(listenerClosed).toBe(1);
    // The peers learn from the reset the crashed node's stack sends.
    await w.clock.advance(0);
    expect((await p12.out.closed).reason).toBe('reset');
    expect((await p13.out.closed).reason).toBe('reset');
    expect(p23.out.state).toBe('open');
    expect(await failure(w.clock, n1.connect('node-3'))).toBeInstanceOf(TransportClosedError);
    expect(await failure(w.clock, n1.listen())).toBeInstanceOf(TransportClosedError);
    const refused = (await failure(w.clock, n2.connect('node-1'))) as { code: string };
    expect(refused.code).toBe('TRANSPORT_ERR_CONNECTION_REFUSED');
    // A restart on the same address is a new transport.
    const reborn = w.node(1);
    const l1b = await reborn.listen();
    const p = await connect(w, l1b, n2);
    expect(p.in.remote.nodeNum).toBe(2);
  });

  it('sends nothing more once crashed, even what the node does on hearing its first links end', async () => {
    const { w, p12, p13 } = await triangle();
    const at2 = record(p12.out);
    const at3 = record(p13.out);
    // Node 1's stack reacts to each link's end with a frame on every other
    // link still open (as CLMS reports a lost link to its master).
    let tried = 0;
    for (const end of [p12.in, p13.in]) {
      end.on('close', () => {
        for (const other of [p12.in, p13.in]) {
          if (other.state !== 'open') continue;
          tried++;
          other.send(frame(9));
        }
      });
    }
    w.network.crash('node-1');
    await w.clock.advance(1000);
    expect(tried).toBe(1);
    expect([at2, at3]).toEqual([[], []]);
    expect((await p12.out.closed).reason).toBe('reset');
    expect((await p13.out.closed).reason).toBe('reset');
  });

  it('across a partition leaves the peer half-open', async () => {
    const { w, p12 } = await triangle();
    w.network.partition('node-1', 'node-2');
    w.network.crash('node-1');
    await w.clock.advance(1000);
    expect(p12.in.state).toBe('closed');
    expect(p12.out.state).toBe('open');
  });

  it('fails a connect the crashed node had under way', async () => {
    const w = world({ faults: { latencyMs: 100 } });
    const n1 = w.node(1);
    const n2 = w.node(2);
    const l1 = await n1.listen();
    const pending = n2.connect(l1.address);
    await w.clock.advance(50);
    w.network.crash('node-2');
    expect(await failure(w.clock, pending)).toBeInstanceOf(TransportClosedError);
    await w.clock.advance(1000);
    expect(w.network.stats().openConnections).toBe(0);
  });
});

describe('pause and resume', () => {
  it('holds frames to and from a paused address and delivers them in order on resume', async () => {
    const { w, p12, p13 } = await triangle();
    const at1 = record(p12.in);
    const at2 = record(p12.out);
    const at1from3 = record(p13.in);
    w.network.pause('node-2');
    expect(w.network.isPaused('node-2')).toBe(true);
    for (const i of range(10)) {
      p12.out.send(frame(i));
      p12.in.send(frame(100 + i));
    }
    p13.out.send(frame(7));
    await w.clock.advance(60_000);
    expect(at1).toEqual([]);
    expect(at2).toEqual([]);
    expect(at1from3).toEqual([7]);
    expect(p12.out.bufferedBytes).toBe(80); // held bytes are still owed: senders see backpressure
    expect(w.network.stats().holding).toBe(20);
    p12.out.send(frame(10)); // sent during the pause, after the held ones
    w.network.resume('node-2');
    await w.clock.advance(0);
    expect(at1).toEqual(range(11));
    expect(at2).toEqual(range(10).map((i) => 100 + i));
    expect(p12.out.bufferedBytes).toBe(0);
  });

  it('keeps order with frames still in flight when the pause ends', async () => {
    const { w, p12 } = await triangle({ faults: { latencyMs: 10 } });
    const at1 = record(p12.in);
    w.network.pause('node-1');
    p12.out.send(frame(0));
    await w.clock.advance(15); // frame 0 fell due and is held
    p12.out.send(frame(1)); // due at 25
    await w.clock.advance(2);
    w.network.resume('node-1');
    p12.out.send(frame(2));
    await w.clock.advance(100);
    expect(at1).toEqual([0, 1, 2]);
  });

  it('lets a paused sender fill its window: send returns false, then drain after resume', async () => {
    const w = world();
    const n1 = w.node(1);
    const n2 = w.node(2, { highWaterMark: 1000 });
    const p = await connect(w, await n1.listen(), n2);
    w.network.pause('node-1');
    let sent = 0;
    while (p.out.send(frame(sent, 100))) sent++;
    expect(sent).toBe(9);
    let drained = false;
    p.out.on('drain', () => (drained = true));
    await w.clock.advance(1000);
    expect(drained).toBe(false);
    w.network.resume('node-1');
    await w.clock.advance(0);
    expect(drained).toBe(true);
  });

  it('holds a graceful close too', async () => {
    const { w, p12 } = await triangle();
    const infos: string[] = [];
    p12.in.on('close', (i) => infos.push(`in:${i.reason}`));
    p12.out.on('close', (i) => infos.push(`out:${i.reason}`));
    w.network.pause('node-1');
    void p12.out.close();
    await w.clock.advance(1000);
    expect(infos).toEqual([]);
    w.network.resume('node-1');
    await w.clock.advance(0);
    expect(infos).toEqual(['in:remote-closed', 'out:closed']);
  });
});
