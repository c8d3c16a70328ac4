/**
 * A stable handle on a node's ICS across incarnations.
 *
 * After an eviction the node starts again as a new incarnation with a new
 * ICS endpoint; the old one is closed (`ICS_ERR_CLOSED`). The handle that
 * `node.communication` returns forwards every property and method to the
 * endpoint of the current incarnation, so a reference kept by the
 * application, and typed clients made from it once (`client(node.communication,
 * …)`), keep working after a rejoin. Services registered through it live on
 * (the node carries them to the next endpoint), and so do event listeners
 * added through it (`on`, `once`, `off`): the handle attaches them to every
 * new endpoint.
 *
 * What does not carry over: calls in flight at the eviction settle with the
 * old endpoint's errors, and `observeCalls` watches the endpoint that was
 * current when it was called.
 */
import { InvalidStateError } from '../errors/index.js';
import { Ics } from '../ics/ics.js';

type Listener = (...args: never[]) => void;
interface Subscription {
  event: string;
  fn: Listener;
  /** What is attached to the endpoint (a wrapper for `once`). */
  attached: Listener;
}

const SUBSCRIBE = new Set(['on', 'addListener', 'once']);
const UNSUBSCRIBE = new Set(['off', 'removeListener']);

export class CommunicationHandle {
  private current: Ics | undefined;
  private readonly subscriptions: Subscription[] = [];
  /** Methods of the current endpoint, bound once per endpoint rather than at every access. */
  private bound = new Map<string | symbol, { fn: unknown; bound: unknown }>();
  /** The handle users hold: typed as the ICS endpoint it forwards to. */
  readonly proxy: Ics;

  constructor() {
    // The target is an empty Ics-shaped object: `instanceof Ics` holds; everything else is read from the current endpoint.
    const target = Object.create(Ics.prototype) as Ics;
    this.proxy = new Proxy(target, {
      get: (_t, prop) => this.read(prop),
      has: (_t, prop) => this.current !== undefined && prop in this.current,
      set: () => false,
    });
  }

  /** A new incarnation's endpoint: every listener added through the handle follows it. */
  attach(ics: Ics): void {
    this.current = ics;
    this.bound = new Map();
    for (const s of this.subscriptions) ics.on(s.event as never, s.attached as never);
  }

  private endpoint(): Ics {
    if (this.current === undefined) throw new InvalidStateError('node.communication is available once start() was called');
    return this.current;
  }

  private read(prop: string | symbol): unknown {
    if (typeof prop === 'string' && SUBSCRIBE.has(prop)) return (event: string, fn: Listener) => this.subscribe(event, fn, prop === 'once');
    if (typeof prop === 'string' && UNSUBSCRIBE.has(prop)) return (event: string, fn: Listener) => this.unsubscribe(event, fn);
    if (prop === 'removeAllListeners') return (event?: string) => this.unsubscribeAll(event);
    const ics = this.endpoint();
    const value = Reflect.get(ics, prop, ics) as unknown;
    if (typeof value !== 'function') return value;
    const cached = this.bound.get(prop);
    if (cached?.fn === value) return cached.bound;
    const bound = (value as (...a: unknown[]) => unknown).bind(ics);
    this.bound.set(prop, { fn: value, bound });
    return bound;
  }

  private subscribe(event: string, fn: Listener, once: boolean): Ics {
    const ics = this.endpoint();
    const s: Subscription = { event, fn, attached: fn };
    if (once) {
      s.attached = ((...args: never[]) => {
        this.unsubscribe(event, fn);
        fn(...args);
      }) as Listener;
    }
    this.subscriptions.push(s);
    ics.on(event as never, s.attached as never);
    return this.proxy;
  }

  private unsubscribe(event: string, fn: Listener): Ics {
    const i = this.subscriptions.findIndex((s) => s.event === event && s.fn === fn);
    if (i >= 0) {
      const [s] = this.subscriptions.splice(i, 1);
      this.current?.off(event as never, s!.attached as never);
    }
    return this.proxy;
  }

  /** Only the listeners added through the handle: the node's own stay. */
  private unsubscribeAll(event?: string): Ics {
    for (const s of [...this.subscriptions]) if (event === undefined || s.event === event) this.unsubscribe(s.event, s.fn);
    return this.proxy;
  }
}
