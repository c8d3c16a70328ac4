import { afterAll } from 'vitest';
import { transportComplianceSuite } from '@clusterinfra/core/testing';
import { simulateCrash } from '../src/internal.js';
import { makePki, makeTransport, unusedAddress } from './helpers.js';

// The "many links" case opens 32 handshakes at once from 127.0.0.1; the
// per-address default (8) is meant for real networks, so it is raised here.
const base = { maxPendingPerAddress: 64 };

transportComplianceSuite('tcp', () => ({
  create: (o) => makeTransport(o.nodeNum, { ...base, ...(o.secret !== undefined ? { secret: o.secret } : {}) }, o.clusterName),
  unusedAddress,
  crash: (t) => simulateCrash(t),
}));

const pki = makePki();
afterAll(() => pki.cleanup());

transportComplianceSuite('tcp+tls', () => ({
  create: (o) =>
    makeTransport(
      o.nodeNum,
      {
        ...base,
        tls: { ...(o.nodeNum % 2 === 0 ? pki.node2 : pki.node1), ca: pki.ca },
        ...(o.secret !== undefined ? { secret: o.secret } : {}),
      },
      o.clusterName,
    ),
  unusedAddress,
  crash: (t) => simulateCrash(t),
}));

// Every link sealed by the record layer (a secret and no TLS: encrypted by default).
const clusterSecret = 'compliance cluster secret, 32 B.';

// With a secret, a peer from another cluster is refused like a wrong secret (`auth`).
transportComplianceSuite(
  'tcp+secret (encrypted)',
  () => ({
    create: (o) => makeTransport(o.nodeNum, { ...base, secret: o.secret ?? clusterSecret }, o.clusterName),
    unusedAddress,
    crash: (t) => simulateCrash(t),
  }),
  { otherClusterReason: 'auth' },
);
