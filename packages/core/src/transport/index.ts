export { LinkBase, type LinkInit } from './link-base.js';
