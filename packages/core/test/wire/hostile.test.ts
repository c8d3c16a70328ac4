/**
 * The named hostile inputs of TESTING.md ("Hostile input", encoding part),
 * each refused by the pre-scan with the reason that names it.
 */
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from '../../src/errors/index.js';
import {
  decodeBody,
  decodeFrame,
  encodeFrame,
  FrameType,
  type IcsFrame,
  WireStatus,
} from '../../src/ics/wire/index.js';
import { concat, expectDecodeError, hex } from './helpers.js';

/** A Request envelope (channel 1, service 0x10000, id 1, method "m") around raw body bytes. */
function request(body: Uint8Array): Uint8Array {
  return concat(hex('01 00 0001 00010000 00000001 00000000 01 6d'), body);
}

/** Refused both as a body and inside a Request frame, with the same reason. */
function refused(body: Uint8Array, reason: Parameters<typeof expectDecodeError>[1], limits?: object): void {
  expectDecodeError(() => decodeBody(body, limits), reason);
  expectDecodeError(() => decodeFrame(request(body), limits), reason);
}

function nested(levels: number, open = 0x91, inner = 0x90): Uint8Array {
  const b = new Uint8Array(levels).fill(open);
  b[levels - 1] = inner;
  return b;
}

describe('headers that lie about their length', () => {
  const million = '000f4240';
  it.each([
    ['array 32', `dd ${million} 01 02 03`],
    ['array 16', 'dc ffff 01'],
    ['map 32', `df ${million} a1 61 01`],
    ['map 16', 'de ffff a1 61 01'],
    ['str 32', `db ${million} 61 62 63`],
    ['str 16', 'da ffff 61'],
    ['str 8', 'd9 ff 61'],
    ['bin 32', `c6 ${million} 00`],
    ['bin 8', 'c4 10 00'],
    ['ext 32', `c9 ${million} 42 00`],
    ['ext 8', 'c7 40 01 00'],
    ['fixarray', '93 01 02'],
    ['fixmap needing 2 bytes per entry', '82 a1 61 01 a1'],
    ['nested arrays each declaring the rest', 'dd 00000004 dd 00000003 dd 00000002 91'],
  ])('%s declaring more than remains: %s', (_, bytes) => {
    const err = decodeErrorReason(hex(bytes));
    expect(['length', 'truncated']).toContain(err);
  });

  it('a million-element array header with a 3-byte body is refused as "length", not allocated', () => {
    refused(hex('dd 000f4240 01 02 03'), 'length');
    refused(hex('df 000f4240 a1 61 01'), 'length');
    refused(hex('db 000f4240 61 62 63'), 'length');
    refused(hex('c6 ffffffff 00'), 'length');
  });
});

function decodeErrorReason(bytes: Uint8Array): string {
  return expectDecodeError(() => decodeBody(bytes)).reason;
}

describe('deep nesting', () => {
  it('32 levels pass, 33 are refused', () => {
    expect(decodeBody(nested(32))).toBeDefined();
    refused(nested(33), 'depth');
  });

  it('maps nest the same way', () => {
    // {"a": {"a": ... {}}}
    const level = hex('81 a1 61');
    const deep = (n: number) => concat(...Array.from({ length: n - 1 }, () => level), [0x80]);
    expect(decodeBody(deep(32))).toBeDefined();
    refused(deep(33), 'depth');
  });

  it.each([5_000, 200_000])('%i levels are refused without overflowing the stack', (levels) => {
    refused(nested(levels), 'depth');
  });

  it('200,000 levels are refused even when maxDepth is at its highest', () => {
    refused(nested(200_000), 'depth', { maxDepth: 1000 });
  });

  it('maxDepth 1000 builds 1000 levels (msgpackr recursion stays within the stack)', () => {
    let v = decodeBody(nested(1000), { maxDepth: 1000 });
    let depth = 0;
    while (Array.isArray(v)) {
      depth++;
      v = v[0];
    }
    expect(depth).toBe(1000);
  });

  it('maxDepth above the cap is a bad option', () => {
    expect(() => decodeBody(hex('c0'), { maxDepth: 1001 })).toThrow(InvalidOptionError);
  });
});

describe('a million empty maps', () => {
  const million = concat(hex('dd 000f4240'), new Uint8Array(1_000_000).fill(0x80));

  it('is refused by maxElements when the limit is lower', () => {
    refused(million, 'elements', { maxElements: 999_999 });
    refused(million, 'elements', { maxElements: 1000 });
  });

  it('within maxElements it decodes without blowing up', () => {
    const { frame } = decodeFrame(request(million));
    if (frame.type !== FrameType.Request) throw new Error('wrong type');
    expect(Array.isArray(frame.body)).toBe(true);
    expect((frame.body as unknown[]).length).toBe(1_000_000);
    expect((frame.body as unknown[])[999_999]).toEqual({});
  });

  it('map entries count as elements too', () => {
    // [ {a:1}, {a:1} ] = 2 array items + 2 map entries
    const b = hex('92 81 a1 61 01 81 a1 61 01');
    expect(decodeBody(b, { maxElements: 4 })).toEqual([{ a: 1 }, { a: 1 }]);
    refused(b, 'elements', { maxElements: 3 });
  });
});

describe('keys', () => {
  it.each(['__proto__', 'constructor', 'prototype'])('%s is refused, at any depth', (k) => {
    const key = concat([0xa0 | k.length], Buffer.from(k));
    refused(concat([0x81], key, [0x01]), 'key');
    refused(concat(hex('91 81 a1 61 81'), key, hex('81 a1 62 01')), 'key');
    expect(({} as Record<string, unknown>).b).toBeUndefined();
  });

  it.each(['__proto__', 'constructor', 'prototype'])('%s decoded as a value first is still refused as a key (values have their own cache)', (k) => {
    const word = concat([0xa0 | k.length], Buffer.from(k));
    for (let i = 0; i < 3; i++) expect(decodeBody(concat(hex('81 a1 76'), word))).toEqual({ v: k });
    refused(concat([0x81], word, [0x01]), 'key');
  });

  it('non-string keys are refused: int, nil, bin, array, map, float, ext', () => {
    for (const k of ['01', 'c0', 'c4 01 61', '91 01', '80', 'cb 3ff0000000000000', 'd4 00 00']) {
      refused(hex(`81 ${k} 01`), 'key');
    }
  });

  it('near misses are ordinary keys', () => {
    expect(decodeBody(concat([0x81, 0xa8], Buffer.from('__proto_'), [0x01]))).toEqual({ __proto_: 1 });
    expect(decodeBody(concat([0x81, 0xab], Buffer.from('Constructor'), [0x01]))).toEqual({ Constructor: 1 });
  });
});

describe('integers beyond 2^53', () => {
  it.each([
    ['uint64 2^53', 'cf 0020000000000000'],
    ['uint64 max', 'cf ffffffffffffffff'],
    ['int64 -2^53', 'd3 ffe0000000000000'],
    ['int64 min', 'd3 8000000000000000'],
    ['int64 2^53', 'd3 0020000000000000'],
  ])('%s is refused', (_, bytes) => {
    refused(hex(bytes), 'integer');
  });

  it('the safe edges decode as exact numbers', () => {
    expect(decodeBody(hex('cf 001fffffffffffff'))).toBe(2 ** 53 - 1);
    expect(decodeBody(hex('d3 ffe0000000000001'))).toBe(-(2 ** 53 - 1));
    expect(decodeBody(hex('d3 ffffffffffffffff'))).toBe(-1);
    expect(decodeBody(hex('cf 0000000100000000'))).toBe(2 ** 32);
  });
});

describe('invalid UTF-8', () => {
  const bad = [
    ['lone continuation', '80'],
    ['overlong NUL', 'c0 80'],
    ['overlong 3-byte', 'e0 80 af'],
    ['overlong 4-byte', 'f0 80 80 af'],
    ['surrogate', 'ed a0 80'],
    ['beyond U+10FFFF', 'f4 90 80 80'],
    ['f5 lead', 'f5 80 80 80'],
    ['cut sequence', 'e2 82'],
    ['ff', 'ff'],
  ] as const;

  it.each(bad)('%s in a string value is refused', (_, bytes) => {
    const s = hex(bytes);
    refused(concat([0xa0 | s.length], s), 'utf8');
    // long enough for the native validator
    const long = concat(new Uint8Array(100).fill(0x61), s);
    refused(concat([0xd9, long.length], long), 'utf8');
  });

  it.each(bad)('%s in a map key is refused', (_, bytes) => {
    const s = hex(bytes);
    refused(concat([0x81, 0xa0 | s.length], s, [0x01]), 'utf8');
  });

  it.each(bad)('%s in a method name is refused', (_, bytes) => {
    const s = hex(bytes);
    expectDecodeError(() => decodeFrame(concat(hex('03 00 0001 00010000 00000001'), [s.length], s, [0xc0])), 'utf8');
  });

  it('well-formed multi-byte text passes, short and long', () => {
    const s = 'héllo wörld ✓ 𝄞 日本';
    expect(decodeBody(concat([0xd9, Buffer.byteLength(s)], Buffer.from(s)))).toBe(s);
    const long = s.repeat(20);
    expect(decodeBody(concat(hex('da'), [Buffer.byteLength(long) >> 8, Buffer.byteLength(long) & 0xff], Buffer.from(long)))).toBe(long);
  });

  it('maxStringBytes bounds strings', () => {
    refused(concat([0xa5], Buffer.from('hello')), 'string-length', { maxStringBytes: 4 });
    expect(decodeBody(concat([0xa5], Buffer.from('hello')), { maxStringBytes: 5 })).toBe('hello');
  });
});

describe('extensions msgpackr would build unless told not to', () => {
  const permissive = new Packr({ moreTypes: true, structuredClone: true, useRecords: true, useBigIntExtension: true });
  class Point {
    constructor(
      readonly x: number,
      readonly y: number,
    ) {}
  }
  const shared = { s: 1 };
  const cases: [string, unknown, Packr][] = [
    ['Date', new Date(1_700_000_000_000), new Packr({ useRecords: false })],
    ['Date with ms', new Date(1_700_000_000_123), new Packr({ useRecords: false })],
    ['RegExp', /a+b/gi, permissive],
    ['Error', new TypeError('boom'), permissive],
    ['Set', new Set([1, 2]), permissive],
    ['Map with non-string keys', new Map([[1, 'a']]), permissive],
    ['Float64Array', new Float64Array([1.5]), permissive],
    ['Int32Array', new Int32Array([1]), permissive],
    ['Uint8Array under moreTypes', Uint8Array.of(1), permissive],
    ['ArrayBuffer', new ArrayBuffer(4), permissive],
    ['BigInt beyond 64 bits', 2n ** 100n, permissive],
    ['negative BigInt beyond 64 bits', -(2n ** 70n), permissive],
    ['BigInt beyond 2^53 in 64 bits', 2n ** 60n, permissive],
    ['record', { x: 1, y: 2 }, new Packr({ useRecords: true })],
    ['class instance as record', new Point(1, 2), new Packr({ useRecords: true })],
    ['structured-clone reference', [shared, shared], permissive],
    ['undefined', [undefined], new Packr({ useRecords: false })],
    ['bundled strings', { a: 'x'.repeat(10), b: 'y'.repeat(10) }, new Packr({ useRecords: false, bundleStrings: true })],
  ];

  it.each(cases)('%s is refused', (_, value, packr) => {
    const bytes = Uint8Array.from(packr.pack(value));
    const err = expectDecodeError(() => decodeBody(bytes));
    expect(['extension', 'key', 'integer']).toContain(err.reason);
    expectDecodeError(() => decodeFrame(request(bytes)));
  });

  it('the 0xc1 token is refused', () => {
    refused(hex('c1'), 'token');
    refused(hex('91 c1'), 'token');
  });

  it('a 0x42 extension of the wrong size is not a BulkRef', () => {
    refused(hex('d4 42 00'), 'extension');
    refused(hex('c7 0b 42 0000000000000000000000'), 'extension');
    refused(hex('c7 0c 42 00000001 0020000000000000'), 'extension'); // length beyond 2^53 - 1
  });

  it('more BulkRefs than maxBulkRefs are refused before any is built', () => {
    const ref = 'c7 0c 42 00000001 0000000000000001';
    const refs = (n: number): Uint8Array => hex(`dc ${n.toString(16).padStart(4, '0')} ${Array(n).fill(ref).join(' ')}`);
    expect((decodeBody(refs(1024)) as unknown[]).length).toBe(1024);
    refused(refs(1025), 'bulk-refs');
    refused(refs(3), 'bulk-refs', { maxBulkRefs: 2 });
    expect(() => decodeBody(refs(1), { maxBulkRefs: -1 })).toThrow(InvalidOptionError);
  });

  it('an allowed extension goes to msgpackr (opt-in: a Date)', () => {
    const bytes = Uint8Array.from(new Packr({ useRecords: false }).pack(new Date(1_700_000_000_000)));
    expect(decodeBody(bytes, { allowedExtensions: [-1] })).toEqual(new Date(1_700_000_000_000));
  });

  it('an allowed extension msgpackr cannot read is still a typed error', () => {
    expectDecodeError(() => decodeBody(hex('d4 05 00'), { allowedExtensions: [5] }), 'unreadable');
  });

  it('extensions that change how msgpackr reads what follows can never be allowed', () => {
    for (const t of [0x72, 0x62, 0x65, 0x69, 0x70, 0x73, 0x78]) {
      expect(() => decodeBody(hex('c0'), { allowedExtensions: [t] })).toThrow(InvalidOptionError);
    }
    expect(() => decodeBody(hex('c0'), { allowedExtensions: [200] })).toThrow(InvalidOptionError);
  });
});

describe('truncation and trailing bytes', () => {
  const frames: IcsFrame[] = [
    {
      type: FrameType.Request,
      channel: 7,
      service: 0x7_0003,
      method: 'compute',
      priority: true,
      id: 42,
      timeoutMs: 1000,
      body: { args: [1, 'two', { three: 3.5 }, Uint8Array.of(4, 4)], long: 'é'.repeat(40), big: 2 ** 40 },
    },
    { type: FrameType.OneWay, channel: 0, service: 5, id: 1, method: 'note', priority: false, body: ['x', null, true] },
    { type: FrameType.Response, id: 1, status: WireStatus.OK, body: { ok: [1, 2, 3] } },
    { type: FrameType.Response, id: 1, status: WireStatus.INTERNAL, body: { message: 'broke', details: { at: 3 } } },
    { type: FrameType.Cancel, id: 3, status: WireStatus.CANCELLED },
    { type: FrameType.Credit, channel: 9, messages: 1, bytes: 2 },
    { type: FrameType.BulkAbort, stream: 4 },
  ];

  it.each(frames.map((f) => [f.type, f] as const))('frame type %i: every proper prefix is refused', (_, frame) => {
    const bytes = Uint8Array.from(encodeFrame(frame));
    for (let n = 0; n < bytes.length; n++) {
      expectDecodeError(() => decodeFrame(bytes.subarray(0, n)));
    }
    expect(decodeFrame(bytes).frame.type).toBe(frame.type);
  });

  it('a BulkChunk cut inside its header is refused; cut inside its data it is a shorter chunk', () => {
    const bytes = Uint8Array.from(
      encodeFrame({ type: FrameType.BulkChunk, stream: 1, offset: 8, last: false, data: Uint8Array.of(1, 2, 3) }),
    );
    for (let n = 0; n < 16; n++) expectDecodeError(() => decodeFrame(bytes.subarray(0, n)), 'truncated');
    const cut = decodeFrame(bytes.subarray(0, 17)).frame;
    expect(cut.type === FrameType.BulkChunk && Array.from(cut.data)).toEqual([1]);
  });

  it.each(frames.map((f) => [f.type, f] as const))('frame type %i: a trailing byte is refused', (_, frame) => {
    const bytes = concat(encodeFrame(frame), [0x00]);
    expectDecodeError(() => decodeFrame(bytes), 'trailing-bytes');
  });

  it('two bodies glued together are refused', () => {
    refused(hex('01 02'), 'trailing-bytes');
    refused(hex('91 01 91 01'), 'trailing-bytes');
  });

  it('an empty body is refused', () => {
    refused(new Uint8Array(0), 'truncated');
  });
});
