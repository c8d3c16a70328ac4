/**
 * The key-service state machines, driven by hand: asking the master
 * (ask.ts), collecting a hand-over (collect.ts), one takeover
 * (activation.ts) and one call by name (calling.ts). Each test feeds
 * inputs as the drivers (host.ts, routing.ts) would and checks the effects
 * in order, without a network, timers or promises.
 */
import { describe, expect, it } from 'vitest';
import type { KeyServiceInfo } from '@clusterinfra/core';
import { AskMaster } from '../src/keyservice/ask.js';
import { CallByName } from '../src/keyservice/calling.js';
import { CollectHandover } from '../src/keyservice/collect.js';
import { Takeover } from '../src/keyservice/activation.js';
import type { CallFailure } from '../src/keyservice/route.js';

const info = (extra: Partial<KeyServiceInfo> = {}): KeyServiceInfo => ({ name: 'a', host: 2, epoch: 3, ready: true, critical: false, halted: false, since: 9, ...extra });
const failure = (f: Partial<CallFailure>): CallFailure => ({ code: undefined, sent: undefined, notHost: false, otherHistory: undefined, unreachable: false, ...f });

describe('asking the master (ask.ts)', () => {
  it('calls the master, retries after a failure, answers itself once it is the master', () => {
    const m = new AskMaster(2, 'h1', 1000, 100);
    m.step({ kind: 'look', now: 0, master: 1, history: 'h1' });
    expect(m.ready()).toEqual([{ kind: 'call', master: 1, timeoutMs: 400 }]);
    m.step({ kind: 'failed', error: 'link lost' });
    expect(m.ready()).toEqual([{ kind: 'retrying', error: 'link lost' }, { kind: 'sleep', ms: 100 }]);
    m.step({ kind: 'look', now: 100, master: undefined, history: 'h1' });
    expect(m.ready()).toEqual([{ kind: 'sleep', ms: 100 }]);
    m.step({ kind: 'look', now: 200, master: 2, history: 'h1' });
    expect(m.ready()).toEqual([{ kind: 'ask-self' }]);
    m.step({ kind: 'answered', value: true });
    expect(m.ready()).toEqual([{ kind: 'settle', value: true }]);
    // Settled: nothing more.
    m.step({ kind: 'look', now: 300, master: 1, history: 'h1' });
    expect(m.ready()).toEqual([]);
  });

  it('gives up at the bound, and as soon as this node follows another history (seed 11644)', () => {
    const late = new AskMaster(2, 'h1', 1000, 100);
    late.step({ kind: 'look', now: 1000, master: 1, history: 'h1' });
    expect(late.ready()).toEqual([{ kind: 'settle', value: false }]);
    const moved = new AskMaster(2, 'h1', 1000, 100);
    moved.step({ kind: 'look', now: 0, master: 2, history: 'h1' });
    moved.step({ kind: 'failed', error: 'no longer master' });
    moved.ready();
    moved.step({ kind: 'look', now: 100, master: 3, history: 'h2' });
    expect(moved.ready()).toEqual([{ kind: 'settle', value: false }]);
  });
});

describe('collecting a hand-over (collect.ts)', () => {
  const timing = { rpcTimeoutMs: 100, failureTimeoutMs: 1000 };

  it('asks until the old host answers, retrying after a failure while it is Up', () => {
    const m = new CollectHandover(1000, timing);
    m.step({ kind: 'look', now: 0 });
    expect(m.ready()).toEqual([{ kind: 'call', timeoutMs: 1000 }]);
    m.step({ kind: 'failed', error: 'not seen yet', now: 50, fromState: 'Up' });
    expect(m.ready()).toEqual([{ kind: 'not-yet', error: 'not seen yet' }, { kind: 'sleep', ms: 100 }]);
    m.step({ kind: 'slept', now: 150 });
    expect(m.ready()).toEqual([{ kind: 'call', timeoutMs: 850 }]);
    m.step({ kind: 'answered', data: undefined });
    expect(m.ready()).toEqual([{ kind: 'settle', handover: { data: null } }]);
  });

  it('an old host going away: waits for its Down, then what is left of its lease, and collects nothing', () => {
    const m = new CollectHandover(1000, timing);
    m.step({ kind: 'look', now: 0 });
    m.ready();
    m.step({ kind: 'failed', error: 'node down', now: 200, fromState: 'GoingDown' });
    expect(m.ready()).toEqual([{ kind: 'await-down', ms: 800 }]);
    m.step({ kind: 'awaited-down', now: 400, fromState: 'Down' });
    expect(m.ready()).toEqual([{ kind: 'down-wait' }]);
    m.step({ kind: 'down-wait-left', ms: 300 });
    expect(m.ready()).toEqual([{ kind: 'sleep', ms: 300 }]);
    m.step({ kind: 'slept', now: 700 });
    expect(m.ready()).toEqual([{ kind: 'settle', handover: undefined }]);
    // With nothing left to wait, at once.
    const done = new CollectHandover(1000, timing);
    done.step({ kind: 'look', now: 0 });
    done.step({ kind: 'failed', error: 'x', now: 10, fromState: 'Down' });
    done.step({ kind: 'awaited-down', now: 10, fromState: 'Down' });
    done.ready();
    done.step({ kind: 'down-wait-left', ms: 0 });
    expect(done.ready()).toEqual([{ kind: 'settle', handover: undefined }]);
  });

  it('past the bound without an answer: waits a failure timeout for the old host to stop by itself', () => {
    const m = new CollectHandover(1000, timing);
    m.step({ kind: 'look', now: 1000 });
    expect(m.ready()).toEqual([{ kind: 'gave-up' }, { kind: 'sleep', ms: 1000 }]);
    m.step({ kind: 'slept', now: 2000 });
    expect(m.ready()).toEqual([{ kind: 'settle', handover: undefined }]);
  });
});

describe('one takeover (activation.ts)', () => {
  it('runs the steps in order, checking after each whether the activation ended', () => {
    const m = new Takeover(4, 1, true);
    m.step({ kind: 'start', activeEpoch: 3 });
    expect(m.ready()).toEqual([{ kind: 'deactivate', why: 'reassigned' }, { kind: 'activate' }, { kind: 'collect-handover', from: 1 }]);
    m.step({ kind: 'done', ended: false });
    expect(m.ready()).toEqual([{ kind: 'failover' }]);
    m.step({ kind: 'done', ended: false });
    expect(m.ready()).toEqual([{ kind: 'pull', skip: 1 }]);
    m.step({ kind: 'done', ended: false });
    expect(m.ready()).toEqual([{ kind: 'failover-data' }]);
    m.step({ kind: 'done', ended: false });
    expect(m.ready()).toEqual([{ kind: 'ready', reason: 'hand-over from node 1' }, { kind: 'finished' }]);
  });

  it('steps with nothing to run still check; an ended activation stops the takeover; the same epoch again is nothing', () => {
    const m = new Takeover(4, undefined, false);
    m.step({ kind: 'start', activeEpoch: undefined });
    expect(m.ready()).toEqual([{ kind: 'activate' }, { kind: 'check' }]);
    m.step({ kind: 'done', ended: false });
    expect(m.ready()).toEqual([{ kind: 'failover' }]);
    m.step({ kind: 'done', ended: false });
    expect(m.ready()).toEqual([{ kind: 'check' }]);
    m.step({ kind: 'done', ended: true });
    expect(m.ready()).toEqual([{ kind: 'finished' }]);
    const again = new Takeover(4, undefined, false);
    again.step({ kind: 'start', activeEpoch: 4 });
    expect(again.ready()).toEqual([{ kind: 'finished' }]);
  });

  it('a step that throws ends the activation (if still its own) and has it placed again later', () => {
    const m = new Takeover(4, undefined, true);
    m.step({ kind: 'start', activeEpoch: undefined });
    m.ready();
    m.step({ kind: 'done', ended: false });
    m.ready();
    m.step({ kind: 'failed', error: 'boom', current: true });
    expect(m.ready()).toEqual([{ kind: 'failed', error: 'boom' }, { kind: 'deactivate', why: 'failover failed: boom' }, { kind: 'place-again-later' }, { kind: 'finished' }]);
    const replaced = new Takeover(4, undefined, true);
    replaced.step({ kind: 'start', activeEpoch: undefined });
    replaced.ready();
    replaced.step({ kind: 'failed', error: 'boom', current: false });
    expect(replaced.ready()).toEqual([{ kind: 'failed', error: 'boom' }, { kind: 'finished' }]);
  });
});

describe('one call by name (calling.ts)', () => {
  const no = (): boolean => false;
  /** A call by node 1 (deadline 5000) that went to the ready host of `v`: what it asks for next is in `ready()` after a failure. */
  const calledRemote = (v: KeyServiceInfo = info()): CallByName => {
    const m = new CallByName(5000);
    m.step({ kind: 'look', info: v, unknown: no });
    m.step({ kind: 'attempt', me: 1, registeredHere: false });
    m.ready();
    return m;
  };

  it('waits for a ready host, calls it (here when this node hosts and registers it), settles on its answer', () => {
    const m = new CallByName(5000);
    m.step({ kind: 'look', info: info({ ready: false }), unknown: no });
    expect(m.ready()).toEqual([{ kind: 'wait', epoch: 3, until: 5000, readyIsChange: true }]);
    m.step({ kind: 'look', info: info(), unknown: no });
    expect(m.ready()).toEqual([{ kind: 'host-ready', info: info() }]);
    m.step({ kind: 'attempt', me: 2, registeredHere: true });
    expect(m.ready()).toEqual([{ kind: 'call', info: info(), local: true }]);
    const remote = new CallByName(5000);
    remote.step({ kind: 'look', info: info(), unknown: no });
    remote.ready();
    remote.step({ kind: 'attempt', me: 2, registeredHere: false });
    expect(remote.ready()).toEqual([{ kind: 'call', info: info(), local: false }]);
  });

  it('fails a halted or unknown key service at once, and a wait for a host with its own error', () => {
    const halted = new CallByName(5000);
    halted.step({ kind: 'look', info: info({ host: undefined, ready: false, halted: true, reason: 'gone' }), unknown: no });
    expect(halted.ready()).toEqual([{ kind: 'halted', reason: 'gone' }]);
    const unknown = new CallByName(5000);
    unknown.step({ kind: 'look', info: undefined, unknown: () => true });
    expect(unknown.ready()).toEqual([{ kind: 'unknown' }]);
    const waiting = new CallByName(5000);
    waiting.step({ kind: 'look', info: undefined, unknown: no });
    waiting.ready();
    waiting.step({ kind: 'wait-failed', timedOut: true, now: 5000 });
    expect(waiting.ready()).toEqual([{ kind: 'rethrow' }]);
  });

  it('after a failure: the next host when it did not run, one retry when it may have run and is idempotent, else the error', () => {
    const m = calledRemote();
    m.step({ kind: 'failed', failure: failure({ code: 'ICS_ERR_NODE_DOWN', sent: 'sent' }), idempotent: true, now: 1000, rpcTimeoutMs: 100 });
    expect(m.ready()).toEqual([{ kind: 'wait', epoch: 3, until: 5000, readyIsChange: false }]);
    // The next host, retried once already: a second loss is the caller's.
    m.step({ kind: 'look', info: info({ host: 3, epoch: 4 }), unknown: no });
    m.step({ kind: 'attempt', me: 1, registeredHere: false });
    m.ready();
    m.step({ kind: 'failed', failure: failure({ code: 'ICS_ERR_NODE_DOWN', sent: 'sent' }), idempotent: true, now: 2000, rpcTimeoutMs: 100 });
    expect(m.ready()).toEqual([{ kind: 'throw' }]);
  });

  it('a refusal of another history that outlasts the deadline fails with the host and its history; an unreachable host is looked at again', () => {
    const m = calledRemote();
    m.step({ kind: 'failed', failure: failure({ otherHistory: { host: 'h2' } }), idempotent: false, now: 1000, rpcTimeoutMs: 100 });
    m.ready();
    m.step({ kind: 'wait-failed', timedOut: true, now: 5000 });
    expect(m.ready()).toEqual([{ kind: 'history', host: 2, hostHistory: 'h2' }]);
    const u = calledRemote();
    u.step({ kind: 'failed', failure: failure({ unreachable: true }), idempotent: false, now: 1000, rpcTimeoutMs: 100 });
    expect(u.ready()).toEqual([{ kind: 'wait', epoch: 3, until: 1100, readyIsChange: false }]);
    u.step({ kind: 'wait-failed', timedOut: true, now: 1100 });
    // Nothing to do but look again.
    expect(u.ready()).toEqual([]);
    u.step({ kind: 'look', info: info(), unknown: no });
    expect(u.ready()).toEqual([{ kind: 'host-ready', info: info() }]);
  });
});
