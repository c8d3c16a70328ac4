/**
 * The `cluster` command against an endpoint that is not the admin API, or a
 * hostile one (a tiny node:http server on 127.0.0.1): every answer it cannot
 * use is exit 1 with one line `cluster: ADMIN_ERR_…: …`, never a TypeError,
 * a made-up success or the server driving the terminal.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { type CliIo, runCli } from '@clusterinfra/cli';

const servers: Server[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
});

/** A server answering every request with `handler`; resolves with its URL. */
async function endpoint(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

const json = (status: number, body: unknown) => (_req: IncomingMessage, res: ServerResponse) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

async function run(args: string[], url: string): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { CLUSTER_URL: url, CLUSTER_TOKEN: 'a-token-of-20-chars!' },
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
}

/** Exit 1, nothing on stdout, one line on stderr matching `pattern`. */
async function expectRefused(args: string[], url: string, pattern: RegExp): Promise<string> {
  const r = await run(args, url);
  expect(r).toMatchObject({ code: 1, stdout: '' });
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  return r.stderr;
}

describe('answers that are not the admin API', () => {
  it('JSON of the wrong shape: ADMIN_ERR_BAD_RESPONSE naming the field, no TypeError, no made-up success', async () => {
    const empty = await endpoint(json(200, {}));
    await expectRefused(['status'], empty, /^cluster: ADMIN_ERR_BAD_RESPONSE: GET \/v1\/status: the answer is not the admin API \(cluster: /);
    await expectRefused(['history'], empty, /ADMIN_ERR_BAD_RESPONSE: GET \/v1\/history: .*\(first: /);
    await expectRefused(['keys'], empty, /ADMIN_ERR_BAD_RESPONSE: GET \/v1\/keys: .*\(formed: /);
    // Before: "node undefined declared down", exit 0.
    await expectRefused(['down', '3'], empty, /ADMIN_ERR_BAD_RESPONSE: POST \/v1\/down: .*\(ok: /);
    await expectRefused(['leave'], empty, /ADMIN_ERR_BAD_RESPONSE: POST \/v1\/leave: .*\(ok: /);
    const nul = await endpoint(json(200, null));
    await expectRefused(['status'], nul, /ADMIN_ERR_BAD_RESPONSE: .*expected object, received null/);
    const members = await endpoint(json(200, { cluster: 'c', node: 1, address: null, master: 1, term: 1, formed: true, hasQuorum: true, lastTransition: 1, members: 'abc' }));
    await expectRefused(['status'], members, /ADMIN_ERR_BAD_RESPONSE: .*\(members: .*expected array/);
  });

  it('an error body with a code that is not one (an Object.prototype key) is a bad response; a real code\'s message cannot drive the terminal', async () => {
    await expectRefused(['status'], await endpoint(json(400, { error: { code: 'toString', message: 'x' } })), /^cluster: ADMIN_ERR_BAD_RESPONSE: HTTP 400 without an admin error body$/m);
    await expectRefused(['status'], await endpoint(json(400, { error: { code: '__proto__', message: 'x' } })), /^cluster: ADMIN_ERR_BAD_RESPONSE: HTTP 400/);
    const line = await expectRefused(['status'], await endpoint(json(401, { error: { code: 'ADMIN_ERR_UNAUTHORIZED', message: '\u001b[2Jcleared\rover' } })), /ADMIN_ERR_UNAUTHORIZED: \\x1b\[2Jcleared\\x0dover/);
    expect(line).not.toContain('\u001b');
  });

  it('an answer larger than 16 MiB is refused without reading it all', async () => {
    const url = await endpoint((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const mib = Buffer.alloc(1024 * 1024, 0x20);
      let sent = 0;
      const more = (): void => {
        while (sent < 64 && !res.destroyed) {
          sent++;
          if (!res.write(mib)) return void res.once('drain', more);
        }
        res.end();
      };
      res.on('error', () => {});
      more();
    });
    await expectRefused(['status'], url, /ADMIN_ERR_BAD_RESPONSE: GET \/v1\/status: the answer is larger than 16 MiB/);
  });

  it('headers then a body that never completes: ADMIN_ERR_UNREACHABLE naming the timeout, not "not JSON"', async () => {
    const url = await endpoint((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"cluster":');
    });
    await expectRefused(['--timeout', '200', 'status'], url, /^cluster: ADMIN_ERR_UNREACHABLE: GET \/v1\/status: no complete answer from http:\/\/127\.0\.0\.1:\d+ within 200 ms$/m);
    const silent = await endpoint(() => {});
    await expectRefused(['--timeout', '200', 'keys'], silent, /^cluster: ADMIN_ERR_UNREACHABLE: cannot reach http:\/\/127\.0\.0\.1:\d+: no answer within 200 ms$/m);
  });

  it('watch: an answer that is not an event stream, or an event of the wrong shape', async () => {
    await expectRefused(['watch'], await endpoint(json(200, {})), /ADMIN_ERR_BAD_RESPONSE: GET \/v1\/watch: the answer is not an event stream \(content-type "application\/json"\)/);
    const sse = (events: string) => (_req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(events);
    };
    // Before: "cluster: Invalid time value" (a RangeError from the formatter).
    await expectRefused(['watch'], await endpoint(sse('event: transition\ndata: 5\n\n')), /ADMIN_ERR_BAD_RESPONSE: a transition event that is not the admin API/);
    await expectRefused(['watch'], await endpoint(sse('event: master\ndata: null\n\n')), /ADMIN_ERR_BAD_RESPONSE: a master event that is not the admin API/);
  });

  it('a URL with a user name or password is refused before any request, without repeating the password', async () => {
    let requests = 0;
    const url = await endpoint((req, res) => {
      requests++;
      json(200, {})(req, res);
    });
    const line = await expectRefused(['status'], url.replace('http://', 'http://admin:s3cret@'), /^cluster: ADMIN_ERR_UNREACHABLE: the URL must not hold a user name or password/);
    expect(line).not.toContain('s3cret');
    expect(requests).toBe(0);
  });
});
