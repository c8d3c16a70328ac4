import { posix } from 'node:path';
import type { LoadOptions } from '../src/index.js';

/** Options that read `.ics` sources from memory, with paths relative to /virtual. */
export function virtual(files: Record<string, string>): LoadOptions & { cwd: string } {
  const cwd = '/virtual';
  const byPath = new Map(Object.entries(files).map(([name, text]) => [posix.join(cwd, name), text]));
  return { cwd, readFile: (path) => byPath.get(path) };
}
