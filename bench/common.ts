/**
 * Shared by the bench client (run.ts) and server (server.ts): payloads, and
 * the baseline's wire code, which is plain `node:net` written as well as
 * plain code can be, so that the ICS/baseline ratio is honest:
 *
 * - one syscall per tick: frames sent in one tick are staged and written on
 *   `process.nextTick` (small frames copied into a reused 64 KiB slab, large
 *   ones written as they are behind their header, corked into one writev);
 * - msgpackr encodes straight behind a reserved header (RESERVE_START_SPACE):
 *   no second buffer per frame;
 * - a tight parser: frames inside one socket chunk are views of it, a frame
 *   spanning chunks is copied once into a buffer of exactly its size.
 *
 * Baseline RPC frame: u32 length (of what follows), u8 kind, u32 id, msgpack
 * body. Baseline bulk frame: u32 length, raw bytes (no msgpack); the ack is
 * an empty frame.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'node:net';
import { Packr, RESERVE_START_SPACE, Unpackr } from 'msgpackr';

/** The ICS service the bench calls (channel `default`, subservice 1). */
/** A row of bench/results.json, as every suite writes it (`S`: the suite's name). */
export interface ResultRow<S extends string = string> {
  suite: S;
  name: string;
  unit: string;
  better: 'lower' | 'higher';
  value: number;
  baseline: number;
  ratio: number;
  /** Conditions of the measurement (e.g. the machine's load), when a suite records them. */
  note?: string;
}

export const BENCH_SERVICE = { channel: 'default', subservice: 1 } as const;
export const CLUSTER = 'bench';
export const SERVER_NODE = 1;
export const CLIENT_NODE = 2;
/** Raised on both sides for the inline 1 MiB "bulk" row (ICS maxMessageSize and tcp maxFrameSize). */
export const MAX_MESSAGE = 4 * 1024 * 1024;

/** A ~100-byte RPC payload (msgpack-encoded: see SMALL_ENCODED_BYTES). */
export const SMALL = {
  key: 'orders/2024/000123',
  user: 'ada@example.org',
  qty: 3,
  price: 19.99,
  tags: ['priority', 'eu'],
  note: 'ring twice',
};

export const KiB64 = makeBytes(64 * 1024, 1);
export const MiB1 = makeBytes(1024 * 1024, 2);

function makeBytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

// ---------------------------------------------------------------------------
// Baseline wire code

export const Kind = { Call: 1, Reply: 2, OneWay: 3, Reset: 4, WaitCount: 5 } as const;
/** u32 length + u8 kind + u32 id. */
const HDR = 9;
const COALESCE_MAX = 16 * 1024;
const SLAB = 64 * 1024;
/** Like transport-tcp's default highWaterMark. */
export const HIGH_WATER = 2 * 1024 * 1024;

// Plain msgpack (no records / structures extension), as ICS puts on the wire.
export const packr = new Packr({ useRecords: false });
export const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

export const SMALL_ENCODED_BYTES = packr.pack(SMALL).length;

/** Write side of a baseline connection: coalesces one tick's frames into one write. */
export class FrameWriter {
  private slab = Buffer.allocUnsafeSlow(SLAB);
  private pos = 0;
  private sealed = 0;
  private chunks: Buffer[] = [];
  private staged = 0;
  private scheduled = false;

  constructor(private readonly socket: Socket) {}

  /** A msgpack frame; false once HIGH_WATER bytes wait to be written. */
  sendPacked(kind: number, id: number, body: unknown): boolean {
    const b = packr.pack(body, RESERVE_START_SPACE | HDR) as Buffer;
    b.writeUInt32BE(b.length - 4, 0);
    b[4] = kind;
    b.writeUInt32BE(id, 5);
    if (b.length <= COALESCE_MAX) this.copyIn(b);
    else {
      this.seal();
      this.chunks.push(b); // msgpackr never writes over a region it returned
    }
    return this.after(b.length);
  }

  /** A raw frame (u32 length + bytes), data written without a copy. */
  sendRaw(data: Uint8Array): boolean {
    const at = this.reserve(4);
    this.slab.writeUInt32BE(data.byteLength, at);
    if (data.byteLength <= COALESCE_MAX) this.copyIn(data);
    else {
      this.seal();
      this.chunks.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    }
    return this.after(4 + data.byteLength);
  }

  /** Resolves when the write side is below the high-water mark again. */
  drained(): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.socket.destroyed) resolve();
        else if (this.socket.writableNeedDrain) this.socket.once('drain', check);
        else resolve();
      };
      // After this tick's flush: then writableNeedDrain tells the truth.
      process.nextTick(() => process.nextTick(check));
    });
  }

  private after(n: number): boolean {
    this.staged += n;
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.flush);
    }
    return this.socket.writableLength + this.staged < HIGH_WATER;
  }

  private copyIn(b: Uint8Array): void {
    const at = this.reserve(b.byteLength);
    this.slab.set(b, at);
  }

  private reserve(n: number): number {
    if (this.pos + n > this.slab.length) {
      this.seal();
      this.slab = Buffer.allocUnsafeSlow(Math.max(SLAB, n));
      this.pos = 0;
      this.sealed = 0;
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  private seal(): void {
    if (this.pos > this.sealed) {
      this.chunks.push(this.slab.subarray(this.sealed, this.pos));
      this.sealed = this.pos;
    }
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    this.seal();
    const chunks = this.chunks;
    this.staged = 0;
    if (chunks.length === 0) return;
    this.chunks = [];
    const s = this.socket;
    if (s.destroyed) return;
    if (chunks.length === 1) s.write(chunks[0]!);
    else {
      s.cork();
      for (const c of chunks) s.write(c);
      s.uncork();
    }
    // Written through to the kernel at once: the slab is free again.
    if (s.writableLength === 0) {
      this.pos = 0;
      this.sealed = 0;
    }
  };
}

/** Read side: u32-length-prefixed frames, handed out without the length. */
export class FrameParser {
  private readonly head = Buffer.alloc(4);
  private headFill = 0;
  private body: Buffer | undefined;
  private bodyFill = 0;

  constructor(private readonly onFrame: (frame: Buffer) => void) {}

  push(chunk: Buffer): void {
    const n = chunk.length;
    let p = 0;
    while (p < n) {
      if (this.body !== undefined) {
        const take = Math.min(this.body.length - this.bodyFill, n - p);
        chunk.copy(this.body, this.bodyFill, p, p + take);
        this.bodyFill += take;
        p += take;
        if (this.bodyFill === this.body.length) {
          const b = this.body;
          this.body = undefined;
          this.onFrame(b);
        }
        continue;
      }
      let len: number;
      if (this.headFill === 0 && n - p >= 4) {
        len = chunk.readUInt32BE(p);
        p += 4;
      } else {
        while (this.headFill < 4 && p < n) this.head[this.headFill++] = chunk[p++]!;
        if (this.headFill < 4) return;
        this.headFill = 0;
        len = this.head.readUInt32BE(0);
      }
      if (n - p >= len) {
        this.onFrame(chunk.subarray(p, p + len));
        p += len;
      } else {
        this.body = Buffer.allocUnsafe(len);
        this.bodyFill = 0;
      }
    }
  }
}

/** A baseline frame's parts (the parser's frame, without its length). */
export function kindOf(frame: Buffer): number {
  return frame[0]!;
}
export function idOf(frame: Buffer): number {
  return frame.readUInt32BE(1);
}
export function bodyOf(frame: Buffer): unknown {
  return unpackr.unpack(frame.subarray(5));
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// ---------------------------------------------------------------------------
// Shared by the bench servers (server.ts, encryption.ts) and clients (run.ts, encryption.ts)

/** One-way messages a bench server counted; `waitCount(n)` settles once n have arrived. */
export class OneWayCounter {
  private count = 0;
  private waiters: { n: number; resolve: (n: number) => void }[] = [];

  counted(): void {
    this.count++;
    if (this.waiters.length === 0) return;
    const due = this.waiters.filter((w) => this.count >= w.n);
    this.waiters = this.waiters.filter((w) => this.count < w.n);
    for (const w of due) w.resolve(this.count);
  }

  reset(): number {
    this.count = 0;
    return 0;
  }

  waitCount(n: number): number | Promise<number> {
    if (this.count >= n) return this.count;
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }
}

/** The handlers of the bench service on an ICS server. */
export function benchHandlers(counter: OneWayCounter): Record<'echo' | 'note' | 'reset' | 'waitCount' | 'sink', (args: unknown) => unknown> {
  return {
    echo: (args) => args,
    note: () => counter.counted(),
    reset: () => counter.reset(),
    waitCount: (n) => counter.waitCount(n as number),
    sink: (chunk) => (chunk as Uint8Array).byteLength,
  };
}

/** What the one-way measurement drives. */
export interface OneWayTarget {
  /** A one-way message; false when the sender should wait for `drained()`. */
  trySend(payload: unknown): boolean;
  drained(): Promise<void>;
  /** Zero the server's counter. */
  reset(): Promise<unknown>;
  /** Resolves once the server has counted n messages. */
  waitCount(n: number): Promise<unknown>;
}

/** What the ICS rows of run.ts drive, for each system they compare. */
export interface BenchSystem extends OneWayTarget {
  readonly name: string;
  /** Echo RPC. */
  call(payload: unknown): Promise<unknown>;
  /** One 1 MiB chunk to the sink; resolves when the server has it. */
  sink(chunk: Uint8Array): Promise<unknown>;
  close(): Promise<void>;
}

/**
 * One-way messages as fast as backpressure allows, counted by the server:
 * the clock stops when the server has counted every message sent.
 */
export async function oneWayRate(target: OneWayTarget, seconds: number, payload: unknown, batch = 1024): Promise<{ rate: number; sent: number }> {
  await target.reset();
  let sent = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  while (performance.now() < end) {
    let ok = true;
    for (let i = 0; i < batch && ok; i++) {
      ok = target.trySend(payload);
      sent++;
    }
    if (!ok) await target.drained();
    else await new Promise((r) => setImmediate(r));
  }
  await target.waitCount(sent);
  return { rate: sent / ((performance.now() - t0) / 1000), sent };
}

/** `inFlight` closed-loop callers of `op`; completed operations per second. */
export async function closedLoopRate(seconds: number, inFlight: number, op: () => Promise<unknown>): Promise<number> {
  let done = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      await op();
      done++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return done / ((performance.now() - t0) / 1000);
}

/**
 * The rows of `file` (a results.json; none if it does not exist yet) with
 * `rows` in place of those with the same suite and name; new ones go last.
 */
export function mergedRows<R extends { suite: string; name: string }>(file: string, rows: readonly R[]): R[] {
  let old: R[] = [];
  try {
    old = JSON.parse(readFileSync(file, 'utf8')) as R[];
  } catch {
    /* no earlier results */
  }
  const key = (r: R): string => `${r.suite}\u0000${r.name}`;
  const fresh = new Map(rows.map((r) => [key(r), r]));
  const kept = new Set(old.map(key));
  return [...old.map((r) => fresh.get(key(r)) ?? r), ...rows.filter((r) => !kept.has(key(r)))];
}

/** Write `rows` into bench/results.json in place of the rows with the same suite and name (the others stay; new ones go last). */
export function mergeResultRows(file: string, rows: readonly ResultRow[]): void {
  writeFileSync(file, JSON.stringify(mergedRows(file, rows), null, 2) + '\n');
}

/**
 * Bundle `entry` (a TypeScript file) into `outfile` as the published packages
 * are built: esbuild, ESM, node20, no keepNames (tsx's keepNames wraps every
 * named closure); @clusterinfra/* resolve to the sources through the
 * tsconfig paths (`options.tsconfig`: another tsconfig, e.g. one pointing at
 * another source tree), dependencies stay packages. Writes a .gitignore beside it.
 */
export async function bundleLikePublished(entry: string, outfile: string, options: { tsconfig?: string; sourcemap?: boolean } = {}): Promise<void> {
  const { build } = await import('esbuild');
  const dir = dirname(outfile);
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/.gitignore`, '*\n');
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: options.sourcemap ?? false,
    keepNames: false,
    tsconfig: options.tsconfig ?? fileURLToPath(new URL('../tsconfig.json', import.meta.url)),
    external: ['msgpackr', 'zod', 'zod/*', 'eventemitter3', 'vitest'],
    logLevel: 'warning',
  });
}
