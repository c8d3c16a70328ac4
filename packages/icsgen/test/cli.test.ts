import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../src/index.js';

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));

async function cli(args: string[], cwd: string): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(args, { cwd, stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
  return { code, out, err };
}

describe('icsgen CLI', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'icsgen-cli-'));
    writeFileSync(join(dir, 'a.ics'), 'import "b.ics"\nservice A channel app subservice 1 {\n  rpc get(key: string): B?\n}\n');
    writeFileSync(join(dir, 'b.ics'), 'struct B { v: int }\n');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes one .gen.ts per .ics (imports included), then --check passes', async () => {
    expect(await cli(['a.ics', '--out', 'gen'], dir)).toEqual({ code: 0, out: 'wrote 2 files to gen\n', err: '' });
    expect(readFileSync(join(dir, 'gen/a.gen.ts'), 'utf8')).toContain("import { B } from './b.gen.js';");
    expect(await cli(['a.ics', '--out', 'gen', '--check'], dir)).toEqual({ code: 0, out: '2 generated files are up to date\n', err: '' });
  });

  it('--lang js writes a .gen.js and a .gen.d.ts per .ics, which --check --lang js then accepts', async () => {
    expect(await cli(['a.ics', '--out', 'gen', '--lang', 'js'], dir)).toEqual({ code: 0, out: 'wrote 4 files to gen\n', err: '' });
    expect(readFileSync(join(dir, 'gen/a.gen.js'), 'utf8')).toContain("import { B } from './b.gen.js';");
    expect(readFileSync(join(dir, 'gen/a.gen.d.ts'), 'utf8')).toContain("import type { B } from './b.gen.js';");
    expect(await cli(['a.ics', '--out', 'gen', '--check', '--lang', 'js'], dir)).toEqual({ code: 0, out: '4 generated files are up to date\n', err: '' });
    // The TypeScript output is not there: --check without --lang js says so.
    expect((await cli(['a.ics', '--out', 'gen', '--check'], dir)).code).toBe(1);
    const bad = await cli(['a.ics', '--out', 'gen', '--lang', 'python'], dir);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("--lang must be 'ts' or 'js', not 'python'");
  });

  it('--check exits 1 when a file is missing or differs, and writes nothing', async () => {
    await cli(['a.ics', '--out', 'gen'], dir);
    writeFileSync(join(dir, 'gen/b.gen.ts'), '// edited by hand\n');
    rmSync(join(dir, 'gen/a.gen.ts'));
    const r = await cli(['a.ics', '--out', 'gen', '--check'], dir);
    expect(r.code).toBe(1);
    expect(r.err).toBe('gen/b.gen.ts: out of date; run icsgen without --check\ngen/a.gen.ts: missing; run icsgen without --check\n');
    expect(readFileSync(join(dir, 'gen/b.gen.ts'), 'utf8')).toBe('// edited by hand\n');
  });

  it('prints file:line:col: message with a caret line and exits 1 on IDL errors', async () => {
    writeFileSync(join(dir, 'b.ics'), 'struct B {\n  v: Nope\n}\n');
    const r = await cli(['a.ics', '--out', 'gen'], dir);
    expect(r).toEqual({ code: 1, out: '', err: "b.ics:2:6: unknown type 'Nope'\n    v: Nope\n       ^^^^\nicsgen: 1 error\n" });
  });

  it('--against lists breaking changes and exits 1, or says there are none', async () => {
    writeFileSync(join(dir, 'old.ics'), 'service A channel app subservice 1 {\n  rpc get(key: string): int\n  msg m()\n}\n');
    writeFileSync(join(dir, 'new.ics'), 'service A channel app subservice 1 {\n  rpc get(key: string): uint\n}\n');
    const r = await cli(['--against', 'old.ics', 'new.ics'], dir);
    expect(r.code).toBe(1);
    expect(r.out).toBe(
      [
        'new.ics:2:25: breaking: A.get result: type changed from int to uint',
        '    rpc get(key: string): uint',
        '                          ^^^^',
        'old.ics:3:7: breaking: A.m: method removed',
        '    msg m()',
        '        ^',
        '2 breaking changes',
        '',
      ].join('\n'),
    );
    expect(await cli(['--against', 'old.ics', 'old.ics'], dir)).toEqual({ code: 0, out: 'no breaking changes\n', err: '' });
  });

  it('usage errors exit 2', async () => {
    expect((await cli(['a.ics'], dir)).code).toBe(2);
    expect((await cli(['--out', 'gen'], dir)).code).toBe(2);
    expect((await cli(['--against', 'a.ics'], dir)).code).toBe(2);
    expect((await cli(['--bogus'], dir)).code).toBe(2);
    const help = await cli(['--help'], dir);
    expect(help.code).toBe(0);
    expect(help.out).toContain('--against <old>');
  });

  it('the executable prints no stack trace for a bad file', async () => {
    writeFileSync(join(dir, 'bad.ics'), 'service S subservice 1 {\n  rpc f(x: int)\n}\n');
    const tsx = here('../../../node_modules/.bin/tsx');
    const run = promisify(execFile)(tsx, [here('../src/cli.ts'), 'bad.ics', '--out', 'gen'], { cwd: dir });
    const error = (await run.then(
      () => undefined,
      (e: unknown) => e,
    )) as { code: number; stderr: string; stdout: string };
    expect(error.code).toBe(1);
    expect(error.stderr).toBe(
      "bad.ics:3:1: expected ':' and a result type (or 'void') after the arguments of rpc 'f', found '}'\n  }\n  ^\nicsgen: 1 error\n",
    );
  });
});
