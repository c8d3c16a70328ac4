/**
 * The admin endpoint of one node: a JSON API, Prometheus metrics and a live
 * web page over plain node:http. It opens only when the application calls
 * `serveAdmin`; it listens on loopback unless told otherwise, and every
 * request carries the bearer token.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type ClusterNode, InvalidArgumentError, silentLogger, TimeoutError } from '@clusterinfra/core';
import { z } from 'zod';
import { AdminError } from './errors.js';
import { EXPOSITION_CONTENT_TYPE } from './exposition.js';
import { answerClientError, intParam, presentedToken, readJsonBody, sendError, sendJson, tokenMatches } from './http.js';
import { NodeMetrics } from './metrics.js';
import { ADMIN_DEFAULTS, type AdminOptions, resolveAdminOptions, type ResolvedAdminOptions } from './options.js';
import { renderPage } from './page.js';
import { decisionsView, historyView, keysView, pathsView, statusView } from './views.js';
import { streamWatch } from './watch.js';

export interface AdminServer extends AsyncDisposable {
  /** `http://host:port` of the endpoint (IPv6 hosts in brackets). */
  readonly url: string;
  readonly port: number;
  /** Stop listening, end every event stream and close every connection. Idempotent. */
  close(): Promise<void>;
}

interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
}

interface Route {
  method: 'GET' | 'POST';
  /**
   * `query`: the token may also come as `?token=` (the page and the event
   * stream, which a browser's EventSource cannot give headers).
   * `optional`: the page, which holds no data, is served without a token and asks for one.
   * `metrics`: the token unless `metricsWithoutToken`.
   */
  auth: 'header' | 'query' | 'optional' | 'metrics';
  handle(c: RequestContext): Promise<void> | void;
}

const downSchema = z.strictObject({
  node: z.number().int().positive(),
  reason: z.string().max(200).optional(),
});

/** Open the admin endpoint of `node`. See docs/cli.md. */
export async function serveAdmin(node: ClusterNode, options: AdminOptions): Promise<AdminServer> {
  // Before anything listens: a node that is not a ClusterNode failed later, as a TypeError.
  if (typeof node !== 'object' || node === null || typeof (node as { on?: unknown }).on !== 'function' || typeof (node as { membership?: unknown }).membership !== 'function') {
    throw new InvalidArgumentError('serveAdmin takes a ClusterNode');
  }
  const opts = resolveAdminOptions(options);
  const log = (opts.logger ?? silentLogger).child({ component: 'admin', node: node.nodeNum });
  const metrics = new NodeMetrics(node, ADMIN_DEFAULTS.maxRpcSeries);
  const closing = new AbortController();
  const streams = new Set<Promise<void>>();
  const routes = buildRoutes(node, opts, metrics, closing.signal, streams);

  const server = createServer({ requestTimeout: 60_000, headersTimeout: 30_000 }, (req, res) => {
    void handle(req, res).catch((err: unknown) => {
      log.warn({ err: (err as Error).message }, 'admin request failed');
      sendError(res, err);
    });
  });
  server.maxHeadersCount = 64;
  server.on('clientError', answerClientError);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin.invalid');
    } catch {
      throw new AdminError('ADMIN_ERR_BAD_REQUEST', 'malformed request URL');
    }
    const byMethod = routes.get(url.pathname);
    if (!byMethod) {
      authorize(req, url, 'header');
      throw new AdminError('ADMIN_ERR_NOT_FOUND', `no route ${url.pathname}`);
    }
    const route = byMethod.get(req.method ?? '');
    if (!route) {
      authorize(req, url, 'header');
      res.setHeader('allow', [...byMethod.keys()].join(', '));
      throw new AdminError('ADMIN_ERR_METHOD_NOT_ALLOWED', `${url.pathname} takes ${[...byMethod.keys()].join(', ')}`);
    }
    authorize(req, url, route.auth);
    await route.handle({ req, res, url });
  }

  function authorize(req: IncomingMessage, url: URL, auth: Route['auth']): void {
    if (auth === 'metrics' && opts.metricsWithoutToken) return;
    const token = presentedToken(req, url, auth === 'query' || auth === 'optional');
    if (token === undefined && auth === 'optional') return;
    if (token === undefined) throw new AdminError('ADMIN_ERR_UNAUTHORIZED', 'missing bearer token (Authorization: Bearer <token>)');
    if (!tokenMatches(token, opts.token)) throw new AdminError('ADMIN_ERR_UNAUTHORIZED', 'wrong token');
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  log.info({ url }, 'admin endpoint open');

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      closing.abort();
      metrics.close();
      await Promise.allSettled([...streams]);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      log.info({ url }, 'admin endpoint closed');
    })());

  return { url, port: address.port, close, [Symbol.asyncDispose]: close };
}

function buildRoutes(node: ClusterNode, opts: ResolvedAdminOptions, metrics: NodeMetrics, closing: AbortSignal, streams: Set<Promise<void>>): Map<string, Map<string, Route>> {
  const table = new Map<string, Map<string, Route>>();
  const add = (path: string, route: Route): void => {
    const byMethod = table.get(path) ?? new Map<string, Route>();
    byMethod.set(route.method, route);
    table.set(path, byMethod);
  };

  add('/', {
    method: 'GET',
    auth: 'optional',
    handle: ({ res }) => {
      const nonce = randomBytes(16).toString('base64');
      const html = renderPage(nonce);
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        // Only this page's own inline script and style run, and it talks only to this endpoint.
        'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
        'referrer-policy': 'no-referrer',
        'x-content-type-options': 'nosniff',
        'content-length': String(Buffer.byteLength(html)),
      });
      res.end(html);
    },
  });
  add('/v1/status', { method: 'GET', auth: 'header', handle: ({ res }) => sendJson(res, 200, statusView(node)) });
  add('/v1/history', {
    method: 'GET',
    auth: 'header',
    handle: ({ res, url }) => {
      const since = intParam(url, 'since');
      const limit = intParam(url, 'limit', { min: 1, max: ADMIN_DEFAULTS.historyPageMax }) ?? ADMIN_DEFAULTS.historyPage;
      sendJson(res, 200, historyView(node, since, limit));
    },
  });
  add('/v1/keys', { method: 'GET', auth: 'header', handle: ({ res }) => sendJson(res, 200, keysView(node)) });
  add('/v1/decisions', { method: 'GET', auth: 'header', handle: ({ res }) => sendJson(res, 200, decisionsView(node)) });
  add('/v1/paths', { method: 'GET', auth: 'header', handle: ({ res }) => sendJson(res, 200, pathsView(node, opts.paths)) });
  add('/v1/watch', {
    method: 'GET',
    auth: 'query',
    handle: async ({ req, res, url }) => {
      if (streams.size >= opts.maxWatchers) throw new AdminError('ADMIN_ERR_TOO_MANY_WATCHERS', `at most ${opts.maxWatchers} watchers`);
      const resume = lastEventId(req);
      const since = intParam(url, 'since') ?? (resume === undefined ? node.lastTransition + 1 : resume + 1);
      const stream = streamWatch(req, res, { node, since, keepAliveMs: opts.keepAliveMs, signal: closing });
      streams.add(stream);
      try {
        await stream;
      } finally {
        streams.delete(stream);
      }
    },
  });
  add('/v1/down', {
    method: 'POST',
    auth: 'header',
    handle: async ({ req, res }) => {
      const parsed = downSchema.safeParse(await readJsonBody(req, opts.maxBodyBytes));
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        throw new AdminError('ADMIN_ERR_BAD_REQUEST', `${issue.path.join('.') || 'body'}: ${issue.message}`);
      }
      const { node: target, reason } = parsed.data;
      if (!node.info(target)) throw new AdminError('ADMIN_ERR_UNKNOWN_NODE', `node ${target} is not a member`);
      await withTimeout(node.declareDown(target, reason ?? 'declared down through the admin endpoint'), opts.actionTimeoutMs, `declaring node ${target} down`);
      sendJson(res, 200, { ok: true, node: target });
    },
  });
  add('/v1/leave', {
    method: 'POST',
    auth: 'header',
    handle: async ({ req, res }) => {
      // The body is optional; read it (bounded) so a large one is refused.
      await readJsonBody(req, opts.maxBodyBytes);
      await withTimeout(node.leave(), opts.actionTimeoutMs, 'leaving the cluster');
      sendJson(res, 200, { ok: true, node: node.nodeNum });
    },
  });
  add('/metrics', {
    method: 'GET',
    auth: 'metrics',
    handle: ({ res }) => {
      let text = metrics.render();
      // Each appended source ends its own lines.
      for (const extra of [opts.paths?.metrics?.() ?? '', opts.extraMetrics?.() ?? '']) text += extra === '' || extra.endsWith('\n') ? extra : `${extra}\n`;
      res.writeHead(200, { 'content-type': EXPOSITION_CONTENT_TYPE, 'cache-control': 'no-store', 'content-length': String(Buffer.byteLength(text)) });
      res.end(text);
    },
  });
  return table;
}

/** EventSource resends the last id it saw when it reconnects. */
function lastEventId(req: IncomingMessage): number | undefined {
  const raw = req.headers['last-event-id'];
  if (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw)) return undefined;
  return Number(raw);
}

async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
