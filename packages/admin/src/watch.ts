/**
 * `GET /v1/watch`: the node's `watch()` stream as server-sent events.
 * Transitions carry their number as the event id, so a browser that
 * reconnects (EventSource sends `Last-Event-ID`) resumes without a gap;
 * master, quorum, key-service, formed and decision events are interleaved
 * as they happen. The stream ends when the client goes, the node closes or
 * the server closes; a client that does not read is cut off rather than
 * buffered without bound.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ClusterNode, DecisionRecord, KeyServiceInfo, WatchEvent } from '@clusterinfra/core';

/** Bytes a slow client may leave unread before its stream is ended. */
const MAX_UNREAD_BYTES = 1024 * 1024;

export interface WatchStreamOptions {
  node: ClusterNode;
  since: number | undefined;
  keepAliveMs: number;
  /** Aborts when the server closes. */
  signal: AbortSignal;
}

/** One event in the SSE wire format. */
export function sseEvent(type: string, data: unknown, id?: number): string {
  // JSON.stringify never emits a raw newline, so `data` stays one line.
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
}

function encode(e: WatchEvent): string {
  switch (e.type) {
    case 'transition':
      return sseEvent('transition', e.transition, e.transition.number);
    case 'master':
      return sseEvent('master', { master: e.master ?? null, term: e.term });
    case 'quorum':
      return sseEvent('quorum', { hasQuorum: e.hasQuorum });
    default:
      // A kind this version does not know yet: pass it on by its type.
      return sseEvent((e as { type: string }).type, e);
  }
}

export async function streamWatch(req: IncomingMessage, res: ServerResponse, o: WatchStreamOptions): Promise<void> {
  const local = new AbortController();
  const signal = AbortSignal.any([local.signal, o.signal]);
  const stop = (): void => local.abort();
  req.on('close', stop);
  res.on('close', stop);
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  const write = (text: string): void => {
    if (signal.aborted) return;
    res.write(text);
    if (res.writableLength > MAX_UNREAD_BYTES) stop();
  };
  write('retry: 2000\n: connected\n\n');
  const keepAlive = setInterval(() => write(': keep-alive\n\n'), o.keepAliveMs);
  const onKeyService = (info: KeyServiceInfo): void => write(sseEvent('keyservice', info));
  const onFormed = (info: { formed: boolean }): void => write(sseEvent('formed', info));
  const onDecision = (r: DecisionRecord): void => write(sseEvent('decision', r));
  o.node.on('keyservice', onKeyService);
  o.node.on('formed', onFormed);
  o.node.on('decision', onDecision);
  try {
    for await (const e of o.node.watch({ since: o.since, signal })) write(encode(e));
  } finally {
    clearInterval(keepAlive);
    o.node.off('keyservice', onKeyService);
    o.node.off('formed', onFormed);
    o.node.off('decision', onDecision);
    req.off('close', stop);
    res.off('close', stop);
    if (!res.writableEnded && !res.destroyed) res.end();
  }
}
