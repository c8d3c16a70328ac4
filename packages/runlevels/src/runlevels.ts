/**
 * Cluster run levels (CLMS features 15–16) on the registry: an application
 * declares ordered phases (e.g. `starting → serving → draining`); the
 * cluster has a target phase; each node walks its own phase towards the
 * target one step at a time, running the application's `enter` and `leave`
 * callbacks, and publishes where it is. A node enters a phase only when the
 * target allows it; a node that joins later walks up to the target before
 * it counts as up for the application; `leave()` walks back down.
 *
 * State lives in a registry map: `runlevels/target` (the cluster's target)
 * and `runlevels/node/<n>` (owned by each node's incarnation, so it
 * vanishes when the node goes down).
 */
import type { ClusterNode } from '@clusterinfra/core';
import { type Entry, type Registry, RegistryError } from '@clusterinfra/registry';
import { EventEmitter } from 'eventemitter3';
import { checkArguments } from './args.js';

export const TARGET_KEY = 'runlevels/target';
export const NODE_PREFIX = 'runlevels/node/';

export interface RunLevelsOptions {
  /** The phases in order, at least one; the first is where every node starts. */
  phases: readonly string[];
  /** Runs before this node enters `phase` (walking up); the node publishes the phase once it returns. */
  enter?: (phase: string) => void | Promise<void>;
  /** Runs before this node leaves `phase` (walking down). */
  leave?: (phase: string) => void | Promise<void>;
}

/** One step of a node towards the target: the pure decision. */
export function nextStep(phases: readonly string[], mine: string | undefined, target: string | undefined): { kind: 'enter' | 'leave'; phase: string } | undefined {
  const t = target === undefined ? 0 : phases.indexOf(target);
  if (mine === undefined) return { kind: 'enter', phase: phases[0]! };
  const m = phases.indexOf(mine);
  if (t < 0 || m < 0 || m === t) return undefined;
  return m < t ? { kind: 'enter', phase: phases[m + 1]! } : { kind: 'leave', phase: mine };
}

export interface RunLevelsEvents {
  /** This node's phase changed. */
  phase: (info: { phase: string | undefined }) => void;
}

export class RunLevels extends EventEmitter<RunLevelsEvents> {
  private mine: string | undefined;
  private walking: Promise<void> | undefined;
  private again = false;
  private floor: string | undefined;
  /** `onChange` is listened to (between start and close or leave): once, however often start is called. */
  private following = false;
  private readonly onChange = (e: { key: string }): void => {
    if (e.key === TARGET_KEY) void this.walk().catch(() => {});
  };

  constructor(
    private readonly node: ClusterNode,
    private readonly registry: Registry,
    private readonly opts: RunLevelsOptions,
  ) {
    super();
    checkArguments(node, registry, opts);
    if (opts.phases.length === 0 || new Set(opts.phases).size !== opts.phases.length) {
      throw new RegistryError('REGISTRY_ERR_INVALID_VALUE', 'phases must be a non-empty list of distinct names');
    }
  }

  /** This node's phase (undefined before start and after leave). */
  get phase(): string | undefined {
    return this.mine;
  }

  /** The cluster's target phase (the first phase until someone moves it). */
  get target(): string {
    const v = this.registry.get(TARGET_KEY)?.value;
    return typeof v === 'string' && this.opts.phases.includes(v) ? v : this.opts.phases[0]!;
  }

  /** Where every node is, by node number, from the map. */
  phases(): Map<number, string> {
    const out = new Map<number, string>();
    for (const e of this.registry.entries(NODE_PREFIX)) {
      const v = e.value as { phase?: unknown };
      if (typeof v?.phase === 'string') out.set(Number(e.key.slice(NODE_PREFIX.length)), v.phase);
    }
    return out;
  }

  /** Nodes that count as up for the application: Up in the membership and at the target phase. */
  upNodes(): number[] {
    const at = this.phases();
    return this.node
      .membership()
      .members.filter((m) => m.state === 'Up' && at.get(m.node) === this.target)
      .map((m) => m.node)
      .sort((a, b) => a - b);
  }

  /** Every Up node has reached `phase` (one of the phases: another is refused, as by `moveCluster`). */
  reached(phase: string): boolean {
    this.checkPhase(phase);
    const at = this.phases();
    return this.node
      .membership()
      .members.filter((m) => m.state === 'Up')
      .every((m) => at.get(m.node) === phase);
  }

  /** The last error of a walk in the background (a write that failed); the next target change retries. */
  lastError: unknown;

  /** Enter the first phase, then follow the target. Call after `registry.start()`. */
  async start(): Promise<this> {
    // Again after leave(): follow the target again from the first phase. A
    // second start() while following adds no second listener (each target
    // change walked twice, one more listener per call).
    this.floor = undefined;
    if (!this.following) {
      this.following = true;
      this.registry.on('change', this.onChange);
    }
    await this.walk();
    return this;
  }

  /** Move the whole cluster to `phase`: every node walks there (see `reached`). */
  async moveCluster(phase: string): Promise<Entry> {
    this.checkPhase(phase);
    return this.registry.put(TARGET_KEY, phase);
  }

  private checkPhase(phase: unknown): void {
    if (!this.opts.phases.includes(phase as string)) throw new RegistryError('REGISTRY_ERR_INVALID_VALUE', `unknown phase ${JSON.stringify(phase)}`);
  }

  /** Stop following the target where this node is (its phase stays published until it goes down or leaves). */
  close(): void {
    this.following = false;
    this.registry.off('change', this.onChange);
  }

  /** Walk this node down to the first phase, leave it, and stop following the target. */
  async leave(): Promise<void> {
    // Never entered (no start(), or left already): nothing to leave. Walking
    // to the floor would enter the first phase (running enter) only to leave it.
    if (this.mine === undefined && !this.walking) {
      this.close();
      return;
    }
    this.floor = this.opts.phases[0];
    await this.walk();
    this.close();
    if (this.mine !== undefined) await this.opts.leave?.(this.mine);
    this.mine = undefined;
    await this.registry.delete(this.key);
    await this.publishMeta();
    this.emit('phase', { phase: undefined });
  }

  /**
   * The phase in this node's membership metadata too (`meta.runlevel`), so
   * the admin endpoint, its page and `cluster status` show it. Metadata is
   * replaced whole, so the rest is kept.
   */
  private async publishMeta(): Promise<void> {
    const { runlevel: _old, ...rest } = this.node.info()?.meta ?? {};
    await this.node.setInfo(this.mine === undefined ? rest : { ...rest, runlevel: this.mine });
  }

  private get key(): string {
    return `${NODE_PREFIX}${this.node.nodeNum}`;
  }

  /** Walk towards the target, one step at a time; one walk at a time, again if the target moved meanwhile. */
  private walk(): Promise<void> {
    if (this.walking) {
      this.again = true;
      return this.walking;
    }
    const walking = (async () => {
      do {
        this.again = false;
        for (;;) {
          const step = nextStep(this.opts.phases, this.mine, this.floor ?? this.target);
          if (!step) break;
          if (step.kind === 'enter') {
            await this.opts.enter?.(step.phase);
            this.mine = step.phase;
          } else {
            await this.opts.leave?.(step.phase);
            this.mine = this.opts.phases[this.opts.phases.indexOf(step.phase) - 1];
          }
          await this.registry.put(this.key, { phase: this.mine ?? null, incarnation: this.node.incarnation }, { owned: true });
          await this.publishMeta();
          this.emit('phase', { phase: this.mine });
        }
      } while (this.again);
    })().finally(() => (this.walking = undefined));
    this.walking = walking.catch((err: unknown) => {
      this.lastError = err;
    });
    return walking;
  }
}

/** Run levels for `node` on `registry` (started). */
export function createRunLevels(node: ClusterNode, registry: Registry, options: RunLevelsOptions): RunLevels {
  return new RunLevels(node, registry, options);
}
