/**
 * Emits one TypeScript module per `.ics` file: TS types and zod schemas for
 * enums and structs, a zod schema for every argument list and result, and
 * a descriptor per service for core's typed runtime (`serve`, `client`), or
 * per key service (`serveKeyService`, `keyServiceClient`). Or, for users
 * without a TypeScript toolchain, the same as plain JavaScript (the values)
 * plus a `.d.ts` (the types). Nothing here is runtime logic: validation,
 * dispatch and encoding live in `@clusterinfra/core`, and the plain-data
 * schema behind `any` lives in `@clusterinfra/icsgen/runtime`.
 *
 * The output is deterministic (it depends only on the IDL), so `--check`
 * can compare it byte for byte.
 */
import type { EnumDecl, FieldDecl, MethodDecl, ServiceDecl, StructDecl, TypeExpr } from './ast.js';
import { argsName, dataName, KEY_SERVICE_DATA, type LoadedFile, outputName, resultName } from './resolve.js';

/** What one emitter run writes: a TypeScript module, or the JavaScript module or the declarations of the `js` output. */
export type EmitMode = 'ts' | 'js' | 'dts';

/** The import generated code uses for the `any` type's schema. */
export const RUNTIME_MODULE = '@clusterinfra/icsgen/runtime';

/**
 * The wire form of `bigint`: a decimal string. ICS refuses BigInt values,
 * and a descriptor's schemas are used both to check what a client sends and
 * to parse what a server receives, so a schema that turned strings into
 * BigInts would make the server's view differ from the client's.
 */
export const BIGINT_PATTERN = '/^-?(0|[1-9][0-9]*)$/';

function quote(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n').replace(/\r/g, '\\r')}'`;
}

function jsdoc(doc: string | undefined, indent = ''): string[] {
  if (doc === undefined || doc.trim() === '') return [];
  const lines = doc.replace(/\*\//g, '*\\/').split('\n');
  if (lines.length === 1) return [`${indent}/** ${lines[0]} */`];
  return [`${indent}/**`, ...lines.map((l) => (l === '' ? `${indent} *` : `${indent} * ${l}`)), `${indent} */`];
}

class FileEmitter {
  private readonly usesRuntime = { value: false };
  /** Imported type names, by the file that declares them. */
  private readonly imported = new Map<LoadedFile, Set<string>>();
  /** Structs of this file whose schema is defined by now (earlier ones can be referenced directly). */
  private readonly defined = new Set<string>();

  constructor(
    private readonly file: LoadedFile,
    private readonly mode: EmitMode,
  ) {}

  /** Types are written in `ts` and `dts`; values (schemas, descriptors) in `ts` and `js`. */
  private get types(): boolean {
    return this.mode !== 'js';
  }

  private get values(): boolean {
    return this.mode !== 'dts';
  }

  /** `export const N: T = value;`, `export const N = value;` or `export declare const N: T;` as the mode wants. */
  private constant(name: string, type: string | undefined, value: string): string {
    if (this.mode === 'dts') return `export declare const ${name}: ${type};`;
    return this.mode === 'ts' && type !== undefined && type !== '' ? `export const ${name}: ${type} = ${value};` : `export const ${name} = ${value};`;
  }

  private refFile(name: string): LoadedFile {
    const r = this.file.scope.get(name);
    if (!r) throw new Error(`icsgen internal error: unresolved type ${name}`);
    if (r.file !== this.file) {
      let set = this.imported.get(r.file);
      if (!set) this.imported.set(r.file, (set = new Set()));
      set.add(name);
    }
    return r.file;
  }

  tsType(t: TypeExpr): string {
    switch (t.kind) {
      case 'builtin':
        switch (t.name) {
          case 'bool':
            return 'boolean';
          case 'int':
          case 'uint':
          case 'float':
            return 'number';
          case 'bigint':
          case 'string':
            return 'string';
          case 'bytes':
            return 'Uint8Array';
          case 'any':
            this.usesRuntime.value = true;
            return 'PlainData';
        }
        break;
      case 'ref':
        this.refFile(t.name);
        return t.name;
      case 'array': {
        const inner = this.tsType(t.element);
        return t.element.kind === 'nullable' ? `(${inner})[]` : `${inner}[]`;
      }
      case 'map':
        return `Record<string, ${this.tsType(t.value)}>`;
      case 'nullable':
        return `${this.tsType(t.inner)} | null`;
    }
  }

  /** `lazy`: inside a struct schema, where a reference to a struct not yet defined must be deferred. */
  zod(t: TypeExpr, lazy: boolean): string {
    switch (t.kind) {
      case 'builtin':
        switch (t.name) {
          case 'bool':
            return 'z.boolean()';
          case 'int':
            return 'z.number().int()';
          case 'uint':
            return 'z.number().int().nonnegative()';
          case 'float':
            return 'z.number()';
          case 'bigint':
            return `z.string().regex(${BIGINT_PATTERN}, 'expected a decimal integer string')`;
          case 'string':
            return 'z.string()';
          case 'bytes':
            return 'z.instanceof(Uint8Array)';
          case 'any':
            this.usesRuntime.value = true;
            return 'plainData';
        }
        break;
      case 'ref': {
        const from = this.refFile(t.name);
        const decl = this.file.scope.get(t.name)!.decl;
        const deferred = lazy && from === this.file && decl.kind === 'struct' && !this.defined.has(t.name);
        return deferred ? `z.lazy(() => ${t.name})` : t.name;
      }
      case 'array':
        return `z.array(${this.zod(t.element, lazy)})`;
      case 'map':
        return `z.record(z.string(), ${this.zod(t.value, lazy)})`;
      case 'nullable':
        return `${this.zod(t.inner, lazy)}.nullable()`;
    }
  }

  private fieldSchema(f: FieldDecl, lazy: boolean): string {
    return `${this.zod(f.type, lazy)}${f.optional ? '.optional()' : ''}`;
  }

  private enumDecl(d: EnumDecl): string[] {
    const memberDocs = d.members.filter((m) => m.doc !== undefined).map((m) => `- \`${m.name}\`: ${m.doc!.replace(/\n/g, ' ')}`);
    const doc = [d.doc, memberDocs.length > 0 ? memberDocs.join('\n') : undefined].filter((x) => x !== undefined).join('\n\n');
    const out: string[] = [];
    if (this.types) out.push(...jsdoc(doc || undefined), `export type ${d.name} = ${d.members.map((m) => quote(m.name)).join(' | ')};`);
    const type = `z.ZodEnum<{ ${d.members.map((m) => `${m.name}: ${quote(m.name)}`).join('; ')} }>`;
    out.push(...jsdoc(doc || undefined), this.constant(d.name, this.mode === 'dts' ? type : undefined, `z.enum([${d.members.map((m) => quote(m.name)).join(', ')}])`));
    return out;
  }

  /** `export interface N { … }` with each field's doc; `{}` when it has none. */
  private iface(name: string, doc: string | undefined, fields: FieldDecl[]): string[] {
    const out = [...jsdoc(doc)];
    if (fields.length === 0) return [...out, `export interface ${name} {}`];
    out.push(`export interface ${name} {`);
    for (const f of fields) out.push(...jsdoc(f.doc, '  '), `  ${f.name}${f.optional ? '?' : ''}: ${this.tsType(f.type)};`);
    out.push('}');
    return out;
  }

  /** `z.object({ … })` over `fields`; `lazy`: see zod(). */
  private object(fields: FieldDecl[], lazy: boolean, docs: boolean): string {
    if (fields.length === 0) return 'z.object({})';
    const lines = fields.flatMap((f) => [...(docs ? jsdoc(f.doc, '  ') : []), `  ${f.name}: ${this.fieldSchema(f, lazy)},`]);
    return `z.object({\n${lines.join('\n')}\n})`;
  }

  private structDecl(d: StructDecl): string[] {
    const out = this.types ? this.iface(d.name, d.doc, d.fields) : [];
    // The explicit type (output and input alike: no schema here transforms) lets structs refer to
    // themselves and to structs declared later, through z.lazy.
    out.push(...jsdoc(d.doc), this.constant(d.name, `z.ZodType<${d.name}, ${d.name}>`, this.values ? this.object(d.fields, true, false) : ''));
    this.defined.add(d.name);
    return out;
  }

  private argsSchema(s: ServiceDecl, m: MethodDecl): string[] {
    const name = argsName(s, m.name);
    const doc = `The arguments of ${s.name}.${m.name}, sent as one object.`;
    if (this.mode === 'dts') return [...this.iface(name, doc, m.args), this.constant(name, `z.ZodType<${name}, ${name}>`, '')];
    const out = [`/** ${doc} */`, this.constant(name, undefined, this.object(m.args, false, true))];
    if (this.mode === 'ts') out.push(`export type ${name} = z.input<typeof ${name}>;`);
    return out;
  }

  /** A schema named `name` for `t`, with its type (output and input alike, since no schema here transforms). */
  private typedSchema(name: string, doc: string, t: TypeExpr): string[] {
    if (this.mode === 'dts') return [...jsdoc(doc), `export type ${name} = ${this.tsType(t)};`, this.constant(name, `z.ZodType<${name}, ${name}>`, '')];
    const out = [...jsdoc(doc), this.constant(name, undefined, this.zod(t, false))];
    if (this.mode === 'ts') out.push(`export type ${name} = z.output<typeof ${name}>;`);
    return out;
  }

  private resultSchema(s: ServiceDecl, m: MethodDecl): string[] {
    const name = resultName(s, m.name);
    const r = m.result!;
    if (r.kind !== 'void') return this.typedSchema(name, `The result of ${s.name}.${m.name}.`, r);
    const doc = `/** ${s.name}.${m.name} has no result: the handler returns nothing (or null) and the caller gets null. */`;
    if (this.mode === 'dts') return [doc, `export type ${name} = null;`, this.constant(name, 'z.ZodType<null, void | null>', '')];
    const out = [doc, this.constant(name, undefined, 'z.union([z.void(), z.null()]).transform(() => null)')];
    if (this.mode === 'ts') out.push(`export type ${name} = z.output<typeof ${name}>;`);
    return out;
  }

  /** The `methods` entries of a descriptor: object literal lines for values, a type literal for `dts`. */
  private methodEntries(s: ServiceDecl): string[] {
    const out: string[] = [];
    for (const m of s.methods) {
      if (this.mode === 'dts') {
        const parts = [`kind: ${quote(m.kind)}`, `input: typeof ${argsName(s, m.name)}`];
        if (m.kind === 'rpc') parts.push(`output: typeof ${resultName(s, m.name)}`);
        if (m.idempotent) parts.push('idempotent: true');
        if (m.doc !== undefined) parts.push('description: string');
        out.push(...jsdoc(m.doc, '  '), `  ${m.name}: { ${parts.join('; ')} };`);
        continue;
      }
      const parts = [`kind: ${quote(m.kind)}`, `input: ${argsName(s, m.name)}`];
      if (m.kind === 'rpc') parts.push(`output: ${resultName(s, m.name)}`);
      if (m.idempotent) parts.push('idempotent: true');
      if (m.doc !== undefined) parts.push(`description: ${quote(m.doc)}`);
      out.push(...jsdoc(m.doc, '    '), `    ${m.name}: { ${parts.join(', ')} },`);
    }
    return out;
  }

  private serviceDecl(s: ServiceDecl): string[] {
    const out: string[] = [];
    for (const m of s.methods) {
      out.push(...this.argsSchema(s, m), '');
      if (m.kind === 'rpc') out.push(...this.resultSchema(s, m), '');
    }
    if (s.keyService) return [...out, ...this.keyServiceDescriptor(s)];
    if (this.mode === 'dts') {
      out.push(...jsdoc(s.doc), `export declare const ${s.name}: ServiceDescriptor<{`, ...this.methodEntries(s), '}>;');
    } else {
      out.push(...jsdoc(s.doc), `export const ${s.name} = defineService({`);
      out.push(`  name: ${quote(s.name)},`, `  channel: ${quote(s.channel)},`, `  subservice: ${s.subservice},`);
      if (s.doc !== undefined) out.push(`  description: ${quote(s.doc)},`);
      out.push('  methods: {', ...this.methodEntries(s), '  },', '});');
    }
    if (this.types) {
      out.push(
        '',
        `/** What \`serve(ics, ${s.name}, impl)\` takes: one handler per method. */`,
        `export type ${s.name}Impl = ServiceImpl<(typeof ${s.name})['methods']>;`,
        `/** What \`client(ics, ${s.name}, node)\` returns. */`,
        `export type ${s.name}Client = ServiceClient<(typeof ${s.name})['methods']>;`,
      );
    }
    return out;
  }

  private keyServiceDescriptor(s: ServiceDecl): string[] {
    const out: string[] = [];
    const what = { pull: "What each survivor's `pullData` returns to the new host.", handover: "What the old host's `handover` returns to the new host on a clean leave." };
    for (const which of KEY_SERVICE_DATA) {
      const part = s.keyService![which];
      if (part) out.push(...this.typedSchema(dataName(s, which), [what[which], part.doc].filter((x) => x !== undefined).join('\n'), part.type), '');
    }
    const pull = s.keyService!.pull ? dataName(s, 'pull') : undefined;
    const handover = s.keyService!.handover ? dataName(s, 'handover') : undefined;
    if (this.mode === 'dts') {
      const data = `, ${pull ? `typeof ${pull}` : 'undefined'}, ${handover ? `typeof ${handover}` : 'undefined'}`;
      out.push(...jsdoc(s.doc), `export declare const ${s.name}: KeyServiceDescriptor<{`, ...this.methodEntries(s), `}${data}>;`);
    } else {
      out.push(...jsdoc(s.doc), `export const ${s.name} = defineKeyService({`, `  name: ${quote(s.name)},`, `  subservice: ${s.subservice},`);
      if (s.doc !== undefined) out.push(`  description: ${quote(s.doc)},`);
      out.push('  methods: {', ...this.methodEntries(s), '  },');
      if (pull) out.push(`  pullData: ${pull},`);
      if (handover) out.push(`  handover: ${handover},`);
      out.push('});');
    }
    if (this.types) {
      out.push(
        '',
        `/** What \`serveKeyService(node, ${s.name}, impl)\` takes: a handler per method and the failover callbacks. */`,
        `export type ${s.name}Impl = KeyServiceImpl<typeof ${s.name}>;`,
        `/** What \`keyServiceClient(node, ${s.name})\` returns: its methods, called on whichever node hosts it. */`,
        `export type ${s.name}Client = KeyServiceClient<typeof ${s.name}>;`,
      );
    }
    return out;
  }

  /** The import of core's names: values for `js`, types for `dts`, both for `ts`. */
  private coreImport(services: ServiceDecl[]): string | undefined {
    const plain = services.some((s) => !s.keyService);
    const keyed = services.some((s) => s.keyService);
    const values = [...(keyed ? ['defineKeyService'] : []), ...(plain ? ['defineService'] : [])];
    const types = [
      ...(keyed ? ['KeyServiceClient', ...(this.mode === 'dts' ? ['KeyServiceDescriptor'] : []), 'KeyServiceImpl'] : []),
      ...(plain ? ['ServiceClient', ...(this.mode === 'dts' ? ['ServiceDescriptor'] : []), 'ServiceImpl'] : []),
    ];
    if (values.length === 0) return undefined;
    if (this.mode === 'js') return `import { ${values.join(', ')} } from '@clusterinfra/core';`;
    if (this.mode === 'dts') return `import type { ${types.join(', ')} } from '@clusterinfra/core';`;
    return `import { ${[...values, ...types.map((t) => `type ${t}`)].join(', ')} } from '@clusterinfra/core';`;
  }

  emit(): string {
    const decls = this.file.ast.decls;
    const body: string[][] = [];
    // Enums first: they depend on nothing, and structs may use them anywhere.
    for (const d of decls) if (d.kind === 'enum') body.push(this.enumDecl(d));
    for (const d of decls) if (d.kind === 'struct') body.push(this.structDecl(d));
    const services = decls.filter((d): d is ServiceDecl => d.kind === 'service');
    for (const s of services) body.push(this.serviceDecl(s));

    const head = [`// @generated by icsgen from ${this.file.path.split(/[\\/]/).pop()}. DO NOT EDIT.`, ''];
    head.push(this.mode === 'dts' ? "import type { z } from 'zod';" : "import { z } from 'zod';");
    const core = this.coreImport(services);
    if (core) head.push(core);
    if (this.usesRuntime.value) {
      const runtime = { ts: '{ type PlainData, plainData }', js: '{ plainData }', dts: 'type { PlainData }' }[this.mode];
      head.push(`import ${runtime} from '${RUNTIME_MODULE}';`);
    }
    for (const dep of this.file.imports) {
      const names = this.imported.get(dep);
      if (!names || names.size === 0) continue;
      const from = outputName(dep.path, 'js');
      head.push(`import ${this.mode === 'dts' ? 'type ' : ''}{ ${[...names].sort().join(', ')} } from './${from}';`);
    }
    return `${[head.join('\n'), ...body.map((b) => b.join('\n'))].join('\n\n')}\n`;
  }
}

/** The module generated for one loaded file: TypeScript (`ts`), or the JavaScript or declarations of the `js` output. */
export function emitFile(file: LoadedFile, mode: EmitMode = 'ts'): string {
  return new FileEmitter(file, mode).emit();
}
