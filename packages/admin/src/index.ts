// The public API of @clusterinfra/admin, chosen name by name.
export { serveAdmin, type AdminServer } from './server.js';
export { ADMIN_DEFAULTS, type AdminOptions } from './options.js';
export { AdminError, ADMIN_ERROR_STATUS, type AdminErrorCode, type ErrorBody } from './errors.js';
export {
  assessHealth,
  type DecisionsView,
  type Health,
  type HistoryView,
  type KeysView,
  type LinkHealthReport,
  type LinkPathsView,
  type MemberView,
  type PathHealthSource,
  type PathsView,
  type PathView,
  type StatusView,
} from './views.js';
export { escapeLabelValue, EXPOSITION_CONTENT_TYPE } from './exposition.js';
export { RPC_SECONDS_BUCKETS } from './metrics.js';
