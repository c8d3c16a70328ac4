/**
 * Key services as a layer of their own (DESIGN §3, docs/key-services.md):
 * the view and the placement (pure), the master's part, hosting, routing
 * and the registration API. Uses CLMS through clms/index.ts only
 * (test/architecture.test.ts); the ClusterNode holds a KeyServiceManager
 * and gives it the narrow KeyServiceHost of ports.ts.
 */
export { KeyServiceManager } from './manager.js';
export { type KeyServiceHost } from './ports.js';
export { downKey, eligibleHost, hostStateOf, placement, type PlacementInput, type PlacementStep } from './placement.js';
export { KeyServiceView, type ViewChange } from './view.js';
export { type FailoverInput, type KeyServiceContext, type KeyServiceHandler, type KeyServiceHandlerContext, type KeyServiceRegistration } from './types.js';
export {
  defineKeyService,
  keyServiceClient,
  serveKeyService,
  type HandoverData,
  type KeyServiceCallOptions,
  type KeyServiceClient,
  type KeyServiceDescriptor,
  type KeyServiceHandlers,
  type KeyServiceImpl,
  type KeyServiceNode,
  type PulledData,
  type TypedFailoverInput,
} from './typed.js';
