/**
 * Loads the library under test.
 *
 * By default ICS and transport-tcp are bundled from their sources with
 * esbuild, configured like the published tsup build (ESM, target node20, no
 * `keepNames`), into bench/.build/, and imported from there. Running them
 * straight from source under tsx would measure tsx's transform instead:
 * tsx compiles with `keepNames: true`, which wraps every named closure in a
 * `__name(fn, "...")` call (an Object.defineProperty per closure created),
 * and ICS creates several closures per call. `--tsx` (or BENCH_TSX=1)
 * loads the sources under tsx anyway, to see that difference.
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { bundleLikePublished } from './common.js';

export type IcsLib = typeof import('./ics-lib.js');

export const USE_TSX = process.argv.includes('--tsx') || process.env.BENCH_TSX === '1';
const OUT_DIR = fileURLToPath(new URL('./.build/', import.meta.url));
export const BUNDLE = `${OUT_DIR}ics-lib.mjs`;

/** Build bench/.build/ics-lib.mjs (the client does it once, before starting the server). */
export async function buildLib(): Promise<void> {
  if (USE_TSX) return;
  await bundleLikePublished(fileURLToPath(new URL('./ics-lib.ts', import.meta.url)), BUNDLE, { sourcemap: true });
}

export async function loadLib(): Promise<IcsLib> {
  if (USE_TSX) return import('./ics-lib.js');
  return (await import(pathToFileURL(BUNDLE).href)) as IcsLib;
}
