/**
 * The six lock modes of the VMS lock manager (and OpenDLM), weakest first,
 * and the standard compatibility matrix. Pure data: no state, no IO.
 */
export const LOCK_MODES = ['NL', 'CR', 'CW', 'PR', 'PW', 'EX'] as const;

/**
 * - `NL` null: holds the resource (and its value block) without access.
 * - `CR` concurrent read: read, others may write.
 * - `CW` concurrent write: write, others may read or write.
 * - `PR` protected read: read, nobody writes.
 * - `PW` protected write: write, others may only read with CR.
 * - `EX` exclusive.
 */
export type LockMode = (typeof LOCK_MODES)[number];

// Rows and columns in LOCK_MODES order: COMPAT[a][b] says whether a lock
// granted in mode a lets another lock be granted in mode b.
const COMPAT: readonly (readonly boolean[])[] = [
  /* NL */ [true, true, true, true, true, true],
  /* CR */ [true, true, true, true, true, false],
  /* CW */ [true, true, true, false, false, false],
  /* PR */ [true, true, false, true, false, false],
  /* PW */ [true, true, false, false, false, false],
  /* EX */ [true, false, false, false, false, false],
];

const index = (m: LockMode): number => LOCK_MODES.indexOf(m);

export function isLockMode(x: unknown): x is LockMode {
  return typeof x === 'string' && (LOCK_MODES as readonly string[]).includes(x);
}

/** Whether locks in modes `a` and `b` may be granted on one resource at once (symmetric). */
export function compatible(a: LockMode, b: LockMode): boolean {
  return COMPAT[index(a)]![index(b)]!;
}

/**
 * A conversion from `from` to `to` is *down* when every mode compatible with
 * `from` is compatible with `to` too: it can never conflict with anything
 * already granted, so it is granted at once, ahead of any queue. (PW → PR is
 * down; PR → CW is not, though CW is not "stronger" than PR either.)
 */
export function isDownConversion(from: LockMode, to: LockMode): boolean {
  return LOCK_MODES.every((m) => !compatible(from, m) || compatible(to, m));
}

/** Modes whose holder may write the value block when it releases or converts down. */
export function writesValue(m: LockMode): boolean {
  return m === 'PW' || m === 'EX';
}
