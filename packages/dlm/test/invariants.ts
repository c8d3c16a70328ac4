/**
 * The DLM's invariants, checked from what the owners see (shared by the
 * hand-driven protocol world and the cluster tests):
 *
 * - safety: the locks live owners hold on one resource are pairwise
 *   compatible (a lock being converted counts as the weaker of its two
 *   modes; one being released counts as nothing);
 * - fencing: a grant's token is above the token of every incompatible grant
 *   made before it on that resource, and no token is granted twice;
 * - value blocks: a valid value block seen by a grant is never older than a
 *   valid one seen by a grant with a lower token (version 0 is a resource
 *   that started again empty, not an older value);
 * - a departed node's lock is dropped at most once, and only a dead one's.
 */
import { expect } from 'vitest';
import { compatible, isDownConversion, LOCK_MODES, type LockMode } from '../src/modes.js';
import type { ValueBlock } from '../src/protocol/resource.js';

/** The weakest mode both `a` and `b` convert down to: what a lock being converted may be used for. */
export function effectiveMode(a: LockMode, b: LockMode | null): LockMode {
  if (b === null) return a;
  for (const m of [...LOCK_MODES].reverse()) if (isDownConversion(a, m) && isDownConversion(b, m)) return m;
  return 'NL';
}

export interface OwnedLock {
  id: number;
  resource: string;
  granted: LockMode | null;
  requested: LockMode | null;
  phase: string;
}

interface Grant {
  mode: LockMode;
  token: number;
  version: number;
  valid: boolean;
}

export class Invariants {
  readonly issued = new Set<string>();
  readonly grants = new Map<string, Grant[]>();
  readonly departed = new Set<string>();

  /**
   * An owner took a grant. `ordered`: also require that a later incompatible
   * grant carries a higher token (true where no node can be cut off or
   * paused; a zombie master may grant late, with a token a fencing store
   * refuses, which is what tokens are for).
   */
  granted(e: { resource: string; mode: LockMode; token: number; vb: ValueBlock }, ordered = true): void {
    const tk = `${e.resource}#${e.token}`;
    expect(this.issued.has(tk), `token ${e.token} on ${e.resource} granted twice`).toBe(false);
    this.issued.add(tk);
    const list = this.grants.get(e.resource) ?? [];
    for (const g of list) {
      if (ordered && !compatible(g.mode, e.mode)) expect(g.token, `incompatible grant on ${e.resource} with a lower token after a higher one`).toBeLessThan(e.token);
      if (e.vb.version === 0 || g.version === 0 || !g.valid || !e.vb.valid) continue;
      if (g.token < e.token) expect(e.vb.version, `value block of ${e.resource} went back in time`).toBeGreaterThanOrEqual(g.version);
      else expect(e.vb.version, `value block of ${e.resource} went back in time`).toBeLessThanOrEqual(g.version);
    }
    list.push({ mode: e.mode, token: e.token, version: e.vb.version, valid: e.vb.valid });
    this.grants.set(e.resource, list);
  }

  /** A master dropped the lock `node:incarnation:id` of a departed node. */
  departedLock(node: number, incarnation: number, id: number, dead: boolean): void {
    const k = `${node}:${incarnation}:${id}`;
    expect(this.departed.has(k), `departed lock ${k} released twice`).toBe(false);
    expect(dead, `lock ${k} of a live node dropped as departed`).toBe(true);
    this.departed.add(k);
  }

  /** Never two incompatible locks held by live owners on one resource. */
  safety(owners: Array<{ who: number; locks: readonly OwnedLock[] }>): void {
    const held = new Map<string, Array<{ who: string; mode: LockMode }>>();
    for (const o of owners) {
      for (const l of o.locks) {
        if (l.granted === null || l.phase === 'releasing') continue;
        const mode = l.phase === 'idle' ? l.granted : effectiveMode(l.granted, l.requested);
        const list = held.get(l.resource) ?? [];
        for (const h of list) expect(compatible(h.mode, mode), `${h.who} holds ${h.mode} and ${o.who}:${l.id} holds ${mode} on ${l.resource}`).toBe(true);
        list.push({ who: `${o.who}:${l.id}`, mode });
        held.set(l.resource, list);
      }
    }
  }
}
