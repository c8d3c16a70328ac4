import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatError, generate, ICSGEN_ERROR_CODES, type IcsgenError, IcsgenError as IcsgenErrorClass } from '../src/index.js';
import { virtual } from './helpers.js';

/** Generates `main.ics` (plus other files) and returns its errors as `file:line:col code message`. */
function errorsOf(main: string, others: Record<string, string> = {}): IcsgenError[] {
  const result = generate(['main.ics'], virtual({ 'main.ics': main, ...others }));
  expect(result.files).toEqual([]);
  return result.errors;
}

function only(main: string, others: Record<string, string> = {}): IcsgenError {
  const errors = errorsOf(main, others);
  expect(errors.map((e) => e.message)).toHaveLength(1);
  return errors[0]!;
}

const brief = (e: IcsgenError): string => `${e.file}:${e.line}:${e.col} ${e.code} ${e.message}`;

describe('syntax errors say what was expected, where', () => {
  const cases: [string, string, string][] = [
    ['struct A { x string }', "main.ics:1:14 ICSGEN_ERR_SYNTAX expected ':' after field name 'x', found 'string'", 'missing colon'],
    ['struct A {\n  x: string\n', 'main.ics:3:1 ICSGEN_ERR_SYNTAX expected a field name or \'}\', found end of file', 'unclosed struct'],
    ['strukt A {}', "main.ics:1:1 ICSGEN_ERR_SYNTAX expected 'import', 'enum', 'struct', 'service' or 'keyservice', found 'strukt'", 'unknown keyword'],
    ['enum E {}', "main.ics:1:9 ICSGEN_ERR_SYNTAX expected at least one enum member, found '}'", 'empty enum'],
    ['service S channel app { }', "main.ics:1:23 ICSGEN_ERR_SYNTAX expected 'subservice', found '{'", 'no subservice'],
    ['service S subservice x {}', "main.ics:1:22 ICSGEN_ERR_SYNTAX expected a subservice number after 'subservice', found 'x'", 'subservice not a number'],
    ['service S subservice 1 {\n  rpc get(key: string)\n}', "main.ics:3:1 ICSGEN_ERR_SYNTAX expected ':' and a result type (or 'void') after the arguments of rpc 'get', found '}'", 'rpc without result'],
    ['service S subservice 1 {\n  msg m(): uint\n}', "main.ics:2:10 ICSGEN_ERR_SYNTAX expected a new line or '}': a one-way message ('msg') has no result; use 'rpc' for 'm', found ':'", 'msg with result'],
    ['service S subservice 1 { idempotent msg m() }', "main.ics:1:37 ICSGEN_ERR_SYNTAX expected 'rpc' after 'idempotent' (only an rpc can be retried), found 'msg'", 'idempotent msg'],
    ['struct A { x: void }', "main.ics:1:15 ICSGEN_ERR_SYNTAX expected a type ('void' is only allowed as the result of an rpc), found 'void'", 'void field'],
    ['struct A { x: map<string }', "main.ics:1:26 ICSGEN_ERR_SYNTAX expected '>' to close 'map<', found '}'", 'unclosed map'],
    ['struct A { x: string?? }', "main.ics:1:22 ICSGEN_ERR_SYNTAX expected a field name, argument or '}' (the type is already nullable), found '?'", 'double nullable'],
    ['struct A { x: int # }', "main.ics:1:19 ICSGEN_ERR_SYNTAX unexpected character '#'", 'bad character'],
    ['/* never closed\nstruct A {}', 'main.ics:1:1 ICSGEN_ERR_SYNTAX unterminated block comment: expected "*/"', 'unterminated comment'],
    ['import other', "main.ics:1:8 ICSGEN_ERR_SYNTAX expected a file name in double quotes after 'import', found 'other'", 'unquoted import'],
    ['service S subservice 007 {}', "main.ics:1:22 ICSGEN_ERR_SYNTAX bad number '007': expected a decimal integer", 'leading zeros'],
    [
      'keyservice K subservice 1 { msg m() }',
      "main.ics:1:29 ICSGEN_ERR_SYNTAX expected 'rpc', 'idempotent', 'pull:', 'handover:' or '}' (a key service has no one-way messages), found 'msg'",
      'msg in a key service',
    ],
    ['keyservice K channel app subservice 1 {}', "main.ics:1:14 ICSGEN_ERR_SYNTAX expected 'subservice' (a key service is always on the 'keyservice' channel), found 'channel'", 'channel on a key service'],
    ['keyservice K subservice 1 { pull int }', "main.ics:1:29 ICSGEN_ERR_SYNTAX expected 'rpc', 'idempotent', 'pull:', 'handover:' or '}', found 'pull'", 'pull without colon'],
    ['keyservice K subservice 1 { pull: int\n  pull: uint }', "main.ics:2:3 ICSGEN_ERR_DUPLICATE_NAME duplicate 'pull' in key service 'K'", 'pull twice'],
  ];
  it.each(cases)('%s', (source, expected) => {
    expect(brief(only(source))).toBe(expected);
  });
});

describe('semantic errors', () => {
  it('unknown type, at the reference', () => {
    const e = only('struct A {\n  b: B[]\n  c: A\n}');
    expect(brief(e)).toBe("main.ics:2:6 ICSGEN_ERR_UNKNOWN_TYPE unknown type 'B'");
    expect(e.length).toBe(1);
  });

  it('unknown type: a service is not a type', () => {
    expect(brief(only('service S subservice 1 { rpc f(): S }'))).toBe(
      "main.ics:1:35 ICSGEN_ERR_UNKNOWN_TYPE unknown type 'S' ('S' is a service, not a type)",
    );
  });

  it('types of a file imported by an import are not visible (imports are not transitive)', () => {
    const e = only('import "b.ics"\nstruct M { c: C }', { 'b.ics': 'import "c.ics"\nstruct B { c: C }', 'c.ics': 'struct C {}' });
    expect(brief(e)).toBe("main.ics:2:15 ICSGEN_ERR_UNKNOWN_TYPE unknown type 'C'");
  });

  it('duplicate declarations, fields, members, methods and arguments', () => {
    const errors = errorsOf(
      [
        'enum E { a, b, a }',
        'struct E { x: int }',
        'struct T { x: int, x: string }',
        'service S subservice 1 {',
        '  rpc f(a: int, a: int): void',
        '  msg f()',
        '}',
      ].join('\n'),
    );
    expect(errors.map(brief)).toEqual([
      "main.ics:1:16 ICSGEN_ERR_DUPLICATE_NAME duplicate enum member 'a' in E: already declared at main.ics:1:10",
      "main.ics:2:8 ICSGEN_ERR_DUPLICATE_NAME duplicate name 'E': already declared at main.ics:1:6",
      "main.ics:3:20 ICSGEN_ERR_DUPLICATE_NAME duplicate field 'x' in T: already declared at main.ics:3:12",
      "main.ics:5:17 ICSGEN_ERR_DUPLICATE_NAME duplicate argument 'a' in S.f: already declared at main.ics:5:9",
      "main.ics:6:7 ICSGEN_ERR_DUPLICATE_NAME duplicate method 'f' in S: already declared at main.ics:5:7",
    ]);
  });

  it('duplicate name with an import, and with a name the emitter generates', () => {
    expect(brief(only('import "b.ics"\nstruct B {}', { 'b.ics': 'struct B {}' }))).toBe(
      "main.ics:2:8 ICSGEN_ERR_DUPLICATE_NAME duplicate name 'B': also imported from 'b.ics'",
    );
    expect(brief(only('struct KvGetArgs {}\nservice Kv subservice 1 { rpc get(): void }'))).toBe(
      "main.ics:2:31 ICSGEN_ERR_DUPLICATE_NAME duplicate name 'KvGetArgs': icsgen generates it for the arguments of Kv.get, but it is declared at main.ics:1:8",
    );
    expect(brief(only('service Kv subservice 1 { rpc get(): void\n msg Get() }'))).toBe(
      "main.ics:2:6 ICSGEN_ERR_DUPLICATE_NAME duplicate name 'KvGetArgs': icsgen generates it for both the arguments of Kv.get and the arguments of Kv.Get",
    );
  });

  it('duplicate channel + subservice across the files of one run', () => {
    const result = generate(['a.ics', 'b.ics'], virtual({ 'a.ics': 'service A channel app subservice 3 {}', 'b.ics': '\nservice B channel app subservice 3 {}' }));
    expect(result.errors.map(brief)).toEqual([
      'b.ics:2:34 ICSGEN_ERR_DUPLICATE_SERVICE duplicate service address: channel app subservice 3 is already used by service A at a.ics:1:9',
    ]);
    // The same number on another channel is a different service.
    expect(generate(['a.ics'], virtual({ 'a.ics': 'service A channel app subservice 3 {}\nservice B subservice 3 {}' })).errors).toEqual([]);
  });

  it('duplicate service name across files', () => {
    const result = generate(['a.ics', 'b.ics'], virtual({ 'a.ics': 'service S subservice 1 {}', 'b.ics': 'service S subservice 2 {}' }));
    expect(result.errors.map(brief)).toEqual([
      "b.ics:1:9 ICSGEN_ERR_DUPLICATE_NAME duplicate service name 'S': already declared at a.ics:1:9 (a node registers services by name)",
    ]);
  });

  it('import cycles, with the chain', () => {
    const e = only('import "b.ics"\nstruct A {}', { 'b.ics': 'struct B {}\nimport "c.ics"', 'c.ics': 'import "main.ics"' });
    expect(brief(e)).toBe('c.ics:1:1 ICSGEN_ERR_IMPORT_CYCLE import cycle: main.ics → b.ics → c.ics → main.ics');
    expect(e.length).toBe('import "main.ics"'.length);
    expect(brief(only('import "main.ics"'))).toBe('main.ics:1:1 ICSGEN_ERR_IMPORT_CYCLE import cycle: main.ics → main.ics');
  });

  it('files that cannot be read', () => {
    expect(brief(only('import "missing.ics"\nstruct A { m: Missing }'))).toBe("main.ics:1:1 ICSGEN_ERR_FILE_NOT_FOUND cannot read 'missing.ics'");
    const r = generate(['nope.ics'], virtual({}));
    expect(r.errors.map(brief)).toEqual(["nope.ics:0:0 ICSGEN_ERR_FILE_NOT_FOUND cannot read 'nope.ics'"]);
    expect(formatError(r.errors[0]!)).toBe("nope.ics: cannot read 'nope.ics'");
  });

  it('reserved words', () => {
    const errors = errorsOf(
      ['struct string {}', 'enum z { a }', 'struct class { __proto__: int }', 'service Uint8Array subservice 1 {}', 'service S subservice 2 { msg then() }'].join('\n'),
    );
    expect(errors.map(brief)).toEqual([
      "main.ics:1:8 ICSGEN_ERR_RESERVED_WORD 'string' is a reserved word and cannot name a struct",
      "main.ics:2:6 ICSGEN_ERR_RESERVED_WORD 'z' is a reserved word and cannot name an enum",
      "main.ics:3:8 ICSGEN_ERR_RESERVED_WORD 'class' is a reserved word and cannot name a struct",
      "main.ics:3:16 ICSGEN_ERR_RESERVED_WORD '__proto__' is a reserved word and cannot name a field",
      "main.ics:4:9 ICSGEN_ERR_RESERVED_WORD 'Uint8Array' is a reserved word and cannot name a service",
      "main.ics:5:30 ICSGEN_ERR_RESERVED_WORD 'then' is a reserved word and cannot name a method",
    ]);
    // Field names are property keys: keywords are fine there, prototype keys are not.
    expect(errorsOf('struct A { __proto__: int }').map(brief)).toEqual([
      "main.ics:1:12 ICSGEN_ERR_RESERVED_WORD '__proto__' is a reserved word and cannot name a field",
    ]);
    expect(generate(['m.ics'], virtual({ 'm.ics': 'struct A { class: int, channel: string, rpc: bool }' })).errors).toEqual([]);
  });

  it('values out of range', () => {
    expect(brief(only('service S subservice 65536 {}'))).toBe('main.ics:1:22 ICSGEN_ERR_OUT_OF_RANGE subservice 65536 is out of range: expected 0–65535');
    expect(brief(only(`service S channel "${'c'.repeat(65)}" subservice 1 {}`))).toBe(
      'main.ics:1:19 ICSGEN_ERR_OUT_OF_RANGE channel name must be 1–64 characters',
    );
  });

  it('key services: subservice 0 is the protocol\'s, data types must exist, generated names and addresses must not clash', () => {
    expect(brief(only('keyservice K subservice 0 { rpc f(): void }'))).toBe(
      "main.ics:1:25 ICSGEN_ERR_OUT_OF_RANGE subservice 0 of the 'keyservice' channel is the key-service protocol's: expected 1–65535",
    );
    expect(brief(only('keyservice K subservice 1 { pull: Share }'))).toBe("main.ics:1:35 ICSGEN_ERR_UNKNOWN_TYPE unknown type 'Share'");
    expect(brief(only('struct KPullData {}\nkeyservice K subservice 1 { pull: KPullData }'))).toBe(
      "main.ics:2:29 ICSGEN_ERR_DUPLICATE_NAME duplicate name 'KPullData': icsgen generates it for the pull data of key service K, but it is declared at main.ics:1:8",
    );
    // A plain service on the keyservice channel would take the key service's address.
    expect(brief(only('keyservice K subservice 3 {}\nservice S channel keyservice subservice 3 {}'))).toBe(
      'main.ics:2:41 ICSGEN_ERR_DUPLICATE_SERVICE duplicate service address: channel keyservice subservice 3 is already used by service K at main.ics:1:12',
    );
    expect(brief(only('struct keyservice {}'))).toBe("main.ics:1:8 ICSGEN_ERR_RESERVED_WORD 'keyservice' is a reserved word and cannot name a struct");
  });

  it('two inputs that would write the same output file', () => {
    const r = generate(['a/x.ics', 'b/x.ics'], virtual({ 'a/x.ics': 'struct A {}', 'b/x.ics': 'struct B {}' }));
    expect(r.errors.map(brief)).toEqual(["b/x.ics:0:0 ICSGEN_ERR_OUTPUT_CONFLICT 'b/x.ics' and 'a/x.ics' would both generate 'x.gen.ts': rename one"]);
  });

  it('reports every semantic error, not only the first', () => {
    expect(errorsOf('struct A { b: B, c: C }').map((e) => e.message)).toEqual(["unknown type 'B'", "unknown type 'C'"]);
  });

  it('errors are IcsgenError values with a stable code and no retry', () => {
    const e = only('struct A { b: B }');
    expect(e).toBeInstanceOf(IcsgenErrorClass);
    expect(e.retryable).toBe(false);
    expect(ICSGEN_ERROR_CODES).toContain(e.code);
  });
});

describe('formatError', () => {
  it('prints file:line:col: message, the line, and a caret under the culprit', () => {
    const e = only('struct A {\n\tchildren: Entyr[]\n}');
    expect(formatError(e)).toBe("main.ics:2:12: unknown type 'Entyr'\n  \tchildren: Entyr[]\n  \t          ^^^^^");
  });
});

describe('docs/icsgen.md', () => {
  it('has a row for every error code, and no row for a code that does not exist', () => {
    const doc = readFileSync(new URL('../../../docs/icsgen.md', import.meta.url), 'utf8');
    const documented = [...doc.matchAll(/^\| `(ICSGEN_ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual([...ICSGEN_ERROR_CODES].sort());
  });
});
