export { LinkBase, type LinkInit } from './link-base.js';
export { checkTransportCallOptions } from './options.js';
