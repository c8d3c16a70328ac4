/**
 * Byte-level checks of the decoder (decode.ts) and the frame reader: UTF-8
 * well-formedness and the map keys that could reach an object's prototype.
 */
import { isUtf8 } from 'node:buffer';

const KEY_PROTO = Uint8Array.from(Buffer.from('__proto__'));
const KEY_PROTOTYPE = Uint8Array.from(Buffer.from('prototype'));
const KEY_CONSTRUCTOR = Uint8Array.from(Buffer.from('constructor'));

function bytesEqual(b: Uint8Array, p: number, word: Uint8Array): boolean {
  for (let i = 0; i < word.length; i++) if (b[p + i] !== word[i]) return false;
  return true;
}

/** True when the key b[p, p+n) is `__proto__`, `prototype` or `constructor`. */
export function isForbiddenKey(b: Uint8Array, p: number, n: number): boolean {
  if (n === 9) return bytesEqual(b, p, KEY_PROTO) || bytesEqual(b, p, KEY_PROTOTYPE);
  if (n === 11) return bytesEqual(b, p, KEY_CONSTRUCTOR);
  return false;
}

/** Longer strings go to Node's native (simdutf) validator. */
const NATIVE_UTF8_FROM = 64;

/**
 * True when b[p, p+n) is well-formed UTF-8 (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF).
 */
export function isWellFormedUtf8(b: Uint8Array, p: number, n: number): boolean {
  if (n >= NATIVE_UTF8_FROM) return isUtf8(b.subarray(p, p + n));
  const end = p + n;
  while (p < end) {
    const c = b[p]!;
    if (c < 0x80) {
      p++;
      continue;
    }
    if (c < 0xc2) return false; // continuation byte, or overlong C0/C1
    if (c < 0xe0) {
      if (p + 1 >= end || (b[p + 1]! & 0xc0) !== 0x80) return false;
      p += 2;
    } else if (c < 0xf0) {
      if (p + 2 >= end) return false;
      const c1 = b[p + 1]!;
      if ((c1 & 0xc0) !== 0x80 || (b[p + 2]! & 0xc0) !== 0x80) return false;
      if (c === 0xe0 && c1 < 0xa0) return false; // overlong
      if (c === 0xed && c1 > 0x9f) return false; // surrogate
      p += 3;
    } else if (c < 0xf5) {
      if (p + 3 >= end) return false;
      const c1 = b[p + 1]!;
      if ((c1 & 0xc0) !== 0x80 || (b[p + 2]! & 0xc0) !== 0x80 || (b[p + 3]! & 0xc0) !== 0x80) return false;
      if (c === 0xf0 && c1 < 0x90) return false; // overlong
      if (c === 0xf4 && c1 > 0x8f) return false; // above U+10FFFF
      p += 4;
    } else return false;
  }
  return true;
}
