// The public API of @clusterinfra/transport-multipath, chosen name by name.
export { multipath, MultipathFactory, type NodeLinkHealth } from './multipath.js';
export { MultipathListener, MultipathTransport, type MultipathTransportEvents } from './transport.js';
export { MultipathLink, type LinkHealth, type PathEvent, type PathHealth, type PathState } from './link.js';
export type { MultipathOptions, MultipathPolicy } from './options.js';
export { formatMultipathAddress, parseMultipathAddress } from './address.js';
export { MULTIPATH_DEFAULTS, MULTIPATH_PRESETS } from './constants.js';
