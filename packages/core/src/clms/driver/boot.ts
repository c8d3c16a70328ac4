/**
 * An incarnation begins: a new ICS endpoint (a new incarnation number),
 * the CLMS services and the application's services carried over from the
 * former incarnation registered on it, its events wired to CLMS, the
 * heartbeat timer and the detector started, and then the join loop
 * (driver/join.ts), which resolves once this incarnation is a member.
 */
import { canaries } from '../../canaries.js';
import { every, type TimerHandle } from '../../clock/index.js';
import { ServiceExistsError } from '../../errors/index.js';
import { detached } from '../../ics/context.js';
import { createIcs, type Ics } from '../../ics/ics.js';
import type { ServiceRegistration } from '../../ics/types.js';
import { defaultLogger } from '../../logging/index.js';
import type { RandomSource } from '../../random/index.js';
import type { NodedownDetector } from '../detector.js';
import type { ResolvedClusterNodeOptions, Timing } from '../options.js';
import type { JoinTracker } from '../progress.js';
import type { Message as CoreInput } from '../protocol/core.js';
import { registerServices, type ServePort } from './serve.js';

/** What beginning an incarnation needs of its node. */
export interface BootPort extends ServePort {
  readonly clusterName: string;
  readonly random: RandomSource;
  readonly timing: Timing;
  readonly opts: Pick<ResolvedClusterNodeOptions, 'transport' | 'logger' | 'ics'>;
  readonly detector: NodedownDetector;
  readonly progress: JoinTracker;
  /** Make `ics` the endpoint of the current incarnation (`ics()` returns it). */
  setIcs(ics: Ics): void;
  /** Attach the parts that follow the endpoint across incarnations (key services, the `communication` handle). */
  attach(ics: Ics): void;
  /** ICS asks before it lets a new incarnation of a known node in (driver/admission.ts). */
  admitIncarnation(node: number, incarnation: number): boolean | Promise<boolean>;
  /** The transport lost a link to that incarnation of `node`. */
  onLinkLost(node: number, incarnation: number): void;
  /** A member refused this incarnation's link (driver/admission.ts). */
  onRefused(node: number, reason: 'incarnation-down' | 'newer-incarnation' | 'node-number-in-use'): void;
  step(input: CoreInput): void;
  /** Every heartbeat interval. */
  tick(): void;
  /** Keep a timer of this incarnation (cancelled at a restart or close). */
  addTimer(t: TimerHandle): void;
  /** The join loop of this incarnation (driver/join.ts). */
  joinLoop(): Promise<void>;
}

/** Begin an incarnation; `carried`: services the application registered on the former incarnation's ICS. */
export async function boot(port: BootPort, carried: ServiceRegistration[] = []): Promise<void> {
  const { core, clock, timing, nodeNum, detector } = port;
  const former = port.ics() as Ics | undefined;
  port.setIcs(
    createIcs({
      transport: port.opts.transport,
      clusterName: port.clusterName,
      nodeNum,
      clock,
      random: port.random,
      logger: port.opts.logger ?? defaultLogger(),
      peers: (n) => core.history.member(n)?.address || undefined,
      admitIncarnation: (q: { node: number; incarnation: number }) => port.admitIncarnation(q.node, q.incarnation),
      // One death, one answer: a call in flight on a lost link waits for this node's verdict on its peer.
      linkLossGraceMs: timing.failureTimeoutMs,
      ...(port.opts.ics as object),
      ...(canaries.reuseIncarnation && former ? { incarnation: former.incarnation } : {}),
    }),
  );
  const ics = port.ics();
  registerServices(port, ics);
  port.attach(ics);
  for (const reg of carried) {
    try {
      ics.registerService(reg);
    } catch (err) {
      // CLMS and key services registered theirs again already.
      if (!(err instanceof ServiceExistsError)) throw err;
    }
  }
  ics.on('link', (e) => {
    if (e.state === 'down') port.onLinkLost(e.node, e.incarnation);
  });
  ics.on('refused', (e) => port.onRefused(e.node, e.reason));
  ics.on('rejected', (info) => {
    // This very node dialling itself (its own address among the seeds) is no news.
    if (info.remote?.nodeNum !== nodeNum || info.remote.incarnation !== port.ics().incarnation) port.progress.refusedInbound(info.remoteAddress, info.error, info.remote?.nodeNum);
  });
  const phase = (): typeof core.phase => core.phase;
  try {
    await port.ics().start();
  } catch (err) {
    // Closed while this incarnation began: nothing to start.
    if (phase() === 'closed') return;
    throw err;
  }
  if (phase() === 'closed') {
    await port.ics().close();
    return;
  }
  core.phase = 'joining';
  let due = clock.now() + timing.heartbeatIntervalMs;
  port.addTimer(
    every(clock, timing.heartbeatIntervalMs, () => {
      // Our own lateness first: the tick then judges silences with it.
      port.health.tick(due, clock.now());
      port.tick();
      due = clock.now() + timing.heartbeatIntervalMs;
    }),
  );
  detector.start?.({
    self: nodeNum,
    clock,
    timing,
    // Verified as master, reported to the master as a member (protocol/detection.ts).
    suspect: (node, reason) => detached(() => port.step({ type: 'suspect', node, reason, observers: { [detector.name]: reason } })),
  });
  port.progress.begin(port.ics().incarnation);
  await port.joinLoop();
}
