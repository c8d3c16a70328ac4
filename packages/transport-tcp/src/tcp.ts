import type { TransportFactory } from '@clusterinfra/core';
import { type TcpOptions, resolveOptions } from './options.js';
import { parseAddress } from './address.js';
import { TcpTransport } from './transport.js';

/**
 * The TCP transport factory. Options are validated here, so a bad option
 * fails when the factory is made, with InvalidOptionError naming its path.
 *
 *   const node = await createNode({ transport: tcp({ port: 4000, secret }) });
 */
export function tcp(options: TcpOptions = {}): TransportFactory {
  const resolved = resolveOptions(options);
  return {
    kind: 'tcp',
    create: (context) => new TcpTransport(resolved, context),
    checkAddress: (address) => {
      try {
        parseAddress(address);
        return undefined;
      } catch (err) {
        return `${(err as Error).message} (expected host:port, IPv6 as [::1]:port)`;
      }
    },
  };
}
