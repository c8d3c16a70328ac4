/** The multipath frames round-trip, and anything else is refused with a typed error. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidAddressError, MalformedFrameError } from '@clusterinfra/core';
import { formatMultipathAddress, parseMultipathAddress } from '../src/index.js';
import { DATA_HEADER, decode, encodeAck, encodeHello, encodeRefuse, encodeRst, encodeSequenced, encodeWelcome, Kind } from '../src/wire.js';

const u53 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const u32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });

describe('wire', () => {
  it('HELLO and WELCOME round-trip', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.boolean(), fc.integer({ min: 0, max: 255 }), u53, u32, u32, u53, (version, open, path, session, maxFrameSize, receiveWindow, ack) => {
        expect(decode(encodeHello({ version, open, path, session, maxFrameSize, receiveWindow, ack }))).toEqual({ kind: Kind.Hello, version, open, path, session, maxFrameSize, receiveWindow, ack });
        expect(decode(encodeWelcome({ version, maxFrameSize, receiveWindow, ack }))).toEqual({ kind: Kind.Welcome, version, maxFrameSize, receiveWindow, ack });
      }),
    );
  });

  it('DATA, FIN, ACK, PING, REFUSE and RST round-trip; DATA gives its payload without a copy', () => {
    fc.assert(
      fc.property(u53, u53, fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 255 }), (seq, ack, payload, reason) => {
        const frame = new Uint8Array(DATA_HEADER + payload.byteLength);
        frame.set(encodeSequenced(Kind.Data, seq, ack));
        frame.set(payload, DATA_HEADER);
        const d = decode(frame);
        expect(d).toEqual({ kind: Kind.Data, seq, ack, payload });
        expect((d as { payload: Uint8Array }).payload.buffer).toBe(frame.buffer);
        expect(decode(encodeSequenced(Kind.Fin, seq, ack))).toEqual({ kind: Kind.Fin, seq, ack });
        expect(decode(encodeAck(Kind.Ack, ack, seq))).toEqual({ kind: Kind.Ack, ack, received: seq });
        expect(decode(encodeAck(Kind.Ping, ack, seq))).toEqual({ kind: Kind.Ping, ack, received: seq });
        expect(decode(encodeRefuse(reason))).toEqual({ kind: Kind.Refuse, reason });
        expect(decode(encodeRst())).toEqual({ kind: Kind.Rst });
      }),
    );
  });

  it('refuses empty, unknown, truncated and padded frames, unknown flags and numbers beyond 2^53', () => {
    const bad = [
      new Uint8Array(0),
      new Uint8Array([0]),
      new Uint8Array([99]),
      encodeSequenced(Kind.Data, 1, 1).subarray(0, DATA_HEADER - 1),
      new Uint8Array([...encodeAck(Kind.Ack, 1, 1), 0]),
      new Uint8Array([...encodeRst(), 0]),
      (() => {
        const h = encodeHello({ version: 1, open: true, path: 0, session: 1, maxFrameSize: 1, receiveWindow: 1, ack: 0 });
        h[2] = 2;
        return h;
      })(),
      new Uint8Array([Kind.Ack, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    ];
    for (const b of bad) expect(() => decode(b), `frame ${Array.from(b)}`).toThrow(MalformedFrameError);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
        try {
          decode(b);
        } catch (err) {
          expect(err).toBeInstanceOf(MalformedFrameError);
        }
      }),
    );
  });
});

describe('addresses', () => {
  it('round-trip any path addresses, commas and percent signs included', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 8 }), (paths) => {
        expect(parseMultipathAddress(formatMultipathAddress(paths))).toEqual(paths);
      }),
    );
    expect(formatMultipathAddress(['10.0.1.5:7000', '[fd00::5]:7000'])).toBe('multipath:10.0.1.5:7000,[fd00::5]:7000');
  });

  it('refuses what is not a multipath address with InvalidAddressError', () => {
    for (const a of ['10.0.1.5:7000', 'multipath:', 'multipath:a,,b', 'multipath:a%zz', `multipath:${'a,'.repeat(8)}a`, 42]) {
      expect(() => parseMultipathAddress(a), String(a)).toThrow(InvalidAddressError);
    }
  });
});
