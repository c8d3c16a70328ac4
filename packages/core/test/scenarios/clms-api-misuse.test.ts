/**
 * The membership API used wrongly: before start(), after close(), with
 * arguments it cannot take. Each call fails at once with a typed error and
 * a stable code (never a TypeError, never a NoQuorumError ten failure
 * timeouts later), and the cluster goes on. Memory network, virtual clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ClusterNode, MAX_META_BYTES, silentLogger, VirtualClock } from '@clusterinfra/core';
import { createMemoryNetwork, memory } from '@clusterinfra/transport-mem';
import { allUp, range, type SimCluster, simCluster } from './clms-harness.js';
import { failure, thrown } from './refusals.js';


const lone = (extra: Record<string, unknown> = {}): ClusterNode => {
  const network = createMemoryNetwork({ seed: 1, clock: new VirtualClock() });
  return new ClusterNode({ nodeNum: 4, clusterName: 'sim', transport: memory({ network, address: 'node-4' }), candidates: [1], seeds: ['node-1'], logger: silentLogger, ...extra });
};

describe('before start()', () => {
  it('incarnation is 0 and address undefined; setInfo and declareDown refuse with NotAMemberError naming this node', async () => {
    const node = lone();
    expect(node.incarnation).toBe(0);
    expect(node.address).toBeUndefined();
    expect(await failure(node.setInfo({ role: 'a' }))).toEqual({ name: 'NotAMemberError', code: 'CLMS_ERR_NOT_MEMBER', node: 4 });
    expect(await failure(node.declareDown(2))).toEqual({ name: 'NotAMemberError', code: 'CLMS_ERR_NOT_MEMBER', node: 4 });
    await node.close();
  });

  it('a meta option that is too large or not plain data is refused by the constructor', () => {
    const invalid = { name: 'InvalidOptionError', code: 'CONFIG_ERR_INVALID_OPTION' };
    expect(thrown(() => lone({ meta: { big: 'x'.repeat(MAX_META_BYTES) } }))).toEqual(invalid);
    expect(thrown(() => lone({ meta: { when: new Date(0) } }))).toEqual(invalid);
    expect(thrown(() => lone({ meta: { big: 'x'.repeat(MAX_META_BYTES - 100) } }))).toBeUndefined();
  });
});

describe('a formed cluster', () => {
  let s: SimCluster | undefined;
  afterEach(async () => {
    await s?.close();
    s = undefined;
  });

  it('refuses bad arguments at once, and a good call still works after them', async () => {
    s = simCluster(3);
    await s.until(() => allUp(s!, range(3)), 30_000, 'formation');
    const node = s.node(2);
    const invalid = { name: 'InvalidArgumentError', code: 'ICS_ERR_INVALID_ARGUMENT' };
    for (const meta of [5, null, [1], { big: 'x'.repeat(MAX_META_BYTES) }, { when: new Date(0) }, { f: () => 1 }]) {
      expect(await failure(node.setInfo(meta as Record<string, unknown>))).toEqual(invalid);
    }
    for (const target of [0, -1, 1.5, Number.NaN, '3' as unknown as number]) expect(await failure(node.declareDown(target))).toEqual(invalid);
    expect(await failure(node.declareDown(3, 'x'.repeat(1001)))).toEqual(invalid);
    expect(await failure(node.declareDown(99))).toEqual({ name: 'NotAMemberError', code: 'CLMS_ERR_NOT_MEMBER', node: 99 });
    // Nothing was asked of the master: the cluster is as it was, and a good setInfo goes through.
    expect(range(3).every((n) => s!.node(n).info(3)?.state === 'Up')).toBe(true);
    let done = false;
    void node.setInfo({ role: 'b' }).then(() => (done = true));
    await s.until(() => done && range(3).every((n) => s!.node(n).info(2)?.meta.role === 'b'), 30_000, 'the meta transition');
  });

  it('registerSubsystem refuses a subsystem without a name, with a band that is no number or callbacks that are no functions', async () => {
    s = simCluster(3);
    await s.until(() => allUp(s!, range(3)), 30_000, 'formation');
    const node = s.node(1);
    const invalid = { name: 'InvalidArgumentError', code: 'ICS_ERR_INVALID_ARGUMENT' };
    for (const sub of [{}, { name: '' }, { name: 'x'.repeat(201) }, { name: 's', band: Number.NaN }, { name: 's', band: 'high' }, { name: 's', nodeup: 5 }, { name: 's', nodedown: 'no' }]) {
      expect(thrown(() => node.registerSubsystem(sub as never))).toEqual(invalid);
    }
    // None of them was registered: the same name is free.
    expect(thrown(() => node.registerSubsystem({ name: 's', band: 2 }))).toBeUndefined();
  });

  it('watch, whenUp and callKeyService refuse options and names of the wrong kind at once', async () => {
    s = simCluster(3);
    await s.until(() => allUp(s!, range(3)), 30_000, 'formation');
    const node = s.node(1);
    const invalid = { name: 'InvalidArgumentError', code: 'ICS_ERR_INVALID_ARGUMENT' };
    // watch(null) threw a TypeError at the first next(); a since of 'x' replayed nothing and waited for ever.
    for (const o of [null, 5, { since: 'x' }, { since: -1 }, { since: 1.5 }, { signal: 5 }]) expect(thrown(() => node.watch(o as never)), JSON.stringify(o)).toEqual(invalid);
    // A signal of 5 was taken (and listened to, had the node not been Up yet).
    for (const o of [null, { signal: {} }]) expect(await failure(node.whenUp(o as never))).toEqual(invalid);
    // A name or method that is not a string was looked up as its String(): CLMS_ERR_KEYSERVICE_UNKNOWN.
    for (const [name, method] of [[5, 'm'], ['', 'm'], ['k', 5], ['k', '']]) expect(await failure(node.callKeyService(name as never, method as never))).toEqual(invalid);
    // The good calls still work: a watch replays the history from 1.
    const g = node.watch({ since: 1 });
    const first = await g.next();
    expect(first.value).toMatchObject({ type: 'transition', transition: { number: 1 } });
    await g.return(undefined);
    expect(await failure(node.whenUp())).toBeUndefined();
  });

  it('after close(), setInfo and declareDown refuse with NodeClosedError', async () => {
    s = simCluster(3);
    await s.until(() => allUp(s!, range(3)), 30_000, 'formation');
    const node = s.node(3);
    let closed = false;
    void node.close().then(() => (closed = true));
    await s.until(() => closed, 10_000, 'close');
    const closedError = { name: 'NodeClosedError', code: 'CLMS_ERR_CLOSED' };
    expect(await failure(node.setInfo({ role: 'c' }))).toEqual(closedError);
    expect(await failure(node.declareDown(1))).toEqual(closedError);
  });
});
