import { describe, expect, it } from 'vitest';
import {
  FrameTooLargeError,
  LinkBase,
  LinkClosedError,
  type LinkCloseInfo,
  type NodeIdentity,
} from '@clusterinfra/core';

const me: NodeIdentity = { clusterName: 'c', nodeNum: 1, incarnation: 1 };
const peer: NodeIdentity = { clusterName: 'c', nodeNum: 2, incarnation: 1 };

/** A link whose "network" is the test itself. */
class TestLink extends LinkBase {
  sent: Uint8Array[] = [];
  reads = true;
  aborted = false;
  closing = false;
  constructor() {
    super({ id: 't1', direction: 'outbound', local: me, remote: peer, remoteAddress: 'x', maxFrameSize: 8 });
  }
  get bufferedBytes(): number {
    return this.sent.reduce((n, f) => n + f.byteLength, 0);
  }
  protected sendFrame(frame: Uint8Array): boolean {
    this.sent.push(frame);
    return this.bufferedBytes < 10;
  }
  protected beginClose(): void {
    this.closing = true;
  }
  protected abort(): void {
    this.aborted = true;
  }
  protected onPause(): void {
    this.reads = false;
  }
  protected onResume(): void {
    this.reads = true;
  }
  arrive(f: Uint8Array): void {
    this.receive(f);
  }
  peerDone(info: LinkCloseInfo): void {
    this.finish(info);
  }
  flushed(): void {
    this.sent = [];
    this.drained();
  }
}

describe('LinkBase', () => {
  it('starts paused, keeps frames, and delivers them in order on resume', () => {
    const link = new TestLink();
    const got: number[] = [];
    link.on('frame', (f) => got.push(f[0]!));
    link.arrive(Uint8Array.of(1));
    link.arrive(Uint8Array.of(2));
    expect(got).toEqual([]);
    link.resume();
    expect(got).toEqual([1, 2]);
    link.pause();
    expect(link.reads).toBe(false);
    link.arrive(Uint8Array.of(3));
    expect(got).toEqual([1, 2]);
    link.resume();
    expect(got).toEqual([1, 2, 3]);
  });

  it('a handler that pauses stops delivery at once', () => {
    const link = new TestLink();
    const got: number[] = [];
    link.on('frame', (f) => {
      got.push(f[0]!);
      if (f[0] === 2) link.pause();
    });
    for (const b of [1, 2, 3, 4]) link.arrive(Uint8Array.of(b));
    link.resume();
    expect(got).toEqual([1, 2]);
    link.resume();
    expect(got).toEqual([1, 2, 3, 4]);
  });

  it('a handler that pauses and resumes at once gets each frame once, in order', () => {
    // As a multipath listener does: pause on a path's first frame, hand the
    // path to its logical link, which resumes it from inside the handler.
    const link = new TestLink();
    const got: number[] = [];
    const first = (f: Uint8Array): void => {
      got.push(f[0]!);
      link.pause();
      link.off('frame', first);
      link.on('frame', (g) => got.push(g[0]!));
      link.resume();
    };
    link.on('frame', first);
    for (const b of [1, 2, 3, 4]) link.arrive(Uint8Array.of(b));
    link.resume();
    expect(got).toEqual([1, 2, 3, 4]);
    expect(link.reads).toBe(true);
    link.arrive(Uint8Array.of(5));
    expect(got).toEqual([1, 2, 3, 4, 5]);
  });

  it('reports backpressure and drain', async () => {
    const link = new TestLink();
    expect(link.send(new Uint8Array(4))).toBe(true);
    expect(link.needDrain).toBe(false);
    expect(link.send(new Uint8Array(8))).toBe(false);
    expect(link.needDrain).toBe(true);
    const waiting = link.waitDrain();
    link.flushed();
    await waiting;
    expect(link.needDrain).toBe(false);
    await link.waitDrain();
  });

  it('checks the frame size before the transport sees it', () => {
    const link = new TestLink();
    expect(() => link.send(new Uint8Array(9))).toThrow(FrameTooLargeError);
    expect(link.sent).toEqual([]);
  });

  it('a graceful end waits until paused frames are delivered', async () => {
    const link = new TestLink();
    const got: number[] = [];
    let closes = 0;
    link.on('frame', (f) => got.push(f[0]!));
    link.on('close', () => closes++);
    link.arrive(Uint8Array.of(9));
    link.peerDone({ reason: 'remote-closed' });
    expect(link.state).toBe('closing');
    expect(closes).toBe(0);
    link.resume();
    expect(got).toEqual([9]);
    expect(closes).toBe(1);
    expect((await link.closed).reason).toBe('remote-closed');
  });

  it('destroy drops what is pending, closes once, and rejects waiters', async () => {
    const link = new TestLink();
    let closes = 0;
    link.on('close', () => closes++);
    link.send(new Uint8Array(8));
    link.send(new Uint8Array(8));
    const waiting = link.waitDrain();
    link.arrive(Uint8Array.of(1));
    link.destroy();
    link.destroy();
    expect(link.aborted).toBe(true);
    expect(closes).toBe(1);
    await expect(waiting).rejects.toBeInstanceOf(LinkClosedError);
    expect((await link.closed).reason).toBe('destroyed');
    expect(() => link.send(new Uint8Array(1))).toThrow(LinkClosedError);
    await expect(link.waitDrain()).rejects.toBeInstanceOf(LinkClosedError);
  });

  it('close() starts one graceful close and refuses sends after it', async () => {
    const link = new TestLink();
    const p = link.close();
    link.close();
    expect(link.closing).toBe(true);
    expect(link.state).toBe('closing');
    expect(() => link.send(new Uint8Array(1))).toThrow(LinkClosedError);
    link.peerDone({ reason: 'closed' });
    expect((await p).reason).toBe('closed');
  });

  it('waitDrain honours an abort signal', async () => {
    const link = new TestLink();
    link.send(new Uint8Array(8));
    link.send(new Uint8Array(8));
    await expect(link.waitDrain(AbortSignal.abort())).rejects.toMatchObject({ code: 'CORE_ERR_ABORTED' });
  });
});
