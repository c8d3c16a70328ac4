/**
 * The programmatic API. Errors are returned as data (`IcsgenError[]`), never
 * thrown for a bad IDL file.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { type BreakingChange, compareFiles } from './compat.js';
import { type EmitMode, emitFile } from './emit.js';
import type { IcsgenError } from './errors.js';
import { type LoadedFile, type LoadOptions, loadProgram, outputName } from './resolve.js';

export interface GenerateOptions extends LoadOptions {
  /**
   * `ts`: one `<name>.gen.ts` per file. `js`: plain JavaScript (`<name>.gen.js`,
   * an ES module) and its declarations (`<name>.gen.d.ts`), for projects
   * without a TypeScript toolchain. @default 'ts'
   */
  lang?: 'ts' | 'js';
}

export interface GeneratedFile {
  /** The `.ics` file it was generated from, as shown to the user. */
  source: string;
  /** The output file name, e.g. `kv.gen.ts`, or `kv.gen.js` and `kv.gen.d.ts` (all outputs go flat into one directory). */
  name: string;
  content: string;
}

export interface GenerateResult {
  /** Empty when there are errors. */
  files: GeneratedFile[];
  errors: IcsgenError[];
}

/**
 * Generates one module for each input file and for each file they import
 * (the generated modules import each other as `./name.gen.js`); with
 * `lang: 'js'`, a JavaScript module and its declarations for each.
 */
export function generate(inputs: string[], options: GenerateOptions = {}): GenerateResult {
  const program = loadProgram(inputs, options);
  if (program.errors.length > 0) return { files: [], errors: program.errors };
  const file = (f: LoadedFile, mode: EmitMode): GeneratedFile => ({
    source: f.ast.file,
    name: outputName(f.path, mode === 'dts' ? 'd.ts' : mode),
    content: emitFile(f, mode),
  });
  const modes: EmitMode[] = options.lang === 'js' ? ['js', 'dts'] : ['ts'];
  return { files: program.files.flatMap((f) => modes.map((m) => file(f, m))), errors: [] };
}

/** Writes generated files into `outDir` (created if missing); returns the paths written. */
export function writeGenerated(outDir: string, files: GeneratedFile[]): string[] {
  mkdirSync(outDir, { recursive: true });
  return files.map((f) => {
    const path = join(outDir, f.name);
    writeFileSync(path, f.content);
    return path;
  });
}

export interface StaleFile {
  path: string;
  reason: 'missing' | 'differs';
}

/** The files in `outDir` that are missing or differ from what would be generated. */
export function checkGenerated(outDir: string, files: GeneratedFile[], options: { cwd?: string } = {}): StaleFile[] {
  const cwd = options.cwd ?? process.cwd();
  const stale: StaleFile[] = [];
  for (const f of files) {
    const path = resolve(cwd, outDir, f.name);
    let current: string | undefined;
    try {
      current = readFileSync(path, 'utf8');
    } catch {
      current = undefined;
    }
    if (current !== f.content) stale.push({ path: relative(cwd, path) || path, reason: current === undefined ? 'missing' : 'differs' });
  }
  return stale;
}

export interface CompatibilityResult {
  changes: BreakingChange[];
  errors: IcsgenError[];
}

/** The changes from `oldFile` to `newFile` that break peers still on the old interface. */
export function checkCompatibility(oldFile: string, newFile: string, options: LoadOptions = {}): CompatibilityResult {
  // Loaded separately: both versions usually declare the same names and addresses.
  const before = loadProgram([oldFile], options);
  const after = loadProgram([newFile], options);
  const errors = [...before.errors, ...after.errors];
  if (errors.length > 0) return { changes: [], errors };
  return { changes: compareFiles(before.inputs[0]!, after.inputs[0]!), errors: [] };
}
