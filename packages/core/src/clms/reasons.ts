/**
 * The words CLMS uses for what it waits for and why it decided: one place,
 * so that a `joining` event, a warning, a `NotJoinedError` and a decision
 * record say the same thing the same way. Pure functions of their inputs.
 */
import { type ClusterInfraError, type HandshakeRejectReason, HandshakeRejectedError } from '../errors/index.js';

/** What to check when a handshake is refused for `reason`. */
const HANDSHAKE_HINTS: Readonly<Record<HandshakeRejectReason, string>> = {
  auth: 'check the secret',
  'cluster-name': 'check clusterName',
  version: 'upgrade one side',
  identity: 'two nodes share a node number, or the address is this node',
  policy: "refused by the admission policy ('admit')",
  busy: 'too many pending handshakes there; retrying',
  malformed: 'is it a ClusterInfra node of this transport?',
};

const REACH_WORDS: Readonly<Record<string, string>> = {
  TRANSPORT_ERR_CONNECTION_REFUSED: 'connection refused',
  TRANSPORT_ERR_CONNECT_TIMEOUT: 'connect timed out',
  TRANSPORT_ERR_HANDSHAKE_TIMEOUT: 'handshake timed out',
  ICS_ERR_DEADLINE_EXCEEDED: 'no answer in time',
};

/** `node 2` or `nodes 2, 3`. */
export function nodeList(nodes: Iterable<number>): string {
  const list = [...nodes].sort((a, b) => a - b);
  return `${list.length === 1 ? 'node' : 'nodes'} ${list.join(', ')}`;
}

/**
 * Why a master lost its quorum: whom it heard besides itself, of which voters.
 * (The record read `heard 2 of voters 1, 2, 3` before: it meant "node 2 heard
 * only itself".)
 */
export function heardOnly(self: number, heard: ReadonlySet<number>, voters: readonly number[], what: string): string {
  const others = [...heard].filter((n) => n !== self && voters.includes(n));
  const whom = others.length === 0 ? 'no voter but itself' : `only ${nodeList(others)} besides itself`;
  return `${what}: node ${self} heard ${whom}, of voters ${voters.join(', ')}`;
}

/** `handshake with 127.0.0.1:7201 rejected: auth (check the secret)`, or what else went wrong reaching `address`. */
export function reachFailure(address: string, err: unknown): string {
  if (err instanceof HandshakeRejectedError) {
    // Either side may be the one that found the mismatch (over TCP the dialling side checks the other's proof): the same words.
    return `handshake with ${address} rejected: ${err.reason} (${HANDSHAKE_HINTS[err.reason]})`;
  }
  const code = (err as ClusterInfraError | undefined)?.code;
  if (code === 'TRANSPORT_ERR_INVALID_ADDRESS') return `${address} is not a valid address: ${(err as Error).message}`;
  const how = code === undefined ? undefined : (REACH_WORDS[code] ?? code);
  return `nothing answers at ${address}${how ? ` (${how})` : ''}`;
}

/** An inbound handshake this node refused: what `cluster status` and the joining reasons show. */
export function refusedInbound(remoteAddress: string, err: ClusterInfraError, remoteNode?: number): string {
  const who = `${remoteNode !== undefined ? `node ${remoteNode} at ` : ''}${remoteAddress}`;
  if (err instanceof HandshakeRejectedError) return `refused a handshake from ${who}: ${err.reason} (${HANDSHAKE_HINTS[err.reason]})`;
  return `refused a connection from ${who}: ${err.code}`;
}
