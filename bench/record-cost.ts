/**
 * What one encrypted record costs on this machine (`npx tsx bench/record-cost.ts`,
 * ~20 s, not part of `npm run bench`): CPU per seal or open for AES-256-GCM
 * (what transport-tcp uses) and ChaCha20-Poly1305 (the alternative Node 20
 * offers), each building a cipher object per record as Node's API requires;
 * then the record layer itself, sealing and opening write batches under the
 * protocol-2 (64 KiB) and protocol-3 (257 KiB) record limits, alternating
 * in the same run. Medians of 7 rounds, CPU time of this process.
 */
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes } from 'node:crypto';
import { recordMaxPlaintext } from '../packages/transport-tcp/src/constants.js';
import { RecordOpener, RecordSealer } from '../packages/transport-tcp/src/record.js';

const ROUNDS = 7;
const key = randomBytes(32);
const keyObject = createSecretKey(key);
const median = (a: number[]): number => [...a].sort((p, q) => p - q)[a.length >> 1]!;

function cpuMicros(fn: () => void, n: number): number {
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) fn();
  const u = process.cpuUsage(c0);
  return (u.user + u.system) / n;
}

/** µs per seal or open of one record of `size` bytes (a seal and an open per iteration). */
function cipherCost(cipher: 'aes-256-gcm' | 'chacha20-poly1305', size: number, n: number): number {
  const data = randomBytes(size);
  const nonce = Buffer.alloc(12);
  const aad = Buffer.alloc(4);
  let counter = 0;
  // Both AEADs take the same options; the typings overload on GCM names only.
  const name = cipher as 'aes-256-gcm';
  return (
    cpuMicros(() => {
      nonce.writeUInt32BE(counter++, 8);
      const c = createCipheriv(name, keyObject, nonce, { authTagLength: 16 });
      c.setAAD(aad);
      const sealed = c.update(data);
      c.final();
      const tag = c.getAuthTag();
      const d = createDecipheriv(name, keyObject, nonce, { authTagLength: 16 });
      d.setAAD(aad);
      d.update(sealed);
      d.setAuthTag(tag);
      d.final();
    }, n) / 2
  );
}

/** µs per seal + open of one write batch, received in 64 KiB socket reads as libuv delivers them; and records per batch. */
function batchCost(version: number, batch: Uint8Array[], n: number): { us: number; records: number } {
  const limit = recordMaxPlaintext(version);
  const sealer = new RecordSealer(key, 2 ** 32, 2 ** 24, limit);
  const opener = new RecordOpener(key, 2 ** 24, limit);
  const us = cpuMicros(() => {
    const out: Uint8Array[] = [];
    sealer.seal(batch, out);
    const wire = out.length === 1 ? out[0]! : Buffer.concat(out);
    for (let at = 0; at < wire.byteLength; at += 65536) opener.open(wire.subarray(at, at + 65536), () => {});
  }, n);
  return { us, records: opener.completed / n };
}

const frame = (size: number): Uint8Array => new Uint8Array(4 + size).fill(size & 0xff); // a frame with its header
const ciphers = [
  ['aes-256-gcm', 133, 20_000],
  ['chacha20-poly1305', 133, 20_000],
  ['aes-256-gcm', 65_540, 1_000],
  ['chacha20-poly1305', 65_540, 1_000],
] as const;
const batches: Array<[string, Uint8Array[], number]> = [
  ['one small frame (133 B)', [frame(129)], 20_000],
  ['one 64 KiB frame', [frame(65_536)], 1_000],
  ['four 64 KiB frames', [frame(65_536), frame(65_536), frame(65_536), frame(65_536)], 300],
  ['one 256 KiB bulk chunk', [frame(262_144)], 300],
];

const cipherRuns = new Map<string, number[]>();
const batchRuns = new Map<string, { us: number[]; records: number }>();
for (let round = 0; round < ROUNDS; round++) {
  for (const [cipher, size, n] of round % 2 ? [...ciphers].reverse() : ciphers) {
    const name = `${cipher}, ${size} B`;
    cipherRuns.set(name, [...(cipherRuns.get(name) ?? []), cipherCost(cipher, size, n)]);
  }
  for (const [what, batch, n] of batches) {
    for (const version of round % 2 ? [3, 2] : [2, 3]) {
      const name = `${what}, protocol ${version}`;
      const r = batchCost(version, batch, n);
      batchRuns.set(name, { us: [...(batchRuns.get(name)?.us ?? []), r.us], records: r.records });
    }
  }
}
console.log('µs of CPU per seal or open of one record (a cipher object each):');
for (const [name, us] of cipherRuns) console.log(`  ${name.padEnd(32)} ${median(us).toFixed(1)}`);
console.log('µs of CPU per seal + open of one write batch (record layer):');
for (const [name, r] of batchRuns) console.log(`  ${name.padEnd(40)} ${median(r.us).toFixed(1)}  (${r.records} record${r.records === 1 ? '' : 's'})`);
