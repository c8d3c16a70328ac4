import type { TransportFactory } from '@clusterinfra/core';
import { type TcpOptions, resolveOptions } from './options.js';
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
  };
}
