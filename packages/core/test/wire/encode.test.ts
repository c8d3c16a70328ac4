/**
 * The sending side refuses what is not plain data, and envelope fields out
 * of range, with IcsEncodeError naming where the problem is; decodeFrame
 * refuses the same field errors arriving from a peer.
 */
import { describe, expect, it } from 'vitest';
import { InvalidOptionError, NotSerializableError } from '../../src/errors/index.js';
import {
  BulkRef,
  decodeBody,
  decodeFrame,
  encodeBody,
  encodeFrame,
  FrameType,
  IcsEncodeError,
  type IcsFrame,
  WireStatus,
} from '../../src/ics/wire/index.js';
import { concat, expectDecodeError, hex } from './helpers.js';

function encodeErrorOf(fn: () => unknown): IcsEncodeError {
  try {
    fn();
  } catch (e) {
    if (e instanceof IcsEncodeError) {
      expect(e.code).toBe('ICS_ERR_NOT_SERIALIZABLE');
      expect(e).toBeInstanceOf(NotSerializableError);
      return e;
    }
    throw new Error(`expected IcsEncodeError, got ${String(e)}`, { cause: e });
  }
  throw new Error('expected IcsEncodeError, but encoding succeeded');
}

class WithMethods {
  x = 1;
  get double(): number {
    return this.x * 2;
  }
  hello(): string {
    return 'hi';
  }
}

describe('encoding refuses what is not plain data', () => {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const sparse = [1, , 3];
  const cases: [string, unknown][] = [
    ['Map', new Map([['a', 1]])],
    ['Set', new Set([1])],
    ['Date', new Date(0)],
    ['RegExp', /x/],
    ['Error', new Error('e')],
    ['class instance with methods', new WithMethods()],
    ['function', () => 1],
    ['symbol', Symbol('s')],
    ['BigInt', 1n],
    ['undefined at the top', undefined],
    ['undefined in an array', [undefined]],
    ['hole in an array', sparse],
    ['Float64Array', new Float64Array(1)],
    ['Uint8ClampedArray', new Uint8ClampedArray(1)],
    ['ArrayBuffer', new ArrayBuffer(1)],
    ['DataView', new DataView(new ArrayBuffer(1))],
    ['boxed Number', Object(1)],
    ['Promise', Promise.resolve(1)],
    ['cycle', cyclic],
    ['lone surrogate (short)', '\ud800x'],
    ['lone surrogate (long)', 'x'.repeat(100) + '\udc00'],
    ['lone surrogate key', { ['\ud800']: 1 }],
    ['__proto__ own key', JSON.parse('{"__proto__": 1}')],
    ['constructor key', { constructor: 1 }],
    ['prototype key', { prototype: 1 }],
    ['BulkRef with a bad stream', new BulkRef(-1, 0)],
    ['BulkRef with a fractional length', new BulkRef(1, 0.5)],
    ['BulkRef with an unsafe length', new BulkRef(1, 2 ** 53)],
  ];

  it.each(cases)('%s', (_, value) => {
    encodeErrorOf(() => encodeBody(value));
    encodeErrorOf(() =>
      encodeFrame({ type: FrameType.OneWay, channel: 0, service: 0, id: 1, method: 'm', priority: false, body: value }),
    );
  });

  it('the error names the path of the bad value', () => {
    const err = encodeErrorOf(() => encodeBody({ a: [1, { b: new Date(0) }], 'odd key': 1 }));
    expect(err.path).toBe('body.a[1].b');
    expect(encodeErrorOf(() => encodeBody({ 'odd key': [Symbol('x')] })).path).toBe('body["odd key"][0]');
  });

  it('nesting deeper than maxDepth is refused, and the limit is adjustable', () => {
    let v: unknown = [];
    for (let i = 1; i < 32; i++) v = [v];
    expect(() => encodeBody(v)).not.toThrow(); // 32 levels
    encodeErrorOf(() => encodeBody([v]));
    expect(() => encodeBody([v], { maxDepth: 33 })).not.toThrow();
    expect(decodeBody(encodeBody(v))).toEqual(v); // and the decoder takes what the encoder made
    expect(() => encodeBody(v, { maxDepth: 5000 })).toThrow(InvalidOptionError);
  });

  it('a failed encode leaves no partial frame behind', () => {
    encodeErrorOf(() => encodeBody({ a: 'x'.repeat(1000), b: new Date() }));
    const ok = encodeBody({ c: 1 });
    expect(ok).toEqual(hex('81 a1 63 01'));
  });

  it('a getter that re-enters the encoder is refused, and the encoder recovers', () => {
    const evil = {
      get x() {
        return encodeBody(1);
      },
    };
    expect(() => encodeBody(evil)).toThrow(IcsEncodeError);
    expect(encodeBody([1])).toEqual(hex('91 01'));
  });
});

describe('envelope fields out of range', () => {
  const req = {
    type: FrameType.Request,
    channel: 1,
    service: 0x1_0000,
    method: 'm',
    priority: false,
    id: 1,
    timeoutMs: 0,
    body: null,
  } as const;
  const cases: [string, string, IcsFrame][] = [
    ['channel above 65535', 'channel', { ...req, channel: 65536, service: 0x1_0000_0000 - 1 }],
    ['negative channel', 'channel', { ...req, channel: -1 }],
    ['service on another channel', 'service', { ...req, service: 0x2_0000 }],
    ['service above 2^32-1', 'service', { ...req, service: 2 ** 32 }],
    ['empty method', 'method', { ...req, method: '' }],
    ['method of 256 bytes', 'method', { ...req, method: 'é'.repeat(128) }],
    ['method with a lone surrogate', 'method', { ...req, method: '\ud800' }],
    ['id 0', 'id', { ...req, id: 0 }],
    ['id 2^32', 'id', { ...req, id: 2 ** 32 }],
    ['fractional timeout', 'timeoutMs', { ...req, timeoutMs: 1.5 }],
    ['negative timeout', 'timeoutMs', { ...req, timeoutMs: -1 }],
    ['unknown status', 'status', { type: FrameType.Response, id: 1, status: 99 as 0, body: null }],
    ['error Response without a message', 'body', { type: FrameType.Response, id: 1, status: WireStatus.INTERNAL, body: {} }],
    [
      'error Response with an extra field',
      'body',
      { type: FrameType.Response, id: 1, status: WireStatus.INTERNAL, body: { message: 'x', stack: 'at …' } },
    ],
    ['Cancel with OK', 'status', { type: FrameType.Cancel, id: 1, status: WireStatus.OK as 1 }],
    ['Credit above u32', 'bytes', { type: FrameType.Credit, channel: 0, messages: 0, bytes: 2 ** 32 }],
    ['BulkChunk unsafe offset', 'offset', { type: FrameType.BulkChunk, stream: 0, offset: 2 ** 53, last: false, data: new Uint8Array() }],
    ['BulkChunk without data', 'data', { type: FrameType.BulkChunk, stream: 0, offset: 0, last: false, data: [] as never }],
    ['BulkAbort negative stream', 'stream', { type: FrameType.BulkAbort, stream: -1 }],
    ['unknown type', 'type', { type: 9 } as never],
    ['Refused with an unknown reason', 'reason', { type: FrameType.Refused, reason: 4 } as never],
  ];
  it.each(cases)('%s', (_, path, frame) => {
    expect(encodeErrorOf(() => encodeFrame(frame)).path).toBe(path);
  });

  it('a 255-byte method is the longest allowed', () => {
    const f = decodeFrame(encodeFrame({ ...req, method: 'é'.repeat(127) + 'a' })).frame;
    expect(f.type === FrameType.Request && f.method.length).toBe(128);
  });
});

describe('decodeFrame refuses envelope fields out of range', () => {
  const bad: [string, string, string][] = [
    ['unknown type 0', 'frame-type', '00 00 0000 00000001'],
    ['unknown type 9', 'frame-type', '09 00 0000 00000001'],
    ['Refused too long', 'trailing-bytes', '08 00 0001 00000001'],
    ['Refused with an unknown reason', 'field', '08 00 0004'],
    ['Refused with flags', 'field', '08 80 0001'],
    ['unknown type 255', 'frame-type', 'ff 00'],
    ['one byte', 'truncated', '01'],
    ['empty', 'truncated', ''],
    ['Request with undefined flag bits', 'field', '01 04 0001 00010000 00000001 00000000 01 6d c0'],
    ['Request with service on another channel', 'field', '01 00 0001 00020000 00000001 00000000 01 6d c0'],
    ['Request with id 0', 'field', '01 00 0001 00010000 00000000 00000000 01 6d c0'],
    ['Request with empty method', 'field', '01 00 0001 00010000 00000001 00000000 00 c0'],
    ['Request without a body', 'truncated', '01 00 0001 00010000 00000001 00000000 01 6d'],
    ['Response with unknown status', 'field', '02 00 0063 00000001 c0'],
    ['Response with status above 255', 'field', '02 00 0100 00000001 c0'],
    ['error Response with a non-object body', 'field', '02 00 000d 00000001 c0'],
    ['error Response without message', 'field', '02 00 000d 00000001 80'],
    ['error Response with a stack', 'field', '02 00 000d 00000001 82 a7 6d657373616765 a1 78 a5 737461636b a1 78'],
    ['Cancel with OK', 'field', '04 00 0000 00000001'],
    ['Cancel with id 0', 'field', '04 00 0001 00000000'],
    ['Credit with flags', 'field', '05 01 0000 00000000 00000000'],
    ['BulkChunk with reserved bits', 'field', '06 00 0001 00000000 00000000 00000000'],
    ['BulkChunk with offset beyond 2^53', 'field', '06 00 0000 00000000 00200000 00000000'],
    ['BulkAbort with reserved bits', 'field', '07 00 0001 00000000'],
    ['BulkAbort with flags', 'field', '07 80 0000 00000000'],
  ];
  it.each(bad)('%s', (_, reason, bytes) => {
    expectDecodeError(() => decodeFrame(hex(bytes)), reason as never);
  });

  it('a non-OK Response with message and details is accepted', () => {
    const f = decodeFrame(concat(hex('02 00 000d 00000001 82 a7 6d657373616765 a1 78 a7 64657461696c73 c0'))).frame;
    expect(f).toEqual({ type: FrameType.Response, id: 1, status: WireStatus.INTERNAL, body: { message: 'x', details: null } });
  });

  it('bad limits are a bad option, not a decode error', () => {
    expect(() => decodeFrame(hex('04 00 0001 00000001'), { maxElements: -1 })).not.toThrow(); // Cancel has no body
    expect(() => decodeFrame(hex('02 00 0000 00000001 c0'), { maxElements: -1 })).toThrow(InvalidOptionError);
  });
});

describe('Request headers (flag bit 1)', () => {
  // Request on channel 1, service 0x10000, id 1, no deadline, method `m`.
  const head = '01 02 0001 00010000 00000001 00000000 01 6d';
  const req = { type: FrameType.Request, channel: 1, service: 0x1_0000, id: 1, timeoutMs: 0, method: 'm', priority: false, body: null } as const;

  it('golden bytes: a block of one header between method and body', () => {
    const bytes = encodeFrame({ ...req, headers: { tp: 'x' } });
    expect(bytes).toEqual(hex(`${head} 0007 01 02 7470 0001 78 c0`));
    const f = decodeFrame(bytes).frame;
    expect(f.type === FrameType.Request && { ...f.headers }).toEqual({ tp: 'x' });
    expect(f.type === FrameType.Request && Object.getPrototypeOf(f.headers)).toBe(null);
  });

  it('absent or empty headers give the bytes of a Request without the field', () => {
    const plain = encodeFrame(req).slice();
    expect(encodeFrame({ ...req, headers: {} })).toEqual(plain);
    expect(plain[1]).toBe(0);
    expect('headers' in decodeFrame(plain).frame).toBe(false);
  });

  it('the limits hold exactly: 16 entries, 64-byte keys, 1024-byte values, 4096-byte block', () => {
    const sixteen = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, 'v'.repeat(200)]));
    const f = decodeFrame(encodeFrame({ ...req, headers: sixteen })).frame;
    expect(f.type === FrameType.Request && Object.keys(f.headers!).length).toBe(16);
    expect(encodeErrorOf(() => encodeFrame({ ...req, headers: { ...sixteen, k16: '' } })).path).toBe('headers');
    encodeFrame({ ...req, headers: { ['k'.repeat(64)]: 'v'.repeat(1024) } });
    encodeErrorOf(() => encodeFrame({ ...req, headers: { ['k'.repeat(65)]: '' } }));
    encodeErrorOf(() => encodeFrame({ ...req, headers: { k: 'v'.repeat(1025) } }));
    const big = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`k${i}`, 'v'.repeat(1000)]));
    encodeErrorOf(() => encodeFrame({ ...req, headers: big }));
  });

  it.each([
    ['an upper-case key', { Tp: 'x' }],
    ['a key with a space', { 't p': 'x' }],
    ['an empty key', { '': 'x' }],
    ['a reserved key', JSON.parse('{"__proto__":"x"}') as Record<string, string>],
    ['a value with a newline', { tp: 'a\nb' }],
    ['a non-ASCII value', { tp: 'é' }],
    ['a value that is not a string', { tp: 1 } as unknown as Record<string, string>],
  ])('the sender refuses %s', (_, headers) => {
    expect(encodeErrorOf(() => encodeFrame({ ...req, headers })).path).toBe('headers');
  });

  const bad: [string, string, string][] = [
    ['block length 0', 'length', `${head} 0000 c0`],
    ['block length above 4096', 'length', `${head} 1001 01 01 61 0000 c0`],
    ['block longer than the frame', 'truncated', `${head} 0040 01 01 61 0000`],
    ['no block length', 'truncated', `${head} 00`],
    ['count 0', 'field', `${head} 0001 00 c0`],
    ['count 17', 'field', `${head} 0001 11 c0`],
    ['key length 0', 'length', `${head} 0004 01 00 0000 c0`],
    ['key past the block', 'length', `${head} 0003 01 05 61 c0`],
    ['upper-case key', 'key', `${head} 0005 01 01 41 0000 c0`],
    ['repeated key', 'key', `${head} 0009 02 01 61 0000 01 61 0000 c0`],
    ['__proto__ key', 'key', `${head} 000d 01 09 5f5f70726f746f5f5f 0000 c0`],
    ['value past the block', 'length', `${head} 0005 01 01 61 0009 c0`],
    ['value length above 1024', 'length', `${head} 0005 01 01 61 0401 c0`],
    ['control byte in a value', 'field', `${head} 0006 01 01 61 0001 0a c0`],
    ['byte above 0x7e in a value', 'field', `${head} 0006 01 01 61 0001 80 c0`],
    ['bytes left in the block', 'trailing-bytes', `${head} 0006 01 01 61 0000 00 c0`],
    ['fewer entries than the count', 'truncated', `${head} 0005 02 01 61 0000 c0`],
    ['block cut before a value length', 'truncated', `${head} 0003 01 01 61 c0`],
  ];
  it.each(bad)('decodeFrame refuses %s', (_, reason, bytes) => {
    expectDecodeError(() => decodeFrame(hex(bytes)), reason as never);
  });

  it('OneWay does not define the headers flag', () => {
    expectDecodeError(() => decodeFrame(hex('03 02 0001 00010000 00000001 01 6d 0007 01 02 7470 0001 78 c0')), 'field');
  });
});
