/** How an API refuses misuse: at once, with a typed error (the tests of scenarios/*-api-misuse). */
import { expect } from 'vitest';

/** An error as the tests compare it: its class name, its code, and the node it names when it names one. */
export interface Refusal {
  name: string;
  code: unknown;
  node?: unknown;
}

function refusal(e: Error & { code?: unknown; node?: unknown }): Refusal {
  return { name: e.name, code: e.code, ...(e.node !== undefined ? { node: e.node } : {}) };
}

/** What `p` rejects with (undefined when it resolves). It must settle without time moving: a refusal is immediate, not a timeout. */
export async function failure(p: Promise<unknown>): Promise<Refusal | undefined> {
  let settled = false;
  const out = p.then(() => undefined, refusal);
  void out.then(() => (settled = true));
  for (let i = 0; i < 5 && !settled; i++) await new Promise((r) => setImmediate(r));
  expect(settled).toBe(true);
  return out;
}

/** What `f` throws (undefined when it returns). */
export function thrown(f: () => unknown): Refusal | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    return refusal(e as Error);
  }
}
