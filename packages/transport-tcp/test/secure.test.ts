/**
 * The hardened handshake (protocol 2) and the encrypted links of `secret`
 * nodes, tested by peers that speak the handshake themselves over TCP on
 * 127.0.0.1, and by a man in the middle that records, alters, replays,
 * reorders and drops records.
 */
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import {
  HandshakeRejectedError,
  HandshakeTimeoutError,
  IntegrityError,
  InvalidOptionError,
  type Link,
  type Listener,
  TooManyPendingError,
  type Transport,
  realClock,
  seededRandom,
  silentLogger,
} from '@clusterinfra/core';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlType, Flags, REJECT_CODES } from '../src/constants.js';
import { FrameDecoder, encodeControl, encodeDataFrame } from '../src/frame.js';
import { encodeAuth, encodeReady, encodeReject, encodeWelcome } from '../src/handshake.js';
import { TcpKeyring, type TcpOptions, tcp } from '../src/index.js';
import type { TcpLink } from '../src/link.js';
import { PendingSlots, networkOf } from '../src/pending.js';
import { drainSocket, makeTransport, watchRejected } from './helpers.js';
import { FrameReader, clientProof, helloBody, hostPort, rawClientHandshake, rawConnect } from './raw.js';

const SECRET = 'the cluster secret, 32 bytes....';
const OTHER = 'not the cluster secret, as long.';

const transports: Transport[] = [];
const sockets: Socket[] = [];
const servers: Server[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const t of transports.splice(0)) t.destroy();
  for (const s of servers.splice(0)) s.close();
});

function node(nodeNum: number, options: TcpOptions = {}, clusterName = 'test'): Transport {
  const t = makeTransport(nodeNum, options, clusterName);
  transports.push(t);
  return t;
}

async function listening(options: TcpOptions = {}): Promise<{ listener: Listener } & ReturnType<typeof watchRejected>> {
  const listener = await node(1, options).listen();
  return { listener, ...watchRejected(listener) };
}

async function raw(address: string, localAddress?: string): Promise<Socket> {
  const s = await rawConnect(address, localAddress);
  s.on('error', () => {});
  sockets.push(s);
  return s;
}

const failure = (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (e: unknown) => e);
const rejectFrame = (reason: keyof typeof REJECT_CODES): Buffer => encodeControl(ControlType.REJECT, encodeReject(reason));

/** Connect with `client` and wait for both ends of the link. */
async function linkUp(listener: Listener, client: Transport): Promise<{ outbound: TcpLink; inbound: TcpLink }> {
  const accepted = new Promise<Link>((r) => listener.once('link', r));
  const outbound = (await client.connect(listener.address)) as TcpLink;
  return { outbound, inbound: (await accepted) as TcpLink };
}

function collect(link: Link, count: number): Promise<Uint8Array[]> {
  const frames: Uint8Array[] = [];
  return new Promise((resolve) => {
    link.on('frame', (f) => {
      frames.push(new Uint8Array(f));
      if (frames.length === count) resolve(frames);
    });
    link.resume();
  });
}

describe('handshake: the client proves first', () => {
  it('WELCOME depends on nothing secret: two servers with different secrets send the same bytes', async () => {
    // Same identity, same random source, different secrets: if WELCOME carried a proof (protocol 1),
    // its bytes would differ, and an attacker could test guesses at the secret against them offline.
    const welcomes: Buffer[] = [];
    for (const secret of [SECRET, OTHER]) {
      const t = tcp({ secret }).create({ identity: { clusterName: 'test', nodeNum: 1, incarnation: 99 }, clock: realClock, random: seededRandom(7), logger: silentLogger });
      transports.push(t);
      const listener = await t.listen();
      const s = await raw(listener.address);
      const reader = new FrameReader(s);
      s.write(encodeControl(ControlType.HELLO, helloBody({ flags: Flags.PSK, nonce: new Uint8Array(32).fill(3) })));
      welcomes.push(Buffer.from(await reader.control(ControlType.WELCOME2)));
    }
    expect(welcomes[0]!.byteLength).toBe(39); // magic, version, flags, nonce: nothing else
    expect(welcomes[0]!.equals(welcomes[1]!)).toBe(true);
  });

  it('WELCOME does not reveal the node number or incarnation; READY does, after the client proved itself', async () => {
    const t = tcp({ secret: SECRET }).create({ identity: { clusterName: 'test', nodeNum: 0x0a0b0c0d, incarnation: 0x01020304 }, clock: realClock, random: seededRandom(1), logger: silentLogger });
    transports.push(t);
    const listener = await t.listen();
    const { welcomeBody, ready } = await rawClientHandshake(listener.address, { secret: SECRET });
    const id = Buffer.from([0x0a, 0x0b, 0x0c, 0x0d]);
    const inc = Buffer.from([0x01, 0x02, 0x03, 0x04]);
    expect(Buffer.from(welcomeBody).includes(id)).toBe(false);
    expect(Buffer.from(welcomeBody).includes(inc)).toBe(false);
    expect(ready.nodeNum).toBe(0x0a0b0c0d);
    expect(ready.incarnation).toBe(0x01020304);
    expect(ready.proof.byteLength).toBe(32);
  });

  it('a wrong proof gets REJECT auth and no identity', async () => {
    const w = await listening({ secret: SECRET });
    const err = await failure(rawClientHandshake(w.listener.address, { secret: OTHER }));
    expect(String(err)).toMatch(/expected control 8, got .*"type":5/); // no READY: a REJECT came instead
    const r = await w.next();
    expect((r.error as HandshakeRejectedError).reason).toBe('auth');
    expect((r.error as HandshakeRejectedError).by).toBe('local');
  });

  it('a wrong cluster name gets the very same answer as a wrong secret (auth)', async () => {
    const w = await listening({ secret: SECRET });
    const answers: Buffer[] = [];
    for (const attempt of [{ secret: OTHER, clusterName: 'test' }, { secret: SECRET, clusterName: 'other' }]) {
      const s = await raw(w.listener.address);
      const reader = new FrameReader(s);
      const got = drainSocket(s);
      const hello = helloBody({ flags: Flags.PSK }, attempt.clusterName);
      s.write(encodeControl(ControlType.HELLO, hello));
      const welcome = await reader.control(ControlType.WELCOME2);
      s.write(encodeControl(ControlType.AUTH, encodeAuth(clientProof(attempt.secret, attempt.clusterName, 77, hello, welcome))));
      expect(Buffer.from(await reader.control(ControlType.REJECT)).equals(encodeReject('auth'))).toBe(true);
      answers.push(await got);
    }
    // WELCOME (its nonce differs), then exactly the same REJECT and nothing more, either way.
    for (const a of answers) expect(a.subarray(4 + 1 + 39).equals(rejectFrame('auth'))).toBe(true);
    const [wrongSecret, wrongName] = [await w.next(), await w.next()];
    expect((wrongSecret.error as HandshakeRejectedError).reason).toBe('auth');
    expect((wrongName.error as HandshakeRejectedError).reason).toBe('auth');
    // Locally the operator is told the name differed.
    expect(wrongName.error.message).toMatch(/another cluster, "other"/);
    // And a real node of another cluster sees `auth` too.
    const err = await failure(node(2, { secret: SECRET }, 'other').connect(w.listener.address));
    expect((err as HandshakeRejectedError).reason).toBe('auth');
    expect((err as HandshakeRejectedError).by).toBe('remote');
  });

  it('a server that cannot prove the secret is refused by the client (auth), after the client proved itself', async () => {
    // A rogue server: answers HELLO with a WELCOME and AUTH with a READY whose proof it made up.
    let afterReady: Buffer = Buffer.alloc(0);
    const rogue = createServer((sock) => {
      sock.on('error', () => {});
      const reader = new FrameReader(sock);
      void (async () => {
        await reader.control(ControlType.HELLO);
        sock.write(encodeControl(ControlType.WELCOME2, encodeWelcome({ version: 2, flags: Flags.PSK | Flags.ENCRYPT, nonce: new Uint8Array(32) })));
        await reader.control(ControlType.AUTH);
        sock.write(encodeControl(ControlType.READY2, encodeReady({ nodeNum: 1, incarnation: 1, maxFrameSize: 1 << 20, proof: new Uint8Array(32).fill(9) })));
        const f = await reader.next();
        if (f?.kind === 'control') afterReady = encodeControl(f.type, f.body);
      })().catch(() => sock.destroy());
    });
    servers.push(rogue);
    await new Promise<void>((r) => rogue.listen(0, '127.0.0.1', r));
    const err = await failure(node(2, { secret: SECRET }).connect(`127.0.0.1:${(rogue.address() as AddressInfo).port}`));
    expect((err as HandshakeRejectedError).reason).toBe('auth');
    expect((err as HandshakeRejectedError).by).toBe('local');
    expect((err as Error).message).toMatch(/server proof did not verify/);
    await new Promise((r) => setTimeout(r, 20));
    expect(afterReady.equals(rejectFrame('auth'))).toBe(true); // REJECT, not FINISH: no link, no records
  });

  it('an old peer (protocol 1) is refused with reason version, and a message that says so, on both sides', async () => {
    const w = await listening();
    const s = await raw(w.listener.address);
    const got = drainSocket(s);
    s.write(encodeControl(ControlType.HELLO, helloBody({ minVersion: 1, maxVersion: 1 })));
    expect((await got).equals(rejectFrame('version'))).toBe(true);
    const r = await w.next();
    expect((r.error as HandshakeRejectedError).reason).toBe('version');
    expect(r.error.message).toMatch(/peer speaks protocol 1\.\.1.*protocol 1 is retired/);

    // A new client dialling an old server: the old server refuses our 2..3 with `version`.
    const old = createServer((sock) => {
      sock.on('error', () => {});
      sock.once('data', () => sock.end(rejectFrame('version')));
    });
    servers.push(old);
    await new Promise<void>((r) => old.listen(0, '127.0.0.1', r));
    const err = await failure(node(2).connect(`127.0.0.1:${(old.address() as AddressInfo).port}`));
    expect(err).toBeInstanceOf(HandshakeRejectedError);
    expect((err as HandshakeRejectedError).reason).toBe('version');
    expect((err as HandshakeRejectedError).by).toBe('remote');
    expect((err as Error).message).toMatch(/older release/);

    // An old server that answers with a protocol 1 WELCOME (type 2) is refused by us, with `version`.
    const older = createServer((sock) => {
      sock.on('error', () => {});
      sock.once('data', () => sock.write(encodeControl(ControlType.WELCOME, new Uint8Array(56))));
    });
    servers.push(older);
    await new Promise<void>((r) => older.listen(0, '127.0.0.1', r));
    const err2 = await failure(node(3).connect(`127.0.0.1:${(older.address() as AddressInfo).port}`));
    expect((err2 as HandshakeRejectedError).reason).toBe('version');
    expect((err2 as HandshakeRejectedError).by).toBe('local');
  });
});

describe('pending handshakes: bounded without refusing the newcomer', () => {
  it('groups sources by /24 (IPv4, IPv4-mapped) and /64 (IPv6)', () => {
    expect(networkOf('10.1.2.3')).toBe(networkOf('10.1.2.200'));
    expect(networkOf('10.1.2.3')).not.toBe(networkOf('10.1.3.3'));
    expect(networkOf('::ffff:10.1.2.9')).toBe(networkOf('10.1.2.3'));
    expect(networkOf('2001:db8:1:2:3:4:5:6')).toBe(networkOf('2001:db8:1:2::9'));
    expect(networkOf('2001:0db8:0001:0002::1')).toBe(networkOf('2001:db8:1:2:ffff::'));
    expect(networkOf('2001:db8:1:3::1')).not.toBe(networkOf('2001:db8:1:2::1'));
    expect(networkOf('fe80::1%eth0')).toBe(networkOf('fe80::2'));
    expect(networkOf('::1')).toBe('0:0:0:0::/64');
  });

  it('chooses as victim a connection that sent nothing (the oldest), else the oldest; a known newcomer displaces an unknown one', () => {
    type E = { id: string; network: string; known: boolean; bytesRead: number };
    const e = (id: string, network: string, bytesRead: number, known = false): E => ({ id, network, known, bytesRead });
    const slots = new PendingSlots<E>({ total: 3, perNetwork: 3, reserved: 0 });
    for (const x of [e('a', 'n1', 60), e('b', 'n2', 0), e('c', 'n3', 0)]) slots.add(x);
    expect(slots.admit(e('d', 'n4', 0)).map((v) => v.victim.id)).toEqual(['b']); // a spoke; b is the oldest silent one
    slots.add(e('d', 'n4', 60));
    slots.values().forEach((x) => (x.bytesRead = 60));
    expect(slots.admit(e('f', 'n5', 0)).map((v) => v.victim.id)).toEqual(['a']); // nobody silent: the oldest
    const known = new PendingSlots<E>({ total: 2, perNetwork: 2, reserved: 0 });
    known.add(e('k', 'n1', 0, true));
    known.add(e('u', 'n2', 60));
    expect(known.admit(e('k2', 'n3', 0, true)).map((v) => v.victim.id)).toEqual(['u']);
  });

  it('a connection that says nothing is dropped at the silent deadline; one that spoke is not', async () => {
    const w = await listening({ silentTimeoutMs: 100, handshakeTimeoutMs: 20_000 });
    const talker = await raw(w.listener.address);
    const talkerReader = new FrameReader(talker);
    talker.write(encodeControl(ControlType.HELLO, helloBody()));
    await talkerReader.control(ControlType.WELCOME2); // then it stalls
    const silent = await raw(w.listener.address);
    await drainSocket(silent);
    const r = await w.next();
    expect(r.error).toBeInstanceOf(HandshakeTimeoutError);
    expect(r.error.message).toMatch(/100 ms/);
    expect(talkerReader.closed).toBe(false);
    expect(w.rejected.length).toBe(1);
  });

  it('room is reserved for known members: strangers share the rest and displace each other', async () => {
    // 4 slots, 2 of them for known addresses: 127.0.0.1 is known once a peer authenticated from it,
    // 127.0.0.9 is configured as known; strangers come from 127.0.5.0/24.
    const w = await listening({ maxPendingHandshakes: 4, pendingReservedForKnown: 2, handshakeTimeoutMs: 20_000, silentTimeoutMs: 20_000, knownAddresses: ['127.0.0.9'] });
    await linkUp(w.listener, node(2));
    const strangers: Socket[] = [];
    for (const from of ['127.0.5.1', '127.0.5.2']) strangers.push(await raw(w.listener.address, from));
    const closed = strangers.map((s) => drainSocket(s));
    // A third stranger: only 2 slots are theirs, so the oldest stranger gives way, though 2 slots are free.
    strangers.push(await raw(w.listener.address, '127.0.5.3'));
    expect((await closed[0]!).equals(rejectFrame('busy'))).toBe(true);
    const r = await w.next();
    expect(r.error).toBeInstanceOf(TooManyPendingError);
    expect(r.error.message).toMatch(/2 from unknown addresses/);
    // A configured known address and a learned one take the reserved room: no stranger is displaced.
    const configured = await raw(w.listener.address, '127.0.0.9');
    const { outbound } = await linkUp(w.listener, node(3));
    expect(outbound.remote.nodeNum).toBe(1);
    expect(configured.destroyed).toBe(false);
    await new Promise((r) => setTimeout(r, 20));
    expect(w.rejected.length).toBe(1);
  });
});

describe('encryption of secret links', () => {
  /** A pass-through proxy that records what the client sends and may rewrite its records. */
  async function mitm(target: string, rewrite?: (records: Buffer[]) => Buffer[]): Promise<{ address: string; clientBytes(): Buffer }> {
    const seen: Buffer[] = [];
    const proxy = createServer((inbound) => {
      const outbound = connect(hostPort(target));
      sockets.push(inbound, outbound);
      inbound.on('error', () => outbound.destroy());
      outbound.on('error', () => inbound.destroy());
      inbound.on('close', () => outbound.destroy());
      outbound.on('close', () => inbound.destroy());
      outbound.on('data', (c: Buffer) => inbound.write(c));
      // Client to server: three handshake messages (HELLO, AUTH, FINISH), then records.
      const handshake = new FrameDecoder({ maxFrameSize: 0, allowData: false });
      let messages = 0;
      let pending = Buffer.alloc(0);
      inbound.on('data', (c: Buffer) => {
        seen.push(Buffer.from(c));
        if (!rewrite) {
          outbound.write(c);
          return;
        }
        pending = Buffer.concat([pending, c]);
        while (messages < 3 && pending.byteLength >= 4) {
          const length = (pending.readUInt32BE(0) & 0x7fffffff) + 4;
          if (pending.byteLength < length) return;
          handshake.push(pending.subarray(0, length));
          outbound.write(pending.subarray(0, length));
          pending = pending.subarray(length);
          messages++;
        }
        const records: Buffer[] = [];
        while (pending.byteLength >= 4) {
          const length = (pending.readUInt32BE(0) & 0x7fffffff) + 4;
          if (pending.byteLength < length) break;
          records.push(Buffer.from(pending.subarray(0, length)));
          pending = pending.subarray(length);
        }
        for (const r of rewrite(records)) outbound.write(r);
      });
    });
    servers.push(proxy);
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    return { address: `127.0.0.1:${(proxy.address() as AddressInfo).port}`, clientBytes: () => Buffer.concat(seen) };
  }

  async function throughProxy(serverOptions: TcpOptions, clientOptions: TcpOptions, rewrite?: (records: Buffer[]) => Buffer[]) {
    const server = node(1, serverOptions);
    const listener = await server.listen();
    const proxy = await mitm(listener.address, rewrite);
    const accepted = new Promise<Link>((r) => listener.once('link', r));
    const outbound = (await node(2, clientOptions).connect(proxy.address)) as TcpLink;
    return { outbound, inbound: (await accepted) as TcpLink, proxy };
  }

  const MARKER = Buffer.from('PLAINTEXT-MARKER-'.repeat(8));

  it('is on by default with a secret: the frames are not on the wire in clear (and are with encrypt: false)', async () => {
    for (const [encrypt, visible] of [[true, false], [false, true]] as const) {
      const { outbound, inbound, proxy } = await throughProxy({ secret: SECRET, encrypt }, { secret: SECRET, encrypt });
      expect(outbound.encrypted).toBe(encrypt);
      expect(inbound.encrypted).toBe(encrypt);
      const got = collect(inbound, 2);
      outbound.send(MARKER);
      outbound.send(new Uint8Array(200_000).fill(0x41)); // spans records
      const frames = await got;
      expect(Buffer.from(frames[0]!).equals(MARKER)).toBe(true);
      expect(frames[1]!.byteLength).toBe(200_000);
      expect(proxy.clientBytes().includes(MARKER)).toBe(visible);
      expect(proxy.clientBytes().includes(Buffer.alloc(1000, 0x41))).toBe(visible);
    }
  });

  it('protocol 3: a write batch up to 257 KiB travels as one record (a 64 KiB frame with its header, a 256 KiB one)', async () => {
    const sizes: number[] = [];
    const { outbound, inbound } = await throughProxy({ secret: SECRET }, { secret: SECRET }, (records) => {
      for (const r of records) sizes.push(r.byteLength);
      return records;
    });
    for (const size of [64 * 1024, 256 * 1024]) {
      sizes.length = 0;
      const got = collect(inbound, 1);
      outbound.send(new Uint8Array(size).fill(size >> 10));
      const [frame] = await got;
      expect(frame!.byteLength).toBe(size);
      expect(frame!.every((b) => b === (size >> 10) % 256)).toBe(true);
      expect(sizes).toEqual([4 + 4 + size + 16]); // record header, frame header, frame, tag
    }
  });

  it('a peer that proved the secret but sends frames in clear on an encrypted link is cut off; nothing is delivered', async () => {
    const w = await listening({ secret: SECRET });
    const linked = new Promise<Link>((r) => w.listener.once('link', r));
    const { socket } = await rawClientHandshake(w.listener.address, { secret: SECRET, flags: Flags.PSK | Flags.ENCRYPT });
    sockets.push(socket);
    const link = (await linked) as TcpLink;
    expect(link.encrypted).toBe(true);
    const got: Uint8Array[] = [];
    link.on('frame', (f) => got.push(f));
    link.resume();
    socket.write(encodeDataFrame(new Uint8Array(64).fill(1)));
    const info = await link.closed;
    expect(info.reason).toBe('error');
    expect(info.error).toBeInstanceOf(IntegrityError);
    expect(got).toEqual([]);
  });

  it('a link is encrypted when either side asks (TLS links: transport.test.ts)', async () => {
    const w = await listening({ secret: SECRET, encrypt: false });
    const { outbound, inbound } = await linkUp(w.listener, node(2, { secret: SECRET }));
    expect(outbound.encrypted && inbound.encrypted).toBe(true);
    const got = collect(inbound, 1);
    outbound.send(Uint8Array.of(1, 2, 3));
    expect([...(await got)[0]!]).toEqual([1, 2, 3]);
  });

  /** Rewrites of the client's records (numbered from 0, the first after the handshake), made fresh for each test. */
  const tampering: Array<[string, () => (records: Buffer[]) => Buffer[], delivered?: number[]]> = [
    ['an altered byte', () => each((r, i) => (i === 2 ? [Buffer.from(r).fill(r[r.byteLength - 1]! ^ 1, r.byteLength - 1)] : [r]))],
    ['a replayed record', () => each((r, i) => (i === 2 ? [r, r] : [r])), [0, 1, 2]],
    ['two records swapped', () => {
      let held: Buffer | undefined;
      return each((r, i) => {
        if (i === 2) {
          held = r;
          return [];
        }
        return i === 3 ? [r, held!] : [r];
      });
    }],
    ['a dropped record', () => each((r, i) => (i === 2 ? [] : [r]))],
    ['a flipped key-update bit', () => each((r, i) => (i === 2 ? [Buffer.concat([Buffer.of(r[0]! ^ 0x80), r.subarray(1)])] : [r]))],
  ];
  function each(fn: (record: Buffer, index: number) => Buffer[]): (records: Buffer[]) => Buffer[] {
    let count = 0;
    return (records) => records.flatMap((r) => fn(r, count++));
  }

  for (const [what, make, delivered = [0, 1]] of tampering) {
    it(`${what} closes the link with IntegrityError; nothing from that record on is delivered`, async () => {
      const { outbound, inbound } = await throughProxy({ secret: SECRET }, { secret: SECRET }, make());
      const got: number[] = [];
      inbound.on('frame', (f) => got.push(f[0]!));
      inbound.resume();
      for (let i = 0; i < 6 && outbound.state === 'open'; i++) {
        outbound.send(Uint8Array.of(i, 0, 0, 0));
        await new Promise((r) => setTimeout(r, 5)); // one record per frame
      }
      const info = await inbound.closed;
      expect(info.reason).toBe('error');
      expect(info.error).toBeInstanceOf(IntegrityError);
      expect(got).toEqual(delivered);
    });
  }

  it('moves to new keys as it goes (both directions), and every frame arrives in order', async () => {
    const w = await listening({ secret: SECRET, rekeyAfterBytes: 4096 });
    const { outbound, inbound } = await linkUp(w.listener, node(2, { secret: SECRET, rekeyAfterBytes: 1024 }));
    const frame = (i: number) => new Uint8Array(500).fill(i & 0xff);
    const intoServer = collect(inbound, 200);
    const intoClient = collect(outbound, 200);
    for (let i = 0; i < 200; i++) {
      outbound.send(frame(i));
      inbound.send(frame(i));
      await new Promise((r) => setImmediate(r)); // a record (or so) per frame
    }
    for (const frames of [await intoServer, await intoClient]) expect(frames.map((f) => f[0])).toEqual(Array.from({ length: 200 }, (_, i) => i & 0xff));
    // Each sender keeps its own budget: 100 KB at 1 KiB per key one way, 4 KiB the other.
    expect(outbound.keyUpdates.sent).toBeGreaterThanOrEqual(60);
    expect(inbound.keyUpdates.sent).toBeGreaterThanOrEqual(15);
    expect(inbound.keyUpdates.sent).toBeLessThan(outbound.keyUpdates.sent / 2);
    expect(inbound.keyUpdates.received).toBe(outbound.keyUpdates.sent);
    expect(outbound.keyUpdates.received).toBe(inbound.keyUpdates.sent);
  });
});

describe('keyring', () => {
  const A = 'key A: sixteen bytes and then some';
  const B = 'key B: sixteen bytes and then some';
  const C = 'key C: sixteen bytes and then some';

  it('adds, uses and removes keys; refuses short keys, a removed primary, and too many keys', () => {
    const ring = new TcpKeyring({ primary: A, accept: [B] });
    expect(ring.size).toBe(2);
    expect(ring.isPrimary(A)).toBe(true);
    ring.use(C);
    expect(ring.isPrimary(C) && ring.has(A) && ring.has(B)).toBe(true);
    ring.remove(A).remove(B);
    expect(ring.size).toBe(1);
    expect(() => ring.remove(C)).toThrow(InvalidOptionError);
    expect(() => ring.add('short')).toThrow(/at least 16 bytes/);
    for (let i = 0; i < 7; i++) ring.add(`extra key number ${i} of the ring`);
    expect(() => ring.add('one key too many for the ring')).toThrow(/at most 8 keys/);
    expect(() => tcp({ secret: { primary: A, accept: [B], extra: 1 } as never })).toThrow(InvalidOptionError);
  });

  it('every method refuses a key that is neither a string nor bytes with InvalidOptionError (has, isPrimary, remove threw a TypeError)', () => {
    const ring = new TcpKeyring({ primary: A, accept: [B] });
    for (const bad of [null, undefined, 5, {}, [A], new ArrayBuffer(32)]) {
      for (const call of [() => ring.has(bad as never), () => ring.isPrimary(bad as never), () => ring.remove(bad as never), () => ring.add(bad as never), () => ring.use(bad as never)]) {
        expect(call, String(bad)).toThrow(InvalidOptionError);
        expect(call).toThrow(expect.objectContaining({ path: 'key', code: 'CONFIG_ERR_INVALID_OPTION' }));
      }
    }
    expect(ring.size).toBe(2);
    expect(ring.has(new Uint8Array(Buffer.from(B))) && ring.isPrimary(A) && !ring.has('short')).toBe(true);
  });

  it('a node accepts every key of its ring and proves with its primary', async () => {
    const w = await listening({ secret: { primary: A, accept: [B] } });
    for (const key of [A, B]) expect((await linkUp(w.listener, node(2, { secret: key }))).outbound.encrypted).toBe(true);
    const err = await failure(node(3, { secret: C }).connect(w.listener.address));
    expect((err as HandshakeRejectedError).reason).toBe('auth');
    // Its own connections prove with the primary: a node that only has B refuses it.
    const onlyB = await node(4, { secret: B }).listen();
    expect(((await failure(node(5, { secret: { primary: A, accept: [B] } }).connect(onlyB.address))) as HandshakeRejectedError).reason).toBe('auth');
    expect((await node(6, { secret: { primary: B, accept: [A] } }).connect(onlyB.address)).remote.nodeNum).toBe(4);
  });

  it('changes to a shared TcpKeyring apply to the next handshake; open links keep their keys', async () => {
    const ring = new TcpKeyring(A);
    const w = await listening({ secret: ring });
    const { outbound, inbound } = await linkUp(w.listener, node(2, { secret: A }));
    ring.use(B).remove(A);
    expect(((await failure(node(3, { secret: A }).connect(w.listener.address))) as HandshakeRejectedError).reason).toBe('auth');
    expect((await node(4, { secret: B }).connect(w.listener.address)).remote.nodeNum).toBe(1);
    const got = collect(inbound, 1);
    outbound.send(Uint8Array.of(9));
    expect([...(await got)[0]!]).toEqual([9]);
  });
});
