/**
 * The channels and services of one endpoint: names to numbers, each
 * channel's window, each service's handlers and pool.
 */
import { parseOptions } from '../config/index.js';
import { ClusterInfraError, InvalidOptionError, NotFoundError, ServiceExistsError, UnknownChannelError } from '../errors/index.js';
import { checkSubservice, INITIAL_WINDOW, poolSchema } from './options.js';
import { HandlerPool } from './pool.js';
import type { Handler, RegisteredService, ServiceAddress, ServiceRegistration } from './types.js';
import type { OneWayFrame, RequestFrame } from './wire/types.js';

/** The service id of (channel, subservice), as ICS_NSC_SVC in the seeds. */
export function serviceId(channel: number, subservice: number): number {
  return ((channel << 16) >>> 0) + subservice;
}
export const channelOf = (service: number): number => service >>> 16;
export const subserviceOf = (service: number): number => service & 0xffff;

export interface Window {
  messages: number;
  bytes: number;
}

export interface ChannelInfo {
  name: string;
  number: number;
  window: Window;
}

export interface ServiceEntry {
  id: number;
  name: string;
  channel: number;
  handlers: Record<string, Handler>;
  pool: HandlerPool;
  /** As registered, so a node's next incarnation can register it again. */
  reg: ServiceRegistration;
}

export class Registry {
  private readonly channels = new Map<string, ChannelInfo>();
  private readonly channelsByNumber = new Map<number, ChannelInfo>();
  private readonly services = new Map<number, ServiceEntry>();
  private readonly serviceNames = new Set<string>();

  constructor(private readonly nodeNum: number) {}

  addChannel(info: ChannelInfo): void {
    if (this.channels.has(info.name) || this.channelsByNumber.has(info.number)) {
      throw new ServiceExistsError(`channel ${info.name} (${info.number}) is defined twice`);
    }
    this.channels.set(info.name, info);
    this.channelsByNumber.set(info.number, info);
  }

  channelInfo(name: string): ChannelInfo {
    const c = this.channels.get(name);
    if (!c) throw new UnknownChannelError(name);
    return c;
  }

  /** Every channel (for the grants at link-up). */
  allChannels(): Iterable<ChannelInfo> {
    return this.channelsByNumber.values();
  }

  /** The window of channel `channel` (the initial one for a channel this node does not define). */
  windowOf(channel: number): Window {
    return this.channelsByNumber.get(channel)?.window ?? INITIAL_WINDOW;
  }

  channelName(channel: number): string {
    return this.channelsByNumber.get(channel)?.name ?? String(channel);
  }

  register(reg: ServiceRegistration): RegisteredService {
    checkRegistration(reg);
    const channel = this.channelInfo(reg.channel ?? 'default');
    if (!Number.isInteger(reg.subservice) || reg.subservice < 0 || reg.subservice > 0xffff) {
      throw new ClusterInfraError('CONFIG_ERR_INVALID_OPTION', `subservice must be an integer 0–65535, got ${reg.subservice}`);
    }
    const id = serviceId(channel.number, reg.subservice);
    if (this.services.has(id)) throw new ServiceExistsError(`service ${id} (${channel.name}/${reg.subservice}) is already registered`);
    if (this.serviceNames.has(reg.name)) throw new ServiceExistsError(`a service named ${reg.name} is already registered`);
    const pool = new HandlerPool(parseOptions(`service ${reg.name} pool`, poolSchema, reg.pool ?? {}));
    const entry: ServiceEntry = { id, name: reg.name, channel: channel.number, handlers: { ...reg.handlers }, pool, reg };
    this.services.set(id, entry);
    this.serviceNames.add(reg.name);
    return {
      id,
      name: reg.name,
      channel: channel.number,
      subservice: reg.subservice,
      unregister: () => {
        if (this.services.get(id) === entry) {
          this.services.delete(id);
          this.serviceNames.delete(reg.name);
        }
      },
    };
  }

  registrations(): ServiceRegistration[] {
    return [...this.services.values()].map((e) => e.reg);
  }

  /** Resolve a service address to its id. */
  serviceId(address: ServiceAddress): number {
    if (typeof address === 'number') return address;
    checkSubservice(address.subservice);
    return serviceId(this.channelInfo(address.channel).number, address.subservice);
  }

  /** The service a message is for, which has a handler for its method (`handlers[frame.method]`), or the NotFoundError to answer it with. */
  handlerOf(frame: RequestFrame | OneWayFrame): ServiceEntry | NotFoundError {
    const svc = this.services.get(frame.service);
    if (svc !== undefined && Object.hasOwn(svc.handlers, frame.method) && svc.handlers[frame.method]) return svc;
    const what = svc ? `method ${frame.method} of service ${svc.name}` : `service ${channelOf(frame.service)}/${subserviceOf(frame.service)}`;
    return new NotFoundError(`no ${what} on node ${this.nodeNum}`);
  }

  /** Drop the work from `node` waiting in every service's pool. */
  dropWorkFrom(node: number): void {
    for (const svc of this.services.values()) svc.pool.dropFrom(node);
  }
}

/** A registration's shape (the subservice and the pool are checked where they are used). */
function checkRegistration(reg: ServiceRegistration): void {
  if (typeof reg !== 'object' || reg === null) throw new InvalidOptionError('(root)', 'registerService: expected { name, subservice, handlers, channel?, pool? }');
  if (typeof reg.name !== 'string' || reg.name.length === 0 || reg.name.length > 200) throw new InvalidOptionError('name', 'registerService: name must be a string of 1–200 characters');
  if (reg.channel !== undefined && typeof reg.channel !== 'string') throw new InvalidOptionError('channel', `registerService ${reg.name}: channel must be a channel's name`);
  if (typeof reg.handlers !== 'object' || reg.handlers === null) throw new InvalidOptionError('handlers', `registerService ${reg.name}: handlers must be an object of functions`);
  for (const [method, h] of Object.entries(reg.handlers)) {
    if (h !== undefined && typeof h !== 'function') throw new InvalidOptionError(`handlers.${method}`, `registerService ${reg.name}: handler ${method} is not a function`);
  }
}
