/**
 * What every part of an ICS endpoint shares: its identity, clock, options,
 * logger, counters and a way to emit its events. The parts (registry, peer,
 * flow, serving, links, calls, receive, teardown) each get this and the
 * parts below them, never the endpoint itself (js-libp2p's `Components`).
 */
import type { EventEmitter } from 'eventemitter3';
import type { Clock } from '../clock/index.js';
import type { Logger } from '../logging/index.js';
import type { RandomSource } from '../random/index.js';
import type { ResolvedIcsOptions } from './options.js';
import type { CallTracer, IcsEvents, IcsStats, TraceOutcome } from './types.js';

/** The endpoint's counters, in one place (`stats()` reports them beside its gauges). */
export type Counters = Omit<IcsStats, 'pendingCalls' | 'queuedMessages' | 'bulkBytesPending' | 'bulkStreamsPending' | 'peers' | 'receivedBytesHeld'>;

export function newCounters(): Counters {
  return {
    callsStarted: 0,
    callsSucceeded: 0,
    callsFailed: 0,
    messagesSent: 0,
    messagesReceived: 0,
    requestsServed: 0,
    dropped: 0,
    throttleEvents: 0,
    reconnects: 0,
    bulkBytesSent: 0,
    bulkBytesReceived: 0,
    oneWayDropped: 0,
    linksClosedForViolation: 0,
  };
}

export interface Env {
  readonly nodeNum: number;
  readonly incarnation: number;
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly log: Logger;
  readonly opts: ResolvedIcsOptions;
  readonly counters: Counters;
  readonly emit: EventEmitter<IcsEvents>['emit'];
  /** Whether the endpoint still takes new work (not closing or closed). */
  isOpen(): boolean;
  /** The installed call tracer (`Ics.instrument`); undefined in most programs, and then nothing is traced. */
  readonly hooks: { tracer: CallTracer | undefined };
}

/** A message from `node` was dropped: counted, and said with the `drop` event. */
export function dropped(env: Env, node: number, reason: string): void {
  env.counters.dropped++;
  env.emit('drop', { node, reason });
}

/** How a call or handler ended, for a tracer. */
export function traceOutcome(result: unknown, ok: boolean): TraceOutcome {
  if (ok) return { status: 'OK' };
  const error = result instanceof Error ? result : new Error(String(result));
  return { status: ((error as { code?: unknown }).code as string | undefined) ?? 'UNKNOWN', error };
}

/** Run a tracer hook; one that throws is ignored (the work goes on untraced). */
export function tryTrace<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}
