import { mkdirSync, mkdtempSync } from 'node:fs';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import type { LoadOptions } from '../src/index.js';

/** Options that read `.ics` sources from memory, with paths relative to /virtual. */
export function virtual(files: Record<string, string>): LoadOptions & { cwd: string } {
  const cwd = '/virtual';
  const byPath = new Map(Object.entries(files).map(([name, text]) => [posix.join(cwd, name), text]));
  return { cwd, readFile: (path) => byPath.get(path) };
}

/**
 * A fresh directory inside the repo (under packages/icsgen/node_modules), so
 * that zod and @clusterinfra/* resolve from it as they would for a user.
 */
export function repoTempDir(prefix: string): string {
  const parent = fileURLToPath(new URL('../node_modules', import.meta.url));
  mkdirSync(parent, { recursive: true });
  return mkdtempSync(join(parent, prefix));
}

/** A ceiling for a tsc run on a loaded machine (it type-checks core's sources too); not a timing assertion. */
export const TSC_CEILING_MS = 180_000;

/** tsc's diagnostics for `files` under the repo's tsconfig (strict), as `file:line message`. */
export function typecheck(files: string[]): string[] {
  const root = fileURLToPath(new URL('../../..', import.meta.url));
  const config = ts.readConfigFile(join(root, 'tsconfig.json'), (p) => ts.sys.readFile(p));
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, root);
  if (parsed.options.strict !== true) throw new Error('the repo tsconfig is expected to be strict');
  const program = ts.createProgram(files, { ...parsed.options, noEmit: true });
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file ? `${d.file.fileName}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}` : '';
    return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
  });
}
