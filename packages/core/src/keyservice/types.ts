/**
 * The public types of key services: what an application registers and what
 * its callbacks and handlers are given (docs/key-services.md).
 */
import type { HandlerContext } from '../ics/types.js';

/** What a key-service callback is given. */
export interface KeyServiceContext {
  readonly name: string;
  /** The activation's epoch: pass it to external systems as a fencing token. */
  readonly epoch: number;
  /** This node. */
  readonly node: number;
  /** The former host, when there was one. */
  readonly previousHost: number | undefined;
  /** Aborts when this activation ends (a newer epoch, quorum loss, hand-over, close). */
  readonly signal: AbortSignal;
  /**
   * True while this activation may act: it has not ended and this node holds
   * its lease right now. Check it just before an external write: unlike
   * `signal`, it is right even in the first instant after a long pause.
   */
  isActive(): boolean;
}

/** What a key-service method handler is given: the ICS context plus the epoch it serves in. */
export interface KeyServiceHandlerContext extends HandlerContext {
  readonly keyService: string;
  /** The epoch of the activation serving this call: a fencing token. */
  readonly epoch: number;
}

export type KeyServiceHandler = (args: unknown, ctx: KeyServiceHandlerContext) => unknown;

export interface KeyServiceRegistration {
  name: string;
  /** The cluster is not formed until a critical key service has a ready host, and halts if none is left. @default false */
  critical?: boolean;
  /** The subservice its methods use on the `keyservice` channel (1–65535). */
  subservice: number;
  /** Methods, served only by the active host (others answer "not the host", and the caller goes to the host). */
  handlers?: Record<string, KeyServiceHandler>;
  /** Methods safe to run twice: a call that may have run on a host that failed is retried once on the new host. */
  idempotent?: readonly string[];
  /** Runs on the new host when it takes over (after a hand-over's data arrived, before data is pulled). */
  failover?: (ctx: KeyServiceContext) => void | Promise<void>;
  /** Runs on every surviving node during a failover; its result goes to the new host. */
  pullData?: (ctx: KeyServiceContext) => unknown;
  /** Runs on the new host with every survivor's `pullData` result and, after a clean leave, the old host's hand-over, apart. */
  failoverData?: (input: FailoverInput, ctx: KeyServiceContext) => void | Promise<void>;
  /** Planned hand-over: runs on the old host, which then stops; the result goes to the new host's `failoverData` as `input.handover`. */
  handover?: (ctx: KeyServiceContext) => unknown;
}

/**
 * What `failoverData` is given. Pulled data and hand-over data stay apart:
 * the hand-over usually holds the whole state already, so an application
 * that merged both (as one map did before) would count the survivors twice.
 */
export interface FailoverInput {
  /** Each surviving node's `pullData` result, by node number (this node included; the old host never). */
  readonly pulled: Map<number, unknown>;
  /**
   * A clean leave: what the old host's `handover` returned (null when it has
   * none) and its node. Undefined on a failover, and when the old host
   * stopped before the data was collected.
   */
  readonly handover: { readonly from: number; readonly data: unknown } | undefined;
}
