/**
 * What the launcher (launcher.ts) and the node runner (runner.ts) say to each
 * other over the child's IPC channel, on top of the conventions of process.ts
 * and child.ts. Kept in one place so both sides agree.
 *
 * Times (`at`) are `performance.timeOrigin + performance.now()` in ms: one
 * clock for every process of the machine, so the parent can merge the
 * children's reports into one timeline.
 */
import type { KeyServiceInfo, Transition } from '@clusterinfra/core';
import type { NodeRunnerConfig } from './child.js';

/** Configuration of one runner, passed as JSON in env CLUSTERINFRA_LOCAL_NODE. */
export interface RunnerConfig extends NodeRunnerConfig {
  /** Register the demo `ledger` key service (ledger.ts). */
  keyService: boolean;
  /** Open the admin endpoint on 127.0.0.1 (when @clusterinfra/admin provides serveAdmin). */
  admin: boolean;
}

/** The env variables a runner reads (process.ts): the secret and token never go on the command line, where `ps` shows them. */
export { RUNNER_ENV as ENV } from './process.js';

/** What a node reports, as it happens (child → parent). */
export type NodeReport =
  | { type: 'loaded' }
  | { type: 'ready'; address: string; incarnation: number; adminUrl?: string; adminError?: string }
  | { type: 'master'; master: number | undefined; term: number }
  | { type: 'transition'; transition: Transition }
  | { type: 'nodeup'; of: number; incarnation: number }
  | { type: 'nodedown'; of: number; incarnation: number; state: string }
  /** A subsystem's nodedown callback finished on this node. */
  | { type: 'cleanup'; of: number; incarnation: number; subsystem: string; band: number; detail: string }
  | { type: 'keyservice'; info: KeyServiceInfo }
  | { type: 'formed'; formed: boolean }
  /** This node took the key service over (its `failover` callback ran). */
  | { type: 'failover'; name: string; epoch: number; previousHost: number | undefined }
  /** This node, the new host, got every survivor's `pullData` and rebuilt the state. */
  | { type: 'pulled'; name: string; epoch: number; from: Record<string, unknown>; balance: number }
  /** A key-service call this node made (on the parent's `call` command) settled. */
  | { type: 'call'; id: number; method: string; ok: boolean; result?: unknown; error?: string; code?: string }
  | { type: 'fatal'; error: string };

/** A report with the node that made it and when. */
export type TimedReport = NodeReport & { at: number };

/** The parent's commands (parent → child); each one is answered by a `reply` (RunnerReply in process.ts). */
export type Command =
  /** Any key-service method by name (`callKeyService`). */
  | { id: number; cmd: 'call'; name: string; method: string; args: unknown; timeoutMs: number }
  /** A ledger deposit that the node also counts as its own (what it reports to `pullData`). */
  | { id: number; cmd: 'deposit'; amount: number }
  | { id: number; cmd: 'state' }
  | { id: number; cmd: 'leave' }
  | { id: number; cmd: 'close' };
