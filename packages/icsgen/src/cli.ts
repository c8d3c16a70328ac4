#!/usr/bin/env node
// The `icsgen` executable. All the work is in runCli, which tests call directly.
import { runCli } from './cli/run.js';

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // A bug in icsgen itself: still no stack trace unless asked for.
    process.stderr.write(`icsgen: internal error: ${error instanceof Error ? error.message : String(error)}\n`);
    if (process.env.ICSGEN_DEBUG) console.error(error);
    process.exitCode = 70;
  },
);
