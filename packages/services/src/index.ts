// The public API of @clusterinfra/services, chosen name by name.
export {
  createServices,
  Services,
  type ByNameCallOptions,
  type ByNameClient,
  type PublishOptions,
  type PublishResult,
  type ServedService,
  type ServeOptions,
  type ServicesEvents,
  type ServicesStats,
  type SubscribeOptions,
  type Subscription,
} from './services.js';
export type { ServicesOptions } from './options.js';
export { SERVICES_DEFAULTS } from './constants.js';
export { isServicesError, ServicesError, SERVICES_ERROR_CODES, type ServicesErrorCode } from './errors.js';
export { pick, POLICIES, type PickInput, type Policy } from './balance.js';
export { checkRoles, hasAnyRole, rolesOf, withRoles } from './roles.js';
export type { Delivery, EventHandler, EventInfo } from './events.js';
export type { MethodKind, TopicNode } from './directory.js';
