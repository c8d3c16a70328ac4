/**
 * Test hooks. Not exported from the package entry point: nothing here is
 * public API.
 */
import type { Transport } from '@clusterinfra/core';
import { TcpTransport, kCrash } from './transport.js';

/** Make a TCP transport die abruptly, as a killed process would: no goodbye on any link. */
export function simulateCrash(transport: Transport): void {
  if (!(transport instanceof TcpTransport)) throw new TypeError('not a TCP transport');
  transport[kCrash]();
}

export { FrameDecoder, encodeControl, encodeDataFrame, type DecodedFrame } from './frame.js';
export * as handshake from './handshake.js';
export * as wire from './constants.js';
