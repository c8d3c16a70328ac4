/**
 * Asking the master for a move or a withdrawal (docs/key-services.md), as
 * a state machine: `step(input)` takes what happened, `ready()` gives what
 * to do next. host.ts (`askMaster`) is its driver: it makes the call, or
 * answers the request itself when this node is the master, sleeps, and
 * feeds each outcome back. The rules are `askNext`'s (takeover.ts): until
 * one answers, the bound passes, or this node follows another cluster
 * history than the one the request was made in.
 *
 * Pure: no IO, no timers, nothing asynchronous (test/architecture.test.ts).
 */
import { Machine } from './machine.js';
import { askNext } from './takeover.js';

export type AskInput =
  /** Look now (at the start, and after each sleep): this node's master and history as they are. */
  | { kind: 'look'; now: number; master: number | undefined; history: string | null }
  /** The master (this node or another) answered. */
  | { kind: 'answered'; value: boolean }
  /** The request failed (`error`: its message). */
  | { kind: 'failed'; error: string };

export type AskEffect =
  /** This node is the master: answer the request here. */
  | { kind: 'ask-self' }
  /** Call the master `master` with the request. */
  | { kind: 'call'; master: number; timeoutMs: number }
  /** The request failed and is made again (for the log). */
  | { kind: 'retrying'; error: string }
  /** Look again after `ms`. */
  | { kind: 'sleep'; ms: number }
  /** Done: the master's answer, else false. */
  | { kind: 'settle'; value: boolean };

export class AskMaster extends Machine<AskEffect> {
  constructor(
    private readonly me: number,
    /** The history the request was made in. */
    private readonly asked: string | null,
    private readonly deadline: number,
    private readonly rpcTimeoutMs: number,
  ) {
    super();
  }

  step(input: AskInput): void {
    if (this.over) return;
    switch (input.kind) {
      case 'look': {
        const next = askNext(this.me, input.master, input.now, this.deadline, { asked: this.asked, current: input.history });
        if (next.kind === 'give-up') return this.end({ kind: 'settle', value: false });
        if (next.kind === 'self') return this.emit({ kind: 'ask-self' });
        if (next.kind === 'call') return this.emit({ kind: 'call', master: next.master, timeoutMs: this.rpcTimeoutMs * 4 });
        return this.emit({ kind: 'sleep', ms: this.rpcTimeoutMs });
      }
      case 'answered':
        return this.end({ kind: 'settle', value: input.value });
      case 'failed':
        return this.emit({ kind: 'retrying', error: input.error }, { kind: 'sleep', ms: this.rpcTimeoutMs });
    }
  }
}
