/**
 * Lexer and recursive-descent parser for the icsgen IDL (grammar in
 * docs/icsgen.md). The parser stops at the first syntax error of a file and
 * says what it expected there; later checks (names, types) are the
 * resolver's and report every problem they find.
 *
 * Newlines carry no meaning: separators between fields, members and
 * methods are optional because nothing that ends a type can start a field.
 */
import type { Decl, EnumDecl, EnumMember, FieldDecl, IcsFile, ImportDecl, KeyServiceParts, MethodDecl, Pos, ServiceDecl, StructDecl, TypeExpr } from './ast.js';
import { BUILTIN_TYPES, type BuiltinName } from './ast.js';
import { IcsgenError } from './errors.js';

type TokenKind = 'ident' | 'number' | 'string' | 'punct' | 'eof';

interface Token {
  kind: TokenKind;
  /** Identifier or punctuation text, the digits of a number, the decoded value of a string. */
  value: string;
  pos: Pos;
  /** The doc comment (`///` lines or a `/** *\/` block) right before this token. */
  doc?: string;
}

const PUNCT = new Set(['{', '}', '(', ')', '<', '>', '[', ']', ':', ',', '?', ';']);

/** Thrown inside the parser only; parse() turns it into a returned error. */
class Stop extends Error {
  constructor(readonly error: IcsgenError) {
    super(error.message);
  }
}

class Lexer {
  private readonly lines: string[];
  private i = 0;
  private line = 1;
  private col = 1;

  constructor(
    private readonly src: string,
    private readonly file: string,
  ) {
    this.lines = src.split(/\r?\n/);
  }

  pos(line: number, col: number, length: number): Pos {
    return { file: this.file, line, col, length, sourceLine: this.lines[line - 1] ?? '' };
  }

  private fail(message: string, line: number, col: number, length = 1): never {
    throw new Stop(new IcsgenError('ICSGEN_ERR_SYNTAX', message, this.pos(line, col, length)));
  }

  private advance(n = 1): void {
    for (let k = 0; k < n; k++) {
      if (this.src[this.i] === '\n') {
        this.line++;
        this.col = 1;
      } else {
        this.col++;
      }
      this.i++;
    }
  }

  tokens(): Token[] {
    const out: Token[] = [];
    let doc: string[] = [];
    const src = this.src;
    while (this.i < src.length) {
      const c = src[this.i]!;
      if (c === ' ' || c === '\t' || c === '\r' || c === '\n') {
        this.advance();
        continue;
      }
      if (src.startsWith('//', this.i)) {
        const end = src.indexOf('\n', this.i);
        const text = src.slice(this.i, end === -1 ? src.length : end);
        // `///` is a doc comment; `////…` is a separator line, not documentation.
        if (text.startsWith('///') && !text.startsWith('////')) doc.push(text.slice(3).replace(/^ /, '').trimEnd());
        this.advance(text.length);
        continue;
      }
      if (src.startsWith('/*', this.i)) {
        const end = src.indexOf('*/', this.i + 2);
        if (end === -1) this.fail('unterminated block comment: expected "*/"', this.line, this.col, 2);
        const text = src.slice(this.i, end + 2);
        if (text.startsWith('/**') && text !== '/**/') {
          doc = [];
          const body = text.slice(3, -2);
          const lines = body.split(/\r?\n/).map((l) => l.replace(/^\s*\*? ?/, '').trimEnd());
          while (lines.length > 0 && lines[0] === '') lines.shift();
          while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
          doc.push(...lines);
        }
        this.advance(text.length);
        continue;
      }
      const line = this.line;
      const col = this.col;
      const start = this.i;
      let token: Token;
      if (/[A-Za-z_]/.test(c)) {
        let j = this.i + 1;
        while (j < src.length && /[A-Za-z0-9_]/.test(src[j]!)) j++;
        token = { kind: 'ident', value: src.slice(start, j), pos: this.pos(line, col, j - start) };
        this.advance(j - start);
      } else if (/[0-9]/.test(c)) {
        let j = this.i + 1;
        while (j < src.length && /[A-Za-z0-9_.]/.test(src[j]!)) j++;
        const text = src.slice(start, j);
        if (!/^(0|[1-9][0-9]*)$/.test(text)) this.fail(`bad number '${text}': expected a decimal integer`, line, col, j - start);
        token = { kind: 'number', value: text, pos: this.pos(line, col, j - start) };
        this.advance(j - start);
      } else if (c === '"') {
        let j = this.i + 1;
        let value = '';
        for (;;) {
          const d = src[j];
          if (d === undefined || d === '\n') this.fail('unterminated string: expected a closing \'"\'', line, col, j - start);
          if (d === '"') break;
          if (d === '\\') {
            const e = src[j + 1];
            if (e !== '"' && e !== '\\') this.fail('bad escape in string: only \\" and \\\\ are allowed', line, col + (j - start), 2);
            value += e;
            j += 2;
            continue;
          }
          value += d;
          j++;
        }
        token = { kind: 'string', value, pos: this.pos(line, col, j + 1 - start) };
        this.advance(j + 1 - start);
      } else if (PUNCT.has(c)) {
        token = { kind: 'punct', value: c, pos: this.pos(line, col, 1) };
        this.advance();
      } else {
        // Outside printable ASCII the character may be invisible (a BOM, NUL) or look like a letter: name its code point.
        const shown = /^[\x21-\x7e]$/.test(c) ? `'${c}'` : `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}${/\p{L}/u.test(c) ? ` '${c}' (names are ASCII letters, digits and _)` : ''}`;
        this.fail(`unexpected character ${shown}`, line, col);
      }
      if (doc.length > 0) token.doc = doc.join('\n');
      doc = [];
      out.push(token);
    }
    out.push({ kind: 'eof', value: '', pos: this.pos(this.line, this.col, 1) });
    return out;
  }
}

function describe(t: Token): string {
  switch (t.kind) {
    case 'eof':
      return 'end of file';
    case 'ident':
      return `'${t.value}'`;
    case 'number':
      return `number ${t.value}`;
    case 'string':
      return `string "${t.value}"`;
    case 'punct':
      return `'${t.value}'`;
  }
}

const BUILTINS = new Set<string>(BUILTIN_TYPES);

/** The wire's nesting limit (docs/TESTING.md): a type nested deeper could not be sent. */
const MAX_TYPE_DEPTH = 32;

class Parser {
  private k = 0;

  constructor(private readonly toks: Token[]) {}

  private get t(): Token {
    return this.toks[this.k]!;
  }

  private next(): Token {
    const t = this.t;
    if (t.kind !== 'eof') this.k++;
    return t;
  }

  private fail(expected: string, at: Token = this.t): never {
    throw new Stop(new IcsgenError('ICSGEN_ERR_SYNTAX', `expected ${expected}, found ${describe(at)}`, at.pos));
  }

  private tooDeep(at: Token): never {
    throw new Stop(new IcsgenError('ICSGEN_ERR_OUT_OF_RANGE', `a type nests at most ${MAX_TYPE_DEPTH} levels (map<…>, […] and ?): the wire carries no deeper values`, at.pos));
  }

  private isPunct(p: string): boolean {
    return this.t.kind === 'punct' && this.t.value === p;
  }

  private isWord(w: string): boolean {
    return this.t.kind === 'ident' && this.t.value === w;
  }

  private isColonNext(): boolean {
    const n = this.toks[this.k + 1];
    return n?.kind === 'punct' && n.value === ':';
  }

  private punct(p: string, expected = `'${p}'`): Token {
    if (!this.isPunct(p)) this.fail(expected);
    return this.next();
  }

  private optional(p: string): boolean {
    if (!this.isPunct(p)) return false;
    this.next();
    return true;
  }

  private ident(what: string): Token {
    if (this.t.kind !== 'ident') this.fail(what);
    return this.next();
  }

  file(name: string): IcsFile {
    const imports: ImportDecl[] = [];
    const decls: Decl[] = [];
    while (this.t.kind !== 'eof') {
      const t = this.t;
      if (this.isWord('import')) {
        this.next();
        if (this.t.kind !== 'string') this.fail('a file name in double quotes after \'import\'');
        const path = this.next();
        imports.push({ path: path.value, pos: { ...t.pos, length: path.pos.col + path.pos.length - t.pos.col } });
        this.optional(';');
      } else if (this.isWord('enum')) {
        decls.push(this.enumDecl());
      } else if (this.isWord('struct')) {
        decls.push(this.structDecl());
      } else if (this.isWord('service')) {
        decls.push(this.serviceDecl());
      } else if (this.isWord('keyservice')) {
        decls.push(this.keyServiceDecl());
      } else {
        this.fail("'import', 'enum', 'struct', 'service' or 'keyservice'");
      }
    }
    return { file: name, imports, decls };
  }

  private withDoc<T extends object>(node: T, doc: string | undefined): T {
    if (doc !== undefined) (node as { doc?: string }).doc = doc;
    return node;
  }

  private enumDecl(): EnumDecl {
    const kw = this.next();
    const name = this.ident('an enum name');
    this.punct('{', "'{' to open the enum");
    const members: EnumMember[] = [];
    while (!this.isPunct('}')) {
      const m = this.ident(members.length === 0 ? 'an enum member' : "an enum member or '}'");
      members.push(this.withDoc({ name: m.value, pos: m.pos }, m.doc));
      if (!this.optional(',')) this.optional(';');
    }
    if (members.length === 0) this.fail('at least one enum member');
    this.next();
    return this.withDoc({ kind: 'enum', name: name.value, pos: name.pos, members }, kw.doc);
  }

  private field(what: string): FieldDecl {
    const n = this.ident(what);
    const optional = this.optional('?');
    this.punct(':', optional ? "':' after '?'" : `':' after ${what.replace(/^an? /, '')} '${n.value}'`);
    const type = this.type();
    return this.withDoc({ name: n.value, pos: n.pos, optional, type }, n.doc);
  }

  private structDecl(): StructDecl {
    const kw = this.next();
    const name = this.ident('a struct name');
    this.punct('{', "'{' to open the struct");
    const fields: FieldDecl[] = [];
    while (!this.isPunct('}')) {
      if (this.t.kind !== 'ident') this.fail(fields.length === 0 ? "a field name or '}'" : "a field name or '}'");
      fields.push(this.field('a field name'));
      if (!this.optional(',')) this.optional(';');
    }
    this.next();
    return this.withDoc({ kind: 'struct', name: name.value, pos: name.pos, fields }, kw.doc);
  }

  private serviceDecl(): ServiceDecl {
    const kw = this.next();
    const name = this.ident('a service name');
    let channel = 'default';
    let channelPos = name.pos;
    if (this.isWord('channel')) {
      this.next();
      if (this.t.kind !== 'ident' && this.t.kind !== 'string') this.fail("a channel name after 'channel'");
      const c = this.next();
      channel = c.value;
      channelPos = c.pos;
    }
    if (!this.isWord('subservice')) this.fail(channelPos === name.pos ? "'channel' or 'subservice'" : "'subservice'");
    this.next();
    if (this.t.kind !== 'number') this.fail("a subservice number after 'subservice'");
    const ss = this.next();
    this.punct('{', "'{' to open the service");
    const methods: MethodDecl[] = [];
    while (!this.isPunct('}')) methods.push(this.method());
    this.next();
    return this.withDoc(
      { kind: 'service', name: name.value, pos: name.pos, channel, channelPos, subservice: Number(ss.value), subservicePos: ss.pos, methods },
      kw.doc,
    );
  }

  /**
   * `keyservice Name subservice N { … }`: rpc methods, plus `pull: T` and
   * `handover: T` for what the failover callbacks return. Always on the
   * `keyservice` channel; `pull` and `handover` are keywords only there, and
   * only before a ':' (a method still starts with 'rpc' or 'idempotent').
   */
  private keyServiceDecl(): ServiceDecl {
    const kw = this.next();
    const name = this.ident('a key service name');
    if (this.isWord('channel')) this.fail("'subservice' (a key service is always on the 'keyservice' channel)");
    if (!this.isWord('subservice')) this.fail("'subservice'");
    this.next();
    if (this.t.kind !== 'number') this.fail("a subservice number after 'subservice'");
    const ss = this.next();
    this.punct('{', "'{' to open the key service");
    const methods: MethodDecl[] = [];
    const parts: KeyServiceParts = {};
    while (!this.isPunct('}')) {
      const t = this.t;
      if ((this.isWord('pull') || this.isWord('handover')) && this.isColonNext()) {
        const which = this.next().value as 'pull' | 'handover';
        if (parts[which]) {
          throw new Stop(new IcsgenError('ICSGEN_ERR_DUPLICATE_NAME', `duplicate '${which}' in key service '${name.value}'`, t.pos));
        }
        this.next();
        parts[which] = this.withDoc({ type: this.type(), pos: t.pos }, t.doc);
        this.optional(';');
        continue;
      }
      if (this.isWord('msg')) this.fail("'rpc', 'idempotent', 'pull:', 'handover:' or '}' (a key service has no one-way messages)");
      if (!this.isWord('rpc') && !this.isWord('idempotent')) this.fail("'rpc', 'idempotent', 'pull:', 'handover:' or '}'");
      methods.push(this.method());
    }
    this.next();
    return this.withDoc(
      {
        kind: 'service',
        name: name.value,
        pos: name.pos,
        channel: 'keyservice',
        channelPos: name.pos,
        subservice: Number(ss.value),
        subservicePos: ss.pos,
        methods,
        keyService: parts,
      },
      kw.doc,
    );
  }

  private method(): MethodDecl {
    const first = this.t;
    let idempotent = false;
    if (this.isWord('idempotent')) {
      this.next();
      idempotent = true;
      if (!this.isWord('rpc')) this.fail("'rpc' after 'idempotent' (only an rpc can be retried)");
    }
    if (!this.isWord('rpc') && !this.isWord('msg')) this.fail("'rpc', 'msg', 'idempotent' or '}'");
    const kind = this.next().value === 'rpc' ? 'rpc' : 'oneway';
    const name = this.ident('a method name');
    const open = this.punct('(', `'(' after method name '${name.value}'`);
    const args: FieldDecl[] = [];
    while (!this.isPunct(')')) {
      args.push(this.field('an argument name'));
      if (!this.optional(',')) break;
    }
    const close = this.punct(')', "',' or ')'");
    const argsPos = { ...open.pos, length: close.pos.line === open.pos.line ? close.pos.col - open.pos.col + 1 : 1 };
    const m: MethodDecl = { name: name.value, pos: name.pos, kind, idempotent, args, argsPos };
    if (kind === 'rpc') {
      this.punct(':', `':' and a result type (or 'void') after the arguments of rpc '${name.value}'`);
      if (this.isWord('void')) {
        m.result = { kind: 'void', pos: this.next().pos };
      } else {
        m.result = this.type();
      }
    } else if (this.isPunct(':')) {
      this.fail(`a new line or '}': a one-way message ('msg') has no result; use 'rpc' for '${name.value}'`);
    }
    this.optional(';');
    return this.withDoc(m, first.doc);
  }

  /** `depth`: the levels (map<…>, […], ?) around this type; bounded so a hostile file cannot overflow the stack. */
  private type(depth = 1): TypeExpr {
    const t = this.t;
    if (depth > MAX_TYPE_DEPTH) this.tooDeep(t);
    if (t.kind !== 'ident') this.fail('a type');
    let type: TypeExpr;
    if (t.value === 'void') {
      this.fail("a type ('void' is only allowed as the result of an rpc)");
    } else if (t.value === 'map') {
      this.next();
      this.punct('<', "'<' after 'map' (map<T> has string keys)");
      const value = this.type(depth + 1);
      const close = this.punct('>', "'>' to close 'map<'");
      type = { kind: 'map', value, pos: { ...t.pos, length: close.pos.line === t.pos.line ? close.pos.col - t.pos.col + 1 : 3 } };
    } else if (BUILTINS.has(t.value)) {
      this.next();
      type = { kind: 'builtin', name: t.value as BuiltinName, pos: t.pos };
    } else {
      this.next();
      type = { kind: 'ref', name: t.value, pos: t.pos };
    }
    for (;;) {
      if ((this.isPunct('[') || this.isPunct('?')) && ++depth > MAX_TYPE_DEPTH) this.tooDeep(this.t);
      if (this.isPunct('[')) {
        this.next();
        const close = this.punct(']', "']' after '['");
        type = { kind: 'array', element: type, pos: { ...type.pos, length: close.pos.col - type.pos.col + 1 } };
      } else if (this.isPunct('?')) {
        if (type.kind === 'nullable') this.fail('a field name, argument or \'}\' (the type is already nullable)');
        const q = this.next();
        type = { kind: 'nullable', inner: type, pos: { ...type.pos, length: q.pos.col - type.pos.col + 1 } };
      } else {
        return type;
      }
    }
  }
}

export interface ParseResult {
  ast?: IcsFile;
  errors: IcsgenError[];
}

/** Parses one file. `file` is the name used in positions. */
export function parse(source: string, file: string): ParseResult {
  try {
    const tokens = new Lexer(source, file).tokens();
    return { ast: new Parser(tokens).file(file), errors: [] };
  } catch (e) {
    if (e instanceof Stop) return { errors: [e.error] };
    throw e;
  }
}
