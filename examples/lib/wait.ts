/** Waiting in the examples: real timers, a ceiling, and a message that says what did not happen. */

/** Resolves once `cond()` holds (checked every `everyMs`); rejects after `timeoutMs`. */
export async function until(cond: () => boolean, what: string, timeoutMs = 30_000, everyMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A clock for example output: `+0.123s`. */
export function stopwatch(): () => string {
  const t0 = performance.now();
  return () => `+${((performance.now() - t0) / 1000).toFixed(3)}s`;
}
