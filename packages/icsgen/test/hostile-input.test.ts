/**
 * First-contact mistakes and hostile input get a message and an exit code,
 * never a stack trace: --out that is a file or cannot be written, files that
 * are not UTF-8, types nested past the wire's limit, invisible characters.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../src/index.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'icsgen-hostile-'));
  writeFileSync(join(dir, 'ok.ics'), 'struct A { v: int }\n');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(args, { cwd: dir, stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
  return { code, out, err };
}

describe('--out', () => {
  it('a file, not a directory: a usage error (exit 2), also with --check', async () => {
    writeFileSync(join(dir, 'afile'), 'x');
    const expected = { code: 2, out: '', err: "icsgen: --out 'afile' is a file, not a directory\n(run icsgen --help for usage)\n" };
    expect(await cli(['ok.ics', '--out', 'afile'])).toEqual(expected);
    expect(await cli(['ok.ics', '--out', 'afile', '--check'])).toEqual(expected);
    expect((await cli(['ok.ics', '--out', ''])).err).toBe('icsgen: --out needs a directory name\n(run icsgen --help for usage)\n');
  });

  it('cannot be written (under a file, or a directory where the output goes): exit 1 with the reason', async () => {
    writeFileSync(join(dir, 'afile'), 'x');
    const under = await cli(['ok.ics', '--out', 'afile/sub']);
    expect(under).toMatchObject({ code: 1, out: '' });
    expect(under.err).toMatch(/^icsgen: cannot write to afile\/sub: ENOTDIR: .*\n$/);
    mkdirSync(join(dir, 'gen/ok.gen.ts'), { recursive: true });
    const blocked = await cli(['ok.ics', '--out', 'gen']);
    expect(blocked).toMatchObject({ code: 1, out: '' });
    expect(blocked.err).toMatch(/^icsgen: cannot write to gen: EISDIR: .*ok\.gen\.ts'\n$/);
  });
});

describe('input files', () => {
  it('bytes that are not UTF-8 are refused at the first one (they were read as U+FFFD), a BOM is skipped', async () => {
    writeFileSync(join(dir, 'bad.ics'), Buffer.concat([Buffer.from('struct A { v: int } /// '), Buffer.from([0xc3, 0x28]), Buffer.from('\nstruct B { w: int }\n')]));
    const r = await cli(['bad.ics', '--out', 'gen']);
    expect(r.code).toBe(1);
    expect(r.err.split('\n')[0]).toBe('bad.ics:1:25: the file is not UTF-8: byte 0xc3 at offset 24 (save it as UTF-8)');
    writeFileSync(join(dir, 'bom.ics'), '\ufeffstruct A { v: int }\n');
    expect(await cli(['bom.ics', '--out', 'gen'])).toEqual({ code: 0, out: 'wrote 1 file to gen\n', err: '' });
  });

  it('types nested past 32 levels are ICSGEN_ERR_OUT_OF_RANGE (100,000 of them overflowed the stack)', async () => {
    writeFileSync(join(dir, 'deep.ics'), `struct A { v: int${'[]'.repeat(100_000)} }\n`);
    const r = await cli(['deep.ics', '--out', 'gen']);
    expect(r.code).toBe(1);
    expect(r.err.split('\n')[0]).toBe('deep.ics:1:80: a type nests at most 32 levels (map<…>, […] and ?): the wire carries no deeper values');
    writeFileSync(join(dir, 'maps.ics'), `struct A { v: ${'map<'.repeat(200_000)}int${'>'.repeat(200_000)} }\n`);
    expect((await cli(['maps.ics', '--out', 'gen'])).err).toMatch(/^maps\.ics:1:\d+: a type nests at most 32 levels/);
    // 32 levels are fine.
    writeFileSync(join(dir, 'ok32.ics'), `struct A { v: ${'map<'.repeat(16)}int${'[]'.repeat(15)}${'>'.repeat(16)}? }\n`);
    expect((await cli(['ok32.ics', '--out', 'gen'])).code).toBe(0);
  });

  it('an invisible or non-ASCII character is named by its code point', async () => {
    writeFileSync(join(dir, 'nul.ics'), 'struct A {\u0000 v: int }\n');
    expect((await cli(['nul.ics', '--out', 'gen'])).err.split('\n')[0]).toBe('nul.ics:1:11: unexpected character U+0000');
    writeFileSync(join(dir, 'u.ics'), 'struct Ä { v: int }\n');
    expect((await cli(['u.ics', '--out', 'gen'])).err.split('\n')[0]).toBe("u.ics:1:8: unexpected character U+00C4 'Ä' (names are ASCII letters, digits and _)");
  });
});
