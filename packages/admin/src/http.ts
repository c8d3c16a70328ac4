/** Small helpers over node:http: JSON answers, typed errors, bounded bodies, the bearer token. */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ClusterInfraError } from '@clusterinfra/core';
import { AdminError, type ErrorBody } from './errors.js';

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' } as const;

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...JSON_HEADERS, 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

/** The HTTP status and `{ error: { code, message } }` body for any error a handler threw. */
export function errorAnswer(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof AdminError) return { status: err.httpStatus, body: { error: { code: err.code, message: err.message } } };
  // A core error (no master, node closed, timeout): the node could not do it now.
  if (err instanceof ClusterInfraError) return { status: 503, body: { error: { code: err.code, message: err.message } } };
  const message = err instanceof Error ? err.message : 'internal error';
  return { status: 500, body: { error: { code: 'ADMIN_ERR_INTERNAL', message } } };
}

export function sendError(res: ServerResponse, err: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    // Mid-stream: nothing sensible can be said any more.
    res.destroy();
    return;
  }
  const { status, body } = errorAnswer(err);
  sendJson(res, status, body, headers);
}

/**
 * Read a request body of at most `max` bytes. A larger one (announced or
 * streamed) is refused without keeping more than `max` bytes in memory.
 */
export async function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (Number.isFinite(declared) && declared > max) {
    req.resume();
    throw new AdminError('ADMIN_ERR_BODY_TOO_LARGE', `request body of ${declared} bytes exceeds ${max}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > max) {
      req.resume();
      throw new AdminError('ADMIN_ERR_BODY_TOO_LARGE', `request body exceeds ${max} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * Read (bounded) and parse a JSON request body; an empty body is `{}`. A
 * body declared as anything but JSON (`application/json` or `…+json`) is
 * refused: it used to be parsed all the same, so a `text/plain` body acted.
 */
export async function readJsonBody(req: IncomingMessage, max: number): Promise<unknown> {
  const body = await readBody(req, max);
  const type = req.headers['content-type'];
  if (body.byteLength > 0 && type !== undefined) {
    const media = type.split(';')[0]!.trim().toLowerCase();
    if (media !== 'application/json' && !media.endsWith('+json')) {
      throw new AdminError('ADMIN_ERR_BAD_REQUEST', `the request body must be JSON (content-type: application/json), got ${JSON.stringify(type.slice(0, 60))}`);
    }
  }
  return parseJsonBody(body);
}

/** Parse a JSON body; an empty body is `{}`. */
export function parseJsonBody(body: Buffer): unknown {
  const text = body.toString('utf8').trim();
  if (text === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new AdminError('ADMIN_ERR_BAD_REQUEST', `the request body is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Compare tokens in constant time: hashing both first gives equal lengths,
 * so neither the content nor the length of the right token leaks through
 * timing.
 */
export function tokenMatches(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** The token of a request: the bearer header, or `?token=` where the route allows it. */
export function presentedToken(req: IncomingMessage, url: URL, allowQuery: boolean): string | undefined {
  const header = req.headers.authorization;
  if (typeof header === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return m ? m[1] : '';
  }
  if (allowQuery) return url.searchParams.get('token') ?? undefined;
  return undefined;
}

/** A non-negative integer query parameter (given at most once), or undefined when absent. */
export function intParam(url: URL, name: string, { min = 0, max = Number.MAX_SAFE_INTEGER } = {}): number | undefined {
  const all = url.searchParams.getAll(name);
  if (all.length === 0) return undefined;
  // Given twice, one of the two was ignored without a word.
  if (all.length > 1) throw new AdminError('ADMIN_ERR_BAD_REQUEST', `query parameter ${name} is given ${all.length} times`);
  const raw = all[0]!;
  if (!/^\d{1,15}$/.test(raw)) throw new AdminError('ADMIN_ERR_BAD_REQUEST', `query parameter ${name} must be a non-negative integer, got ${JSON.stringify(raw.slice(0, 40))}`);
  const n = Number(raw);
  if (n < min || n > max) throw new AdminError('ADMIN_ERR_BAD_REQUEST', `query parameter ${name} must be between ${min} and ${max}`);
  return n;
}

/**
 * The answer to a request Node's HTTP parser refused before any handler saw
 * it (a malformed request line or header, a request line and headers past
 * Node's 16 KiB, headers too slow): the JSON error body of every other
 * answer rather than Node's bare status line, so clients read a code.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  // A response already under way on this connection cannot be followed by another.
  const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
  if (err.code === 'ECONNRESET' || !socket.writable || inFlight) {
    socket.destroy();
    return;
  }
  const [status, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? ['431 Request Header Fields Too Large', 'the request line and headers are too large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code === 'HPE_HEADERS_TIMEOUT'
        ? ['408 Request Timeout', 'the request did not arrive in time']
        : ['400 Bad Request', 'malformed HTTP request'];
  const body = JSON.stringify({ error: { code: 'ADMIN_ERR_BAD_REQUEST', message } } satisfies ErrorBody);
  socket.end(`HTTP/1.1 ${status}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}
