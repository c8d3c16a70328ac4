/**
 * Loads a set of `.ics` files with everything they import, and checks what
 * the grammar cannot: imports (readable, no cycles), names (unique, not
 * reserved, no clash with the names the emitter generates), type references,
 * and service addresses (channel + subservice unique across the whole run).
 * Every problem found is reported, not just the first.
 */
import { readFileSync } from 'node:fs';
import { basename, dirname, relative, resolve as resolvePath } from 'node:path';
import type { Decl, IcsFile, ImportDecl, Pos, ServiceDecl, TypeDecl, TypeExpr } from './ast.js';
import { IcsgenError, type SourcePosition } from './errors.js';
import { parse } from './parser.js';

/** Reads a file by absolute path; `undefined` when it does not exist. */
export type ReadFile = (absolutePath: string) => string | undefined;

export interface LoadOptions {
  /** Paths are resolved against it and shown relative to it. @default process.cwd() */
  cwd?: string;
  /** @default reads from disk with node:fs */
  readFile?: ReadFile;
}

/** A declaration and the file that declares it. */
export interface Resolved<D extends Decl = TypeDecl> {
  decl: D;
  file: LoadedFile;
}

export interface LoadedFile {
  /** Absolute path. */
  path: string;
  ast: IcsFile;
  /** The files it imports directly, in order. */
  imports: LoadedFile[];
  /** Every type name visible in the file: its own and its direct imports'. */
  scope: Map<string, Resolved>;
  /** An import failed: unknown types are not reported, they are most likely in the missing file. */
  incomplete: boolean;
}

export interface Program {
  /** Every file of the run (the inputs and all they import), imports before importers. */
  files: LoadedFile[];
  /** The input files, as given. */
  inputs: LoadedFile[];
  errors: IcsgenError[];
}

/**
 * Names a declaration may not take. IDL keywords and built-in types; words
 * TypeScript reserves or predefines as types; and the identifiers generated
 * code refers to (a struct called `z` or `Uint8Array` would shadow them).
 */
export const RESERVED_DECLARATION_NAMES = new Set([
  // IDL
  'import', 'enum', 'struct', 'service', 'keyservice', 'channel', 'subservice', 'rpc', 'msg', 'idempotent', 'map', 'void',
  'bool', 'int', 'uint', 'float', 'bigint', 'string', 'bytes', 'any',
  // JavaScript and TypeScript
  'break', 'case', 'catch', 'class', 'const', 'continue', 'debugger', 'default', 'delete', 'do', 'else', 'export',
  'extends', 'false', 'finally', 'for', 'function', 'if', 'in', 'instanceof', 'new', 'null', 'return', 'super',
  'switch', 'this', 'throw', 'true', 'try', 'typeof', 'var', 'while', 'with', 'yield', 'let', 'static',
  'implements', 'interface', 'package', 'private', 'protected', 'public', 'await', 'async', 'type', 'declare',
  'namespace', 'module', 'abstract', 'as', 'is', 'keyof', 'readonly', 'infer', 'satisfies', 'of', 'unique',
  'number', 'boolean', 'symbol', 'object', 'unknown', 'never', 'undefined', 'arguments', 'eval',
  // Names generated code uses
  'z', 'defineService', 'plainData', 'PlainData', 'ServiceImpl', 'ServiceClient', 'ServiceDescriptor',
  'defineKeyService', 'KeyServiceImpl', 'KeyServiceClient', 'KeyServiceDescriptor',
  'Uint8Array', 'Record', 'Array', 'Number', 'String', 'Boolean', 'Object', 'Promise', 'Error',
]);

/**
 * Names a field, argument or method may not take: they would reach an
 * object's prototype (`__proto__` in an object literal sets it) or, for a
 * method, make the typed client a thenable (`then`).
 */
export const RESERVED_MEMBER_NAMES = new Set(['__proto__', 'constructor', 'prototype']);
export const RESERVED_METHOD_NAMES = new Set([...RESERVED_MEMBER_NAMES, 'then']);

/** The longest channel name ICS accepts (its `channels` option). */
const MAX_CHANNEL_NAME = 64;

const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

/** The names the emitter generates for a service, with what each is. */
export function generatedNames(s: ServiceDecl): { name: string; what: string; pos: Pos }[] {
  const out = [
    { name: `${s.name}Impl`, what: `the implementation type of service ${s.name}`, pos: s.pos },
    { name: `${s.name}Client`, what: `the client type of service ${s.name}`, pos: s.pos },
  ];
  for (const m of s.methods) {
    out.push({ name: argsName(s, m.name), what: `the arguments of ${s.name}.${m.name}`, pos: m.pos });
    if (m.kind === 'rpc') out.push({ name: resultName(s, m.name), what: `the result of ${s.name}.${m.name}`, pos: m.pos });
  }
  for (const which of KEY_SERVICE_DATA) {
    const part = s.keyService?.[which];
    if (part) out.push({ name: dataName(s, which), what: `the ${which} data of key service ${s.name}`, pos: part.pos });
  }
  return out;
}

/** The data a key service may declare, in the order they are emitted. */
export const KEY_SERVICE_DATA = ['pull', 'handover'] as const;

/** `Ledger` + `pull` → `LedgerPullData`. */
export const dataName = (s: ServiceDecl, which: (typeof KEY_SERVICE_DATA)[number]): string => `${s.name}${capitalize(which)}Data`;

export const argsName = (s: ServiceDecl, method: string): string => `${s.name}${capitalize(method)}Args`;
export const resultName = (s: ServiceDecl, method: string): string => `${s.name}${capitalize(method)}Result`;

/** The output file name of an input: `kv.ics` → `kv.gen.ts` (`kv.gen.js` with `ext: 'js'`, `kv.gen.d.ts` with `'d.ts'`). */
export function outputName(path: string, ext: 'ts' | 'js' | 'd.ts' = 'ts'): string {
  return `${basename(path).replace(/\.ics$/, '')}.gen.${ext}`;
}

function at(pos: Pos): Pos {
  return pos;
}

function wholeFile(file: string): Pos {
  return { file, line: 0, col: 0, length: 0, sourceLine: '' };
}

function where(pos: Pos): string {
  return `${pos.file}:${pos.line}:${pos.col}`;
}

export function loadProgram(inputs: string[], options: LoadOptions = {}): Program {
  const cwd = options.cwd ?? process.cwd();
  const readFile = options.readFile ?? defaultReadFile;
  const errors: IcsgenError[] = [];
  const loaded = new Map<string, LoadedFile | null>(); // null: could not be read or parsed
  const order: LoadedFile[] = [];
  const show = (abs: string): string => relative(cwd, abs) || abs;

  const load = (abs: string, stack: string[], from?: ImportDecl): LoadedFile | null => {
    if (loaded.has(abs)) return loaded.get(abs)!;
    let source: string | undefined;
    try {
      source = readFile(abs);
    } catch (e) {
      if (!(e instanceof NotUtf8)) throw e;
      errors.push(new IcsgenError('ICSGEN_ERR_SYNTAX', e.message, { ...e.at, file: show(abs) }));
      loaded.set(abs, null);
      return null;
    }
    if (source === undefined) {
      const msg = `cannot read '${from ? from.path : show(abs)}'`;
      errors.push(new IcsgenError('ICSGEN_ERR_FILE_NOT_FOUND', msg, from ? at(from.pos) : wholeFile(show(abs))));
      loaded.set(abs, null);
      return null;
    }
    const parsed = parse(source, show(abs));
    if (!parsed.ast) {
      errors.push(...parsed.errors);
      loaded.set(abs, null);
      return null;
    }
    const file: LoadedFile = { path: abs, ast: parsed.ast, imports: [], scope: new Map(), incomplete: false };
    loaded.set(abs, file);
    const inner = [...stack, abs];
    for (const imp of parsed.ast.imports) {
      const target = resolvePath(dirname(abs), imp.path);
      const cycleAt = inner.indexOf(target);
      if (cycleAt !== -1) {
        const chain = [...inner.slice(cycleAt), target].map(show).join(' → ');
        errors.push(new IcsgenError('ICSGEN_ERR_IMPORT_CYCLE', `import cycle: ${chain}`, at(imp.pos)));
        file.incomplete = true;
        continue;
      }
      const dep = load(target, inner, imp);
      if (dep) file.imports.push(dep);
      else file.incomplete = true;
    }
    order.push(file);
    return file;
  };

  const roots: LoadedFile[] = [];
  for (const input of inputs) {
    const f = load(resolvePath(cwd, input), []);
    if (f && !roots.includes(f)) roots.push(f);
  }
  for (const f of order) checkFile(f, errors);
  checkRun(order, errors);
  return { files: order, inputs: roots, errors: sortByPosition(errors) };
}

/** Errors in reading order: files as first met, then by line and column. */
function sortByPosition(errors: IcsgenError[]): IcsgenError[] {
  const fileRank = new Map<string, number>();
  for (const e of errors) if (!fileRank.has(e.file)) fileRank.set(e.file, fileRank.size);
  return errors
    .map((e, i) => ({ e, i }))
    .sort((a, b) => fileRank.get(a.e.file)! - fileRank.get(b.e.file)! || a.e.line - b.e.line || a.e.col - b.e.col || a.i - b.i)
    .map(({ e }) => e);
}

function defaultReadFile(path: string): string | undefined {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch {
    return undefined;
  }
  return decodeUtf8(bytes);
}

/** A file that is not UTF-8, with where its first bad byte is. */
class NotUtf8 extends Error {
  constructor(
    message: string,
    readonly at: Omit<SourcePosition, 'file'>,
  ) {
    super(message);
  }
}

/**
 * The file as text, without a leading byte-order mark. Bytes that are not
 * UTF-8 are refused at the first one (NotUtf8), instead of becoming U+FFFD
 * in names, strings and doc comments.
 */
function decodeUtf8(bytes: Buffer): string {
  const text = bytes.toString('utf8');
  if (Buffer.byteLength(text) === bytes.length && Buffer.from(text).equals(bytes)) return text.replace(/^\uFEFF/, '');
  // Everything before the first bad byte decoded exactly, so offsets in bytes and in text agree up to it.
  let offset = 0;
  let index = 0;
  for (const ch of text) {
    if (ch === '\uFFFD' && !(bytes[offset] === 0xef && bytes[offset + 1] === 0xbf && bytes[offset + 2] === 0xbd)) break;
    offset += Buffer.byteLength(ch);
    index += ch.length;
  }
  const before = text.slice(0, index);
  const line = before.split('\n').length;
  const col = index - before.lastIndexOf('\n');
  const sourceLine = text.split(/\r?\n/)[line - 1] ?? '';
  const byte = `0x${bytes[offset]!.toString(16).padStart(2, '0')}`;
  throw new NotUtf8(`the file is not UTF-8: byte ${byte} at offset ${offset} (save it as UTF-8)`, { line, col, length: 1, sourceLine });
}

function checkFile(file: LoadedFile, errors: IcsgenError[]): void {
  const { ast, scope } = file;
  const dup = (pos: Pos, message: string): void => void errors.push(new IcsgenError('ICSGEN_ERR_DUPLICATE_NAME', message, pos));
  const reserved = (pos: Pos, message: string): void => void errors.push(new IcsgenError('ICSGEN_ERR_RESERVED_WORD', message, pos));

  // Imported names first, so that a local declaration that shadows one is reported at the declaration.
  const importOf = new Map<string, ImportDecl>();
  ast.imports.forEach((imp) => {
    const dep = file.imports.find((d) => d.path === resolvePath(dirname(file.path), imp.path));
    if (!dep) return;
    for (const d of dep.ast.decls) {
      if (d.kind === 'service') continue;
      const prior = scope.get(d.name);
      if (prior && prior.file !== dep) {
        dup(imp.pos, `duplicate name '${d.name}': imported from both '${importOf.get(d.name)?.path}' and '${imp.path}'`);
        continue;
      }
      scope.set(d.name, { decl: d, file: dep });
      importOf.set(d.name, imp);
    }
  });

  const local = new Map<string, Decl>();
  for (const d of ast.decls) {
    if (RESERVED_DECLARATION_NAMES.has(d.name)) {
      reserved(d.pos, `'${d.name}' is a reserved word and cannot name ${d.kind === 'enum' ? 'an' : 'a'} ${d.kind}`);
      continue;
    }
    const prior = local.get(d.name);
    if (prior) {
      dup(d.pos, `duplicate name '${d.name}': already declared at ${where(prior.pos)}`);
      continue;
    }
    if (importOf.has(d.name)) {
      dup(d.pos, `duplicate name '${d.name}': also imported from '${importOf.get(d.name)!.path}'`);
      continue;
    }
    local.set(d.name, d);
    if (d.kind !== 'service') scope.set(d.name, { decl: d, file });
  }
  // Names the emitter will generate must not clash with declared or imported ones, nor with each other.
  const generated = new Map<string, string>();
  for (const d of ast.decls) {
    if (d.kind !== 'service' || local.get(d.name) !== d) continue;
    for (const g of generatedNames(d)) {
      const clash = local.get(g.name) ?? (importOf.has(g.name) ? 'imported' : undefined);
      if (clash) {
        const other = clash === 'imported' ? `imported from '${importOf.get(g.name)!.path}'` : `declared at ${where(clash.pos)}`;
        dup(g.pos, `duplicate name '${g.name}': icsgen generates it for ${g.what}, but it is ${other}`);
      } else if (generated.get(g.name) === g.what) {
        // A duplicate method: reported as such below.
      } else if (generated.has(g.name)) {
        dup(g.pos, `duplicate name '${g.name}': icsgen generates it for both ${generated.get(g.name)} and ${g.what}`);
      } else {
        generated.set(g.name, g.what);
      }
    }
  }

  const checkType = (t: TypeExpr): void => {
    switch (t.kind) {
      case 'builtin':
        return;
      case 'array':
        return checkType(t.element);
      case 'map':
        return checkType(t.value);
      case 'nullable':
        return checkType(t.inner);
      case 'ref': {
        if (scope.has(t.name) || file.incomplete) return;
        const what = local.get(t.name)?.kind === 'service' ? ` ('${t.name}' is a service, not a type)` : '';
        errors.push(new IcsgenError('ICSGEN_ERR_UNKNOWN_TYPE', `unknown type '${t.name}'${what}`, t.pos));
      }
    }
  };
  const checkMembers = (list: { name: string; pos: Pos }[], what: string, owner: string, reservedSet: Set<string>): void => {
    const seen = new Map<string, Pos>();
    for (const m of list) {
      if (reservedSet.has(m.name)) reserved(m.pos, `'${m.name}' is a reserved word and cannot name ${/^[aeiou]/.test(what) ? 'an' : 'a'} ${what}`);
      const prior = seen.get(m.name);
      if (prior) dup(m.pos, `duplicate ${what} '${m.name}' in ${owner}: already declared at ${where(prior)}`);
      else seen.set(m.name, m.pos);
    }
  };

  for (const d of ast.decls) {
    if (d.kind === 'enum') {
      checkMembers(d.members, 'enum member', d.name, new Set());
    } else if (d.kind === 'struct') {
      checkMembers(d.fields, 'field', d.name, RESERVED_MEMBER_NAMES);
      for (const f of d.fields) checkType(f.type);
    } else {
      checkMembers(d.methods, 'method', d.name, RESERVED_METHOD_NAMES);
      if (d.subservice > 65_535) {
        errors.push(new IcsgenError('ICSGEN_ERR_OUT_OF_RANGE', `subservice ${d.subservice} is out of range: expected ${d.keyService ? 1 : 0}–65535`, d.subservicePos));
      } else if (d.keyService && d.subservice === 0) {
        const msg = "subservice 0 of the 'keyservice' channel is the key-service protocol's: expected 1–65535";
        errors.push(new IcsgenError('ICSGEN_ERR_OUT_OF_RANGE', msg, d.subservicePos));
      }
      for (const which of KEY_SERVICE_DATA) {
        const part = d.keyService?.[which];
        if (part) checkType(part.type);
      }
      if (d.channel.length === 0 || d.channel.length > MAX_CHANNEL_NAME) {
        errors.push(new IcsgenError('ICSGEN_ERR_OUT_OF_RANGE', `channel name must be 1–${MAX_CHANNEL_NAME} characters`, d.channelPos));
      }
      for (const m of d.methods) {
        checkMembers(m.args, 'argument', `${d.name}.${m.name}`, RESERVED_MEMBER_NAMES);
        for (const a of m.args) checkType(a.type);
        if (m.result && m.result.kind !== 'void') checkType(m.result);
      }
    }
  }
}

/** Checks across the files of one run: service addresses, service names, output names. */
function checkRun(files: LoadedFile[], errors: IcsgenError[]): void {
  const byAddress = new Map<string, ServiceDecl>();
  const byName = new Map<string, ServiceDecl>();
  const outputs = new Map<string, LoadedFile>();
  for (const f of files) {
    const out = outputName(f.path);
    const prior = outputs.get(out);
    if (prior) {
      errors.push(
        new IcsgenError(
          'ICSGEN_ERR_OUTPUT_CONFLICT',
          `'${f.ast.file}' and '${prior.ast.file}' would both generate '${out}': rename one`,
          wholeFile(f.ast.file),
        ),
      );
    } else {
      outputs.set(out, f);
    }
    for (const d of f.ast.decls) {
      if (d.kind !== 'service') continue;
      const key = `${d.channel}\u0000${d.subservice}`;
      const other = byAddress.get(key);
      if (other) {
        errors.push(
          new IcsgenError(
            'ICSGEN_ERR_DUPLICATE_SERVICE',
            `duplicate service address: channel ${d.channel} subservice ${d.subservice} is already used by service ${other.name} at ${where(other.pos)}`,
            { ...d.subservicePos },
          ),
        );
      } else {
        byAddress.set(key, d);
      }
      const sameName = byName.get(d.name);
      if (sameName && sameName.pos.file !== d.pos.file) {
        // Within one file the per-file check has reported it already.
        errors.push(
          new IcsgenError(
            'ICSGEN_ERR_DUPLICATE_NAME',
            `duplicate service name '${d.name}': already declared at ${where(sameName.pos)} (a node registers services by name)`,
            d.pos,
          ),
        );
      } else if (!sameName) {
        byName.set(d.name, d);
      }
    }
  }
}
