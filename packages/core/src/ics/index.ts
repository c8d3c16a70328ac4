export { createIcs, Ics, serviceId, channelOf, subserviceOf, ICS_DEFAULTS } from './ics.js';
export { BuiltinChannel, FIRST_USER_CHANNEL, INITIAL_WINDOW, isAbortSignal, poolSchema as poolConfigSchema, type ChannelDefinition, type IcsOptions, type PoolConfig } from './options.js';
export { IcsStatusError, statusName } from './status.js';
export { detached } from './context.js';
export {
  client,
  defineService,
  serve,
  type MethodDescriptor,
  type OneWayMethod,
  type RpcMethod,
  type ServiceClient,
  type ServiceDescriptor,
  type ServiceImpl,
} from './typed.js';
export type {
  CallObserver,
  CallOptions,
  CallRecord,
  CallTrace,
  CallTracer,
  Handler,
  HandlerContext,
  IcsEvents,
  IcsStats,
  LinkEventInfo,
  MulticastOptions,
  MulticastResult,
  RegisteredService,
  RequestHandle,
  ServedCall,
  ServeTrace,
  ServiceAddress,
  ServiceRegistration,
  Settled,
  TracedCall,
  TraceOutcome,
} from './types.js';
export { WireStatus, FrameType, type WireStatusName } from './wire/types.js';
