/**
 * AdminClient: the admin endpoint's JSON API and event stream over fetch,
 * with typed errors: the server's `{ error: { code } }` comes back as a
 * ClusterInfraError with that code; no answer at all is
 * ADMIN_ERR_UNREACHABLE; an answer that is not the admin API is
 * ADMIN_ERR_BAD_RESPONSE.
 */
import { AdminError, ADMIN_ERROR_STATUS, type AdminErrorCode, type DecisionsView, type HistoryView, type KeysView, type StatusView } from '@clusterinfra/admin';
import { ClusterInfraError, ERROR_CODES, type ErrorCode, type Transition } from '@clusterinfra/core';

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

function remoteError(status: number, body: unknown): ClusterInfraError {
  const err = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const code = typeof err?.code === 'string' ? err.code : undefined;
  const message = typeof err?.message === 'string' ? err.message : `HTTP ${status}`;
  if (code !== undefined && code in ADMIN_ERROR_STATUS) return new AdminError(code as AdminErrorCode, message, { httpStatus: status });
  if (code !== undefined && code in ERROR_CODES) return new ClusterInfraError(code as ErrorCode, message, { retryable: status === 503 });
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
    this.url = base.href.replace(/\/+$/, '');
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.fetchFn = options.fetch ?? globalThis.fetch;
  }

  status(options: { signal?: AbortSignal } = {}): Promise<StatusView> {
    return this.json('GET', '/v1/status', undefined, options.signal);
  }

  history(options: { since?: number; limit?: number; signal?: AbortSignal } = {}): Promise<HistoryView> {
    const q = new URLSearchParams();
    if (options.since !== undefined) q.set('since', String(options.since));
    if (options.limit !== undefined) q.set('limit', String(options.limit));
    const qs = q.toString();
    return this.json('GET', `/v1/history${qs ? `?${qs}` : ''}`, undefined, options.signal);
  }

  keys(options: { signal?: AbortSignal } = {}): Promise<KeysView> {
    return this.json('GET', '/v1/keys', undefined, options.signal);
  }

  decisions(options: { signal?: AbortSignal } = {}): Promise<DecisionsView> {
    return this.json('GET', '/v1/decisions', undefined, options.signal);
  }

  down(node: number, reason?: string, options: { signal?: AbortSignal } = {}): Promise<{ ok: true; node: number }> {
    return this.json('POST', '/v1/down', reason === undefined ? { node } : { node, reason }, options.signal);
  }

  leave(options: { signal?: AbortSignal } = {}): Promise<{ ok: true; node: number }> {
    return this.json('POST', '/v1/leave', {}, options.signal);
  }

  /**
   * The endpoint's event stream (from transition `since`, else live), until
   * `signal` aborts (the iterator then ends quietly) or the server ends it.
   */
  async *watch(options: { since?: number; signal?: AbortSignal } = {}): AsyncGenerator<AdminEvent> {
    const q = options.since === undefined ? '' : `?since=${options.since}`;
    let res: Response;
    try {
      res = await this.send('GET', `/v1/watch${q}`, undefined, options.signal, false);
    } catch (err) {
      if (options.signal?.aborted) return;
      throw err;
    }
    if (!res.body) throw new AdminError('ADMIN_ERR_BAD_RESPONSE', 'the event stream has no body');
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (options.signal?.aborted) return;
          throw new AdminError('ADMIN_ERR_UNREACHABLE', `the event stream broke: ${(err as Error).message}`, { cause: err });
        }
        if (chunk.done) return;
        buffer += decoder.decode(chunk.value, { stream: true });
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const event = parseEvent(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (event) yield event;
        }
        if (buffer.length > MAX_EVENT_BYTES) throw new AdminError('ADMIN_ERR_BAD_RESPONSE', 'an event larger than 1 MiB');
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
  }

  private async json<T>(method: 'GET' | 'POST', path: string, body: unknown, signal: AbortSignal | undefined): Promise<T> {
    const res = await this.send(method, path, body, signal, true);
    try {
      return (await res.json()) as T;
    } catch (err) {
      throw new AdminError('ADMIN_ERR_BAD_RESPONSE', `${method} ${path}: the answer is not JSON`, { cause: err });
    }
  }

  private async send(method: 'GET' | 'POST', path: string, body: unknown, signal: AbortSignal | undefined, timed: boolean): Promise<Response> {
    const signals = [signal, timed ? AbortSignal.timeout(this.timeoutMs) : undefined].filter((s): s is AbortSignal => s !== undefined);
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
      const why = cause?.code ?? cause?.message ?? (err as Error).message;
      throw new AdminError('ADMIN_ERR_UNREACHABLE', `cannot reach ${this.url}: ${why}`, { cause: err });
    }
    if (!res.ok) {
      const errBody = await res.json().catch(() => null);
      throw remoteError(res.status, errBody);
    }
    return res;
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
  try {
    return { type, data: JSON.parse(data.join('\n')) as unknown };
  } catch {
    throw new AdminError('ADMIN_ERR_BAD_RESPONSE', `an event whose data is not JSON: ${data.join(' ').slice(0, 80)}`);
  }
}
