/**
 * AdminClient: the admin endpoint's JSON API and event stream over fetch,
 * with typed errors: the server's `{ error: { code } }` comes back as a
 * ClusterInfraError with that code; no answer at all is
 * ADMIN_ERR_UNREACHABLE; an answer that is not the admin API is
 * ADMIN_ERR_BAD_RESPONSE.
 */
import { AdminError, ADMIN_ERROR_STATUS, type AdminErrorCode, type DecisionsView, type HistoryView, type KeysView, type StatusView } from '@clusterinfra/admin';
import { ClusterInfraError, ERROR_CODES, type ErrorCode, type Transition } from '@clusterinfra/core';
import type { z } from 'zod';
import { actionAnswer, decisionsAnswer, eventData, firstIssue, historyAnswer, keysAnswer, statusAnswer } from './answers.js';
import { clean } from './format.js';

export interface AdminClientOptions {
  /** Base URL of the endpoint, e.g. http://127.0.0.1:7800. */
  url: string;
  token: string;
  /** Per request (not for `watch`). @default 15000 */
  timeoutMs?: number;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
}

/** One event of `watch()`: the SSE event type and its JSON data. */
export type AdminEvent =
  | { type: 'transition'; data: Transition }
  | { type: 'master'; data: { master: number | null; term: number } }
  | { type: 'quorum'; data: { hasQuorum: boolean } }
  | { type: string; data: unknown };

/** The longest event the client buffers before it gives up on the stream. */
const MAX_EVENT_BYTES = 1024 * 1024;
/** The largest JSON answer the client reads (a full history page is well under 1 MiB). */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;
/** How much of a server's error message is kept: it goes to a terminal. */
const MAX_REMOTE_MESSAGE = 500;

function remoteError(status: number, body: unknown): ClusterInfraError {
  const err = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const code = typeof err?.code === 'string' ? err.code : undefined;
  // Control characters made visible: a hostile endpoint must not drive the terminal.
  const message = typeof err?.message === 'string' ? clean(err.message.slice(0, MAX_REMOTE_MESSAGE)) : `HTTP ${status}`;
  // Own keys only: `toString` or `__proto__` is not a code.
  if (code !== undefined && Object.hasOwn(ADMIN_ERROR_STATUS, code)) return new AdminError(code as AdminErrorCode, message, { httpStatus: status });
  if (code !== undefined && Object.hasOwn(ERROR_CODES, code)) return new ClusterInfraError(code as ErrorCode, message, { retryable: status === 503 });
  return new AdminError('ADMIN_ERR_BAD_RESPONSE', `HTTP ${status} without an admin error body`, { httpStatus: status });
}

export class AdminClient {
  readonly url: string;
  private readonly token: string;
  private readonly timeoutMs: number;
  private readonly fetchFn: typeof fetch;

  constructor(options: AdminClientOptions) {
    let base: URL;
    try {
      base = new URL(options.url);
    } catch {
      throw new AdminError('ADMIN_ERR_UNREACHABLE', `not a URL: ${JSON.stringify(options.url)}`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new AdminError('ADMIN_ERR_UNREACHABLE', `the URL must be http(s): ${options.url}`);
    // fetch refuses them anyway, and every later message would repeat the password.
    if (base.username || base.password) throw new AdminError('ADMIN_ERR_UNREACHABLE', 'the URL must not hold a user name or password (the token goes in --token or CLUSTER_TOKEN)');
    this.url = base.href.replace(/\/+$/, '');
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.fetchFn = options.fetch ?? globalThis.fetch;
  }

  status(options: { signal?: AbortSignal } = {}): Promise<StatusView> {
    return this.json('GET', '/v1/status', undefined, options.signal, statusAnswer);
  }

  history(options: { since?: number; limit?: number; signal?: AbortSignal } = {}): Promise<HistoryView> {
    const q = new URLSearchParams();
    if (options.since !== undefined) q.set('since', String(options.since));
    if (options.limit !== undefined) q.set('limit', String(options.limit));
    const qs = q.toString();
    return this.json('GET', `/v1/history${qs ? `?${qs}` : ''}`, undefined, options.signal, historyAnswer);
  }

  keys(options: { signal?: AbortSignal } = {}): Promise<KeysView> {
    return this.json('GET', '/v1/keys', undefined, options.signal, keysAnswer);
  }

  decisions(options: { signal?: AbortSignal } = {}): Promise<DecisionsView> {
    return this.json('GET', '/v1/decisions', undefined, options.signal, decisionsAnswer);
  }

  down(node: number, reason?: string, options: { signal?: AbortSignal } = {}): Promise<{ ok: true; node: number }> {
    return this.json('POST', '/v1/down', reason === undefined ? { node } : { node, reason }, options.signal, actionAnswer);
  }

  leave(options: { signal?: AbortSignal } = {}): Promise<{ ok: true; node: number }> {
    return this.json('POST', '/v1/leave', {}, options.signal, actionAnswer);
  }

  /**
   * The endpoint's event stream (from transition `since`, else live), until
   * `signal` aborts (the iterator then ends quietly) or the server ends it.
   */
  async *watch(options: { since?: number; signal?: AbortSignal } = {}): AsyncGenerator<AdminEvent> {
    const q = options.since === undefined ? '' : `?since=${options.since}`;
    let res: Response;
    try {
      res = await this.send('GET', `/v1/watch${q}`, undefined, options.signal, undefined);
    } catch (err) {
      if (options.signal?.aborted) return;
      throw err;
    }
    if (!res.body) throw new AdminError('ADMIN_ERR_BAD_RESPONSE', 'the event stream has no body');
    const type = res.headers.get('content-type') ?? '';
    if (!/^text\/event-stream\b/i.test(type)) {
      await res.body.cancel().catch(() => {});
      throw new AdminError('ADMIN_ERR_BAD_RESPONSE', `GET /v1/watch: the answer is not an event stream (content-type ${clean(JSON.stringify(type.slice(0, 80)))})`);
    }
    const decoder = new TextDecoder();
    let buffer = '';
    const broke = (err: unknown): Error | undefined =>
      options.signal?.aborted ? undefined : new AdminError('ADMIN_ERR_UNREACHABLE', `the event stream broke: ${(err as Error).message}`, { cause: err });
    for await (const chunk of chunksOf(res.body, broke)) {
      buffer += decoder.decode(chunk, { stream: true });
      let cut: number;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const event = parseEvent(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (event) yield event;
      }
      if (buffer.length > MAX_EVENT_BYTES) throw new AdminError('ADMIN_ERR_BAD_RESPONSE', 'an event larger than 1 MiB');
    }
  }

  private async json<T>(method: 'GET' | 'POST', path: string, body: unknown, signal: AbortSignal | undefined, shape: z.ZodType): Promise<T> {
    const what = `${method} ${path}`;
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const res = await this.send(method, path, body, signal, timeout);
    const text = await this.readBounded(res, what, signal, timeout);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new AdminError('ADMIN_ERR_BAD_RESPONSE', `${what}: the answer is not JSON`, { cause: err });
    }
    const checked = shape.safeParse(value);
    if (!checked.success) throw new AdminError('ADMIN_ERR_BAD_RESPONSE', `${what}: the answer is not the admin API (${clean(firstIssue(checked.error))})`);
    return value as T;
  }

  /** The body as text, at most MAX_ANSWER_BYTES, within the request's timeout. */
  private async readBounded(res: Response, what: string, signal: AbortSignal | undefined, timeout: AbortSignal | undefined): Promise<string> {
    const tooLarge = (): AdminError => new AdminError('ADMIN_ERR_BAD_RESPONSE', `${what}: the answer is larger than ${MAX_ANSWER_BYTES / 1024 / 1024} MiB`);
    if (Number(res.headers.get('content-length')) > MAX_ANSWER_BYTES) {
      await res.body?.cancel().catch(() => {});
      throw tooLarge();
    }
    if (!res.body) return '';
    const broke = (err: unknown): Error =>
      timeout?.aborted && !signal?.aborted
        ? new AdminError('ADMIN_ERR_UNREACHABLE', `${what}: no complete answer from ${this.url} within ${this.timeoutMs} ms`, { cause: err })
        : new AdminError('ADMIN_ERR_UNREACHABLE', `${what}: the answer broke off: ${(err as Error).message}`, { cause: err });
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of chunksOf(res.body, broke)) {
      size += chunk.byteLength;
      if (size > MAX_ANSWER_BYTES) throw tooLarge();
      chunks.push(chunk);
    }
    return new TextDecoder().decode(Buffer.concat(chunks));
  }

  private async send(method: 'GET' | 'POST', path: string, body: unknown, signal: AbortSignal | undefined, timeout: AbortSignal | undefined): Promise<Response> {
    const signals = [signal, timeout].filter((s): s is AbortSignal => s !== undefined);
    let res: Response;
    try {
      res = await this.fetchFn(`${this.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        ...(signals.length > 0 ? { signal: AbortSignal.any(signals) } : {}),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = timeout?.aborted && !signal?.aborted ? `no answer within ${this.timeoutMs} ms` : (cause?.code ?? cause?.message ?? (err as Error).message);
      throw new AdminError('ADMIN_ERR_UNREACHABLE', `cannot reach ${this.url}: ${why}`, { cause: err });
    }
    if (!res.ok) {
      const errBody = await this.readBounded(res, `${method} ${path}`, signal, timeout).then((text) => JSON.parse(text) as unknown).catch(() => null);
      throw remoteError(res.status, errBody);
    }
    return res;
  }
}

/**
 * A body's chunks. A read that fails ends the loop with `broke(err)`, or
 * quietly when that gives undefined; the body is cancelled however the loop ends.
 */
async function* chunksOf(body: ReadableStream<Uint8Array>, broke: (err: unknown) => Error | undefined): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  try {
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (err) {
        const error = broke(err);
        if (error) throw error;
        return;
      }
      if (chunk.done) return;
      yield chunk.value;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** One SSE block → an event (comments and id-only blocks give undefined). */
function parseEvent(block: string): AdminEvent | undefined {
  let type = 'message';
  const data: string[] = [];
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(data.join('\n'));
  } catch {
    throw new AdminError('ADMIN_ERR_BAD_RESPONSE', `an event whose data is not JSON: ${clean(data.join(' ').slice(0, 80))}`);
  }
  const shape = Object.hasOwn(eventData, type) ? eventData[type] : undefined;
  const checked = shape?.safeParse(value);
  if (checked && !checked.success) throw new AdminError('ADMIN_ERR_BAD_RESPONSE', `a ${clean(type)} event that is not the admin API (${clean(firstIssue(checked.error))})`);
  return { type, data: value };
}
