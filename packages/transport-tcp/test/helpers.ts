import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Listener, type RejectedConnection, type Transport, cryptoRandom, realClock, silentLogger } from '@clusterinfra/core';
import { type TcpOptions, tcp } from '../src/index.js';

let incarnation = 1000;

/** A TCP transport for node `nodeNum` on 127.0.0.1. */
export function makeTransport(nodeNum: number, options: TcpOptions = {}, clusterName = 'test'): Transport {
  return tcp(options).create({
    identity: { clusterName, nodeNum, incarnation: ++incarnation },
    clock: realClock,
    random: cryptoRandom,
    logger: silentLogger,
  });
}

/** An address where nothing listens (bound, then released). */
export async function unusedAddress(): Promise<string> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return `127.0.0.1:${port}`;
}

export interface TestPki {
  dir: string;
  ca: Buffer;
  node1: { key: Buffer; cert: Buffer };
  node2: { key: Buffer; cert: Buffer };
  /** Signed by a different CA: must be refused. */
  rogue: { key: Buffer; cert: Buffer };
  rogueCa: Buffer;
  cleanup(): void;
}

/** A CA, two node certificates it signs, and one signed by another CA; all for IP 127.0.0.1. */
export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'ci-tcp-pki-'));
  const run = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  for (const ca of ['ca', 'rogue-ca']) {
    run('req', '-x509', ...ec, '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '2', '-subj', `/CN=${ca}`);
  }
  const issue = (name: string, ca: string): void => {
    run('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    run('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
      '-out', `${name}.crt`, '-days', '2', '-extfile', 'ext.cnf');
  };
  issue('node1', 'ca');
  issue('node2', 'ca');
  issue('rogue', 'rogue-ca');
  const read = (f: string): Buffer => readFileSync(join(dir, f));
  const pair = (n: string) => ({ key: read(`${n}.key`), cert: read(`${n}.crt`) });
  return {
    dir,
    ca: read('ca.crt'),
    rogueCa: read('rogue-ca.crt'),
    node1: pair('node1'),
    node2: pair('node2'),
    rogue: pair('rogue'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Resolves when `socket` closes; collects what it received. */
export function drainSocket(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {});
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

/** Every `rejected` event of `listener`, and `next()`: the next one not yet taken (waits for it). */
export function watchRejected(listener: Listener): { rejected: RejectedConnection[]; next(): Promise<RejectedConnection> } {
  const rejected: RejectedConnection[] = [];
  const waiters: Array<(r: RejectedConnection) => void> = [];
  listener.on('rejected', (r) => {
    rejected.push(r);
    waiters.shift()?.(r);
  });
  let seen = 0;
  return {
    rejected,
    next: () => {
      const i = seen++;
      return rejected[i] ? Promise.resolve(rejected[i]!) : new Promise((r) => waiters.push(r));
    },
  };
}
