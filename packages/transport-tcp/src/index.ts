// The public API of @clusterinfra/transport-tcp, chosen name by name.
export { tcp } from './tcp.js';
export type { TcpOptions, TcpTlsOptions } from './options.js';
export { TcpKeyring, type TcpKeyringInit, type TcpSecret } from './keyring.js';
export { DEFAULTS as TCP_DEFAULTS } from './constants.js';
