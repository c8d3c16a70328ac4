/**
 * The `icsgen` command, as a function of its arguments so tests run it in
 * process. It returns the exit code: 0 on success, 1 on IDL errors, stale
 * generated files (`--check`) or breaking changes (`--against`), 2 on a
 * usage error. It prints messages, never stack traces.
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { checkCompatibility, checkGenerated, generate, writeGenerated } from '../api.js';
import { formatError, type IcsgenError } from '../errors.js';

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** @default process.cwd() */
  cwd?: string;
}

const defaultIo: CliIo = {
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
};

interface Flags {
  out?: string;
  lang?: string;
  check?: boolean;
  against?: string;
}

const USAGE_EXAMPLES = `
Examples:
  icsgen kv.ics --out src/gen          generate src/gen/kv.gen.ts
  icsgen kv.ics --out src/gen --check  exit 1 if src/gen is not up to date (for CI)
  icsgen kv.ics --out gen --lang js    generate gen/kv.gen.js and gen/kv.gen.d.ts
  icsgen --against old/kv.ics kv.ics   list changes that break peers on old/kv.ics
`;

/** False when missing or unreadable (`a-file/sub`): writing then fails with the system's reason. */
function isFile(path: string): boolean {
  try {
    return statSync(path, { throwIfNoEntry: false })?.isFile() ?? false;
  } catch {
    return false;
  }
}

export async function runCli(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const cwd = io.cwd ?? process.cwd();
  const printErrors = (errors: IcsgenError[]): number => {
    for (const e of errors) io.stderr(`${formatError(e)}\n`);
    io.stderr(`icsgen: ${errors.length} error${errors.length === 1 ? '' : 's'}\n`);
    return 1;
  };
  let flags: Flags = {};
  let files: string[] = [];
  const program = new Command('icsgen')
    .description('Generate ICS service and key-service descriptors, types and zod schemas (TypeScript, or JavaScript with .d.ts) from .ics interface files.')
    .argument('[files...]', '.ics files (one .gen.ts each, plus one per imported file)')
    .option('-o, --out <dir>', 'directory to write the generated files to')
    .option('--lang <lang>', "'ts' (<name>.gen.ts) or 'js' (<name>.gen.js and <name>.gen.d.ts, no TypeScript needed)", 'ts')
    .option('--check', 'do not write: exit 1 if the files in --out differ from what would be generated')
    .option('--against <old>', 'compare the one given file with this older version and list breaking changes')
    .addHelpText('after', USAGE_EXAMPLES)
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .action((args: string[], opts: Flags) => {
      files = args;
      flags = opts;
    });
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    throw e;
  }
  const usage = (msg: string): number => {
    io.stderr(`icsgen: ${msg}\n(run icsgen --help for usage)\n`);
    return 2;
  };

  if (flags.against !== undefined) {
    if (files.length !== 1) return usage('--against takes exactly one new file: icsgen --against <old.ics> <new.ics>');
    if (flags.out !== undefined || flags.check) return usage('--against cannot be combined with --out or --check');
    const result = checkCompatibility(flags.against, files[0]!, { cwd });
    if (result.errors.length > 0) return printErrors(result.errors);
    for (const c of result.changes) {
      io.stdout(`${formatError({ ...c.at, message: `breaking: ${c.message}` })}\n`);
    }
    if (result.changes.length === 0) {
      io.stdout('no breaking changes\n');
      return 0;
    }
    io.stdout(`${result.changes.length} breaking change${result.changes.length === 1 ? '' : 's'}\n`);
    return 1;
  }

  if (files.length === 0) return usage('no input files');
  if (flags.out === undefined) return usage('--out <dir> is required');
  if (flags.out === '') return usage('--out needs a directory name');
  const outDir = resolve(cwd, flags.out);
  if (isFile(outDir)) return usage(`--out '${flags.out}' is a file, not a directory`);
  if (flags.lang !== 'ts' && flags.lang !== 'js') return usage(`--lang must be 'ts' or 'js', not '${flags.lang}'`);
  const result = generate(files, { cwd, lang: flags.lang });
  if (result.errors.length > 0) return printErrors(result.errors);
  if (flags.check) {
    const stale = checkGenerated(flags.out, result.files, { cwd });
    for (const s of stale) io.stderr(`${s.path}: ${s.reason === 'missing' ? 'missing' : 'out of date'}; run icsgen without --check\n`);
    if (stale.length > 0) return 1;
    io.stdout(`${result.files.length} generated file${result.files.length === 1 ? ' is' : 's are'} up to date\n`);
    return 0;
  }
  let written: string[];
  try {
    written = writeGenerated(outDir, result.files);
  } catch (e) {
    // A directory in the way, no permission, a full disk: the system's reason, no stack trace.
    io.stderr(`icsgen: cannot write to ${flags.out}: ${(e as Error).message}\n`);
    return 1;
  }
  io.stdout(`wrote ${written.length} file${written.length === 1 ? '' : 's'} to ${flags.out}\n`);
  return 0;
}
