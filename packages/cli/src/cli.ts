/**
 * The `cluster` bin. Ctrl-C (SIGINT) or SIGTERM ends `watch` and
 * `sim --keep` cleanly (exit 0); a second one exits at once.
 */
import { runCli } from './run.js';

const stop = new AbortController();
const onSignal = (): void => {
  if (stop.signal.aborted) process.exit(130);
  stop.abort();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

void runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, signal: stop.signal }).then((code) => {
  process.exitCode = code;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
});
