import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidOptionError } from '@clusterinfra/core';
import { type AdminServer, type HistoryView, type KeysView, type LinkHealthReport, type PathsView, serveAdmin, type StatusView } from '@clusterinfra/admin';
import { ECHO, startCluster, type TestCluster, TOKEN, waitFor } from './cluster.js';
import { parseExposition, sampleValue } from './prom-parse.js';

let cluster: TestCluster;
const servers = new Map<number, AdminServer>();

beforeAll(async () => {
  cluster = await startCluster(3);
  for (const [n, node] of cluster.nodes) servers.set(n, await serveAdmin(node, { token: TOKEN }));
}, 60_000);

afterAll(async () => {
  await Promise.all([...servers.values()].map((s) => s.close()));
  await cluster?.close();
});

const url = (n: number, path: string): string => `${servers.get(n)!.url}${path}`;
const auth = { authorization: `Bearer ${TOKEN}` };
const get = (n: number, path: string, headers: Record<string, string> = auth): Promise<Response> => fetch(url(n, path), { headers });
const post = (n: number, path: string, body: string, headers: Record<string, string> = auth): Promise<Response> =>
  fetch(url(n, path), { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

async function expectError(res: Response, status: number, code: string): Promise<void> {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe('string');
}

describe('options', () => {
  it('refuses a short token and unknown options with the option path', async () => {
    await expect(serveAdmin(cluster.node(1), { token: 'short' })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(serveAdmin(cluster.node(1), { token: 'short' })).rejects.toThrow(/token/);
    await expect(serveAdmin(cluster.node(1), { token: TOKEN, port: 70_000 })).rejects.toThrow(/port/);
  });

  it('refuses a node that is not a ClusterNode with InvalidArgumentError, before anything listens (it was a TypeError)', async () => {
    for (const node of [null, {}, 5]) {
      await expect(serveAdmin(node as never, { token: TOKEN })).rejects.toThrow(expect.objectContaining({ code: 'ICS_ERR_INVALID_ARGUMENT' }));
    }
  });

  it('listens on loopback by default and reports its port', () => {
    const s = servers.get(1)!;
    expect(s.url).toBe(`http://127.0.0.1:${s.port}`);
    expect(s.port).toBeGreaterThan(0);
  });
});

describe('auth', () => {
  it('refuses requests without a token or with a wrong one, with a typed 401', async () => {
    await expectError(await get(1, '/v1/status', {}), 401, 'ADMIN_ERR_UNAUTHORIZED');
    await expectError(await get(1, '/v1/status', { authorization: 'Bearer wrong-token-0123456789' }), 401, 'ADMIN_ERR_UNAUTHORIZED');
    await expectError(await get(1, '/v1/status', { authorization: `Basic ${TOKEN}` }), 401, 'ADMIN_ERR_UNAUTHORIZED');
    await expectError(await get(1, '/metrics', {}), 401, 'ADMIN_ERR_UNAUTHORIZED');
    await expectError(await post(1, '/v1/down', '{"node":3}', {}), 401, 'ADMIN_ERR_UNAUTHORIZED');
    // Unknown routes do not reveal themselves before authentication either.
    await expectError(await get(1, '/nope', {}), 401, 'ADMIN_ERR_UNAUTHORIZED');
  });

  it('accepts ?token= only where a browser needs it', async () => {
    await expectError(await get(1, `/v1/status?token=${TOKEN}`, {}), 401, 'ADMIN_ERR_UNAUTHORIZED');
    await expectError(await get(1, '/?token=wrong-token-0123456789', {}), 401, 'ADMIN_ERR_UNAUTHORIZED');
    const page = await get(1, `/?token=${TOKEN}`, {});
    expect(page.status).toBe(200);
    await page.text();
  });

  it('appends extraMetrics to /metrics, at every scrape', async () => {
    let n = 0;
    await using extra = await serveAdmin(cluster.node(1), { token: TOKEN, extraMetrics: () => `# TYPE extra_scrapes counter\nextra_scrapes ${++n}` });
    const scrape = async (): Promise<string> => (await fetch(`${extra.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    expect(await scrape()).toMatch(/clusterinfra_node_info[\s\S]*\nextra_scrapes 1\n$/);
    expect(await scrape()).toMatch(/\nextra_scrapes 2\n$/);
  });

  it('serves /metrics without the token only when configured', async () => {
    await using open = await serveAdmin(cluster.node(1), { token: TOKEN, metricsWithoutToken: true });
    const res = await fetch(`${open.url}/metrics`);
    expect(res.status).toBe(200);
    await res.text();
    await expectError(await fetch(`${open.url}/v1/status`), 401, 'ADMIN_ERR_UNAUTHORIZED');
  });
});

describe('routes', () => {
  it('GET /v1/status: the cluster as the node sees it', async () => {
    const res = await get(2, '/v1/status');
    expect(res.status).toBe(200);
    const s = (await res.json()) as StatusView;
    const master = cluster.node(2).master!;
    expect(s).toMatchObject({ cluster: 'admin-test', node: 2, master, formed: true, hasQuorum: true, suspected: null, health: { ok: true, problems: [] } });
    expect(s.term).toBe(cluster.node(2).currentTerm);
    expect(s.lastTransition).toBe(cluster.node(2).lastTransition);
    expect(s.incarnation).toBe(cluster.node(2).incarnation);
    expect(s.members.map((m) => [m.node, m.state, m.master])).toEqual([1, 2, 3].map((n) => [n, 'Up', n === master]));
    expect(s.members[0]).toMatchObject({ address: 'node-1', meta: { role: 'front "door"' }, incarnation: cluster.node(1).incarnation, hosts: [] });
  });

  it('GET /v1/history: bounded pages that chain', async () => {
    const last = cluster.node(1).lastTransition;
    const first = (await (await get(1, '/v1/history?limit=2')).json()) as HistoryView;
    expect(first.transitions.map((t) => t.number)).toEqual([1, 2]);
    expect(first.last).toBe(last);
    expect(first.next).toBe(3);
    const rest = (await (await get(1, `/v1/history?since=${first.next}&limit=1000`)).json()) as HistoryView;
    expect(rest.transitions[0]!.number).toBe(3);
    expect(rest.transitions.at(-1)!.number).toBe(last);
    expect(rest.next).toBeNull();
    expect(rest.transitions[0]).toHaveProperty('cause');
    await expectError(await get(1, '/v1/history?since=abc'), 400, 'ADMIN_ERR_BAD_REQUEST');
    await expectError(await get(1, '/v1/history?limit=0'), 400, 'ADMIN_ERR_BAD_REQUEST');
    await expectError(await get(1, '/v1/history?limit=100000'), 400, 'ADMIN_ERR_BAD_REQUEST');
  });

  it('GET /v1/keys and /v1/decisions', async () => {
    const keys = (await (await get(1, '/v1/keys')).json()) as KeysView;
    expect(keys).toEqual({ formed: true, keyServices: [] });
    const d = (await (await get(1, '/v1/decisions')).json()) as { decisions: unknown[] };
    expect(Array.isArray(d.decisions)).toBe(true);
    expect(d.decisions.length).toBe(cluster.node(1).decisionRecords().length);
  });

  it('GET /v1/paths: unavailable without a paths source; with one, this node\'s links by peer, and its metrics on /metrics', async () => {
    expect((await (await get(1, '/v1/paths')).json()) as PathsView).toEqual({ available: false, links: [], degraded: 0 });
    await expectError(await get(1, '/v1/paths', {}), 401, 'ADMIN_ERR_UNAUTHORIZED');
    await expect(serveAdmin(cluster.node(1), { token: TOKEN, paths: {} as never })).rejects.toThrow(/paths/);
    // A source shaped like multipath()'s factory; it also holds a link of another node of this process.
    const path = (index: number, state: 'up' | 'down', lastError?: string) => ({ index, state, active: state === 'up' && index === 1, failures: state === 'down' ? 2 : 0, silentMs: state === 'up' ? 3 : undefined, sinceMs: 40, lastError });
    const link = (remoteNode: number, localNode: number, down: boolean): LinkHealthReport => ({
      id: `l${remoteNode}-${localNode}`, remoteNode, localNode, direction: 'outbound', unacknowledged: 1, retransmitted: 5, duplicatesDropped: 0,
      paths: [path(0, down ? 'down' : 'up', down ? 'nothing heard for 70 ms' : undefined), path(1, 'up')],
    });
    let scrapes = 0;
    const source = { health: () => [link(3, 1, false), link(2, 1, true), link(1, 2, false)], metrics: () => `paths_scrapes ${++scrapes}` };
    await using withPaths = await serveAdmin(cluster.node(1), { token: TOKEN, paths: source, extraMetrics: () => 'extra_after 1' });
    const v = (await (await fetch(`${withPaths.url}/v1/paths`, { headers: auth })).json()) as PathsView;
    expect(v.available).toBe(true);
    expect(v.degraded).toBe(1);
    expect(v.links.map((l) => l.node)).toEqual([2, 3]);
    expect(v.links[0]).toEqual({
      node: 2, link: 'l2-1', direction: 'outbound', unacknowledged: 1, retransmitted: 5, duplicatesDropped: 0,
      paths: [
        { index: 0, state: 'down', active: false, failures: 2, silentMs: null, sinceMs: 40, lastError: 'nothing heard for 70 ms' },
        { index: 1, state: 'up', active: true, failures: 0, silentMs: 3, sinceMs: 40, lastError: null },
      ],
    });
    const text = await (await fetch(`${withPaths.url}/metrics`, { headers: auth })).text();
    expect(text).toMatch(/clusterinfra_node_info[\s\S]*\npaths_scrapes 1\nextra_after 1\n$/);
  });

  it('unknown routes get 404 and wrong methods 405, as JSON', async () => {
    await expectError(await get(1, '/v1/nope'), 404, 'ADMIN_ERR_NOT_FOUND');
    const res = await post(1, '/v1/status', '{}');
    expect(res.headers.get('allow')).toBe('GET');
    await expectError(res, 405, 'ADMIN_ERR_METHOD_NOT_ALLOWED');
    await expectError(await get(1, '/v1/down'), 405, 'ADMIN_ERR_METHOD_NOT_ALLOWED');
  });
});

describe('malformed requests', () => {
  it('bad JSON, bad fields and unknown nodes get typed errors', async () => {
    await expectError(await post(1, '/v1/down', '{"node":'), 400, 'ADMIN_ERR_BAD_REQUEST');
    await expectError(await post(1, '/v1/down', '{"node":"three"}'), 400, 'ADMIN_ERR_BAD_REQUEST');
    await expectError(await post(1, '/v1/down', '{"node":3,"extra":1}'), 400, 'ADMIN_ERR_BAD_REQUEST');
    await expectError(await post(1, '/v1/down', '[]'), 400, 'ADMIN_ERR_BAD_REQUEST');
    await expectError(await post(1, '/v1/down', '{"node":42}'), 404, 'ADMIN_ERR_UNKNOWN_NODE');
  });

  it('an oversized body is refused (announced or streamed) and the server lives on', async () => {
    const big = JSON.stringify({ node: 3, reason: 'x'.repeat(70 * 1024) });
    await expectError(await post(1, '/v1/down', big), 413, 'ADMIN_ERR_BODY_TOO_LARGE');
    // Chunked: no content-length, so the limit is found while reading.
    const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const u = new URL(url(1, '/v1/down'));
      const req = httpRequest({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { ...auth, 'transfer-encoding': 'chunked' } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      for (let i = 0; i < 80; i++) req.write('x'.repeat(1024));
      req.end();
    });
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.body)).toMatchObject({ error: { code: 'ADMIN_ERR_BODY_TOO_LARGE' } });
    const res = await get(1, '/v1/status');
    expect(res.status).toBe(200);
    await res.json();
  });
});

describe('hostile requests', () => {
  /** Raw bytes to the endpoint; the whole answer once the server closes the connection. */
  const raw = (text: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const u = new URL(url(1, '/'));
      const socket = connect(Number(u.port), u.hostname);
      let out = '';
      socket.on('data', (d: Buffer) => (out += d.toString()));
      socket.on('end', () => resolve(out));
      socket.on('error', reject);
      socket.write(text);
    });

  it('a body not declared as JSON is refused with 400 (a text/plain body acted before); no content type still works', async () => {
    await expectError(await post(1, '/v1/down', '{"node":42}', { ...auth, 'content-type': 'text/plain' }), 400, 'ADMIN_ERR_BAD_REQUEST');
    await expectError(await post(1, '/v1/down', 'node=3', { ...auth, 'content-type': 'application/x-www-form-urlencoded' }), 400, 'ADMIN_ERR_BAD_REQUEST');
    await expectError(await post(1, '/v1/leave', '{}', { ...auth, 'content-type': 'text/plain' }), 400, 'ADMIN_ERR_BAD_REQUEST');
    await expectError(await post(1, '/v1/down', '{"node":42}', { ...auth, 'content-type': 'application/json; charset=utf-8' }), 404, 'ADMIN_ERR_UNKNOWN_NODE');
    const bare = await fetch(url(1, '/v1/down'), { method: 'POST', headers: auth, body: new Blob(['{"node":42}']) });
    await expectError(bare, 404, 'ADMIN_ERR_UNKNOWN_NODE');
  });

  it('a query parameter given twice is refused (one of them was ignored)', async () => {
    await expectError(await get(1, '/v1/history?since=1&since=x'), 400, 'ADMIN_ERR_BAD_REQUEST');
    await expectError(await get(1, '/v1/watch?since=1&since=2'), 400, 'ADMIN_ERR_BAD_REQUEST');
    await expectError(await get(1, '/v1/history?limit=1e9'), 400, 'ADMIN_ERR_BAD_REQUEST');
  });

  it('requests the HTTP parser refuses get the JSON error body (Node answered a bare status line), and the server lives on', async () => {
    await expectError(await get(1, `/v1/status?x=${'a'.repeat(20_000)}`), 431, 'ADMIN_ERR_BAD_REQUEST');
    await expectError(await get(1, '/v1/status', { ...auth, 'x-big': 'a'.repeat(20_000) }), 431, 'ADMIN_ERR_BAD_REQUEST');
    const answer = await raw('GARBAGE\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toMatch(/content-type: application\/json/i);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: { code: 'ADMIN_ERR_BAD_REQUEST' } });
    const res = await get(1, '/v1/status');
    expect(res.status).toBe(200);
    await res.json();
  });
});

describe('metrics', () => {
  it('parse as Prometheus text and reflect the RPC calls made', async () => {
    const before = parseExposition(await (await get(2, '/metrics')).text());
    const okBefore = sampleValue(before, 'clusterinfra_rpc_calls_total', { service: 'default/7', status: 'OK' }) ?? 0;
    const ics = cluster.node(2).communication;
    for (let i = 0; i < 5; i++) expect(await ics.call(1, ECHO, 'echo', i)).toBe(i);
    await expect(ics.call(3, ECHO, 'fail', null)).rejects.toMatchObject({ code: 'ICS_ERR_INTERNAL' });
    const res = await get(2, '/metrics');
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const m = parseExposition(await res.text());
    expect(sampleValue(m, 'clusterinfra_rpc_calls_total', { service: 'default/7', status: 'OK' })).toBe(okBefore + 5);
    expect(sampleValue(m, 'clusterinfra_rpc_calls_total', { service: 'default/7', status: 'ICS_ERR_INTERNAL' })).toBe(1);
    expect(sampleValue(m, 'clusterinfra_rpc_duration_seconds_count', { service: 'default/7' })).toBe(okBefore + 6);
    expect(sampleValue(m, 'clusterinfra_members', { state: 'Up' })).toBe(3);
    expect(sampleValue(m, 'clusterinfra_members', { state: 'Down' })).toBe(0);
    expect(sampleValue(m, 'clusterinfra_quorum')).toBe(1);
    expect(sampleValue(m, 'clusterinfra_master_term')).toBe(cluster.node(2).currentTerm);
    expect(sampleValue(m, 'clusterinfra_transitions_total')).toBe(cluster.node(2).lastTransition);
    expect(sampleValue(m, 'clusterinfra_node_info', { cluster: 'admin-test', node: '2' })).toBe(1);
    for (const name of ['clusterinfra_ics_throttle_events_total', 'clusterinfra_keyservice_epoch', 'clusterinfra_keyservice_moves_total']) {
      expect(m.get(name)?.type).toMatch(/counter|gauge/);
    }
  });
});

interface SseEvent {
  type: string;
  id?: string;
  data: unknown;
}

/** Reads an event stream; `until` collects events until a condition holds. */
function eventReader(res: Response) {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const events: SseEvent[] = [];
  let buffer = '';
  return {
    events,
    async until(done: (events: SseEvent[]) => boolean, ms: number): Promise<SseEvent[]> {
      const deadline = Date.now() + ms;
      while (!done(events)) {
        if (Date.now() > deadline) throw new Error(`no matching event within ${ms} ms; got ${JSON.stringify(events.map((e) => e.type))}`);
        const { value, done: ended } = await reader.read();
        if (ended) throw new Error('the stream ended');
        buffer += decoder.decode(value, { stream: true });
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const fields = new Map<string, string>();
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const i = line.indexOf(': ');
            if (i > 0) fields.set(line.slice(0, i), line.slice(i + 2));
          }
          if (fields.has('event')) events.push({ type: fields.get('event')!, id: fields.get('id'), data: JSON.parse(fields.get('data')!) });
        }
      }
      return events;
    },
  };
}

describe('watch and membership actions', () => {
  it('replays from ?since= and streams a transition after a declared-down', async () => {
    const ac = new AbortController();
    const res = await fetch(url(1, `/v1/watch?since=1&token=${TOKEN}`), { signal: ac.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const head = cluster.node(1).lastTransition;
    const stream = eventReader(res);
    const replayed = await stream.until((ev) => ev.filter((e) => e.type === 'transition').length >= head, 20_000);
    expect(replayed.filter((e) => e.type === 'transition').map((e) => Number(e.id))).toEqual(Array.from({ length: head }, (_, i) => i + 1));

    const down = await post(1, '/v1/down', JSON.stringify({ node: 3, reason: 'test' }));
    expect(down.status).toBe(200);
    expect(await down.json()).toEqual({ ok: true, node: 3 });
    const events = await stream.until(
      (ev) => ev.some((e) => e.type === 'transition' && (e.data as { node: number; to: string }).node === 3 && (e.data as { to: string }).to === 'GoingDown'),
      20_000,
    );
    const t = events.find((e) => e.type === 'transition' && (e.data as { to: string }).to === 'GoingDown')!.data as { cause: string; number: number };
    expect(t.cause).toBe('test');
    ac.abort();
    // Node 3 rejoins as a new incarnation; the cluster settles again.
    await waitFor(() => cluster.settled(), 30_000, 'node 3 to rejoin');
  });

  it('ends event streams when the server closes, and refuses watchers past the limit', async () => {
    const s = await serveAdmin(cluster.node(2), { token: TOKEN, maxWatchers: 1, keepAliveMs: 50 });
    const res = await fetch(`${s.url}/v1/watch`, { headers: auth });
    expect(res.status).toBe(200);
    await expectError(await fetch(`${s.url}/v1/watch`, { headers: auth }), 503, 'ADMIN_ERR_TOO_MANY_WATCHERS');
    const reader = res.body!.getReader();
    let text = '';
    while (!text.includes(': keep-alive')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    expect(text).toContain(': keep-alive');
    await s.close();
    for (;;) {
      const { done } = await reader.read().catch(() => ({ done: true }));
      if (done) break;
    }
    await expect(fetch(`${s.url}/v1/status`, { headers: auth })).rejects.toThrow();
  });

  it('POST /v1/leave makes the node leave cleanly', async () => {
    const res = await post(3, '/v1/leave', '');
    if (res.status !== 200) throw new Error(`leave answered ${res.status}: ${await res.text()}`);
    expect(await res.json()).toEqual({ ok: true, node: 3 });
    await waitFor(() => ['ShuttingDown', 'Down'].includes(cluster.node(1).info(3)?.state ?? ''), 20_000, 'node 3 to leave');
    const s = (await (await get(1, '/v1/status')).json()) as StatusView;
    expect(['ShuttingDown', 'Down']).toContain(s.members.find((m) => m.node === 3)!.state);
  });
});
