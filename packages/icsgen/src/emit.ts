/**
 * Emits one TypeScript module per `.ics` file: TS types and zod schemas for
 * enums and structs, a zod schema for every argument list and result, and
 * a descriptor per service for core's typed runtime (`serve`, `client`).
 * Nothing here is runtime logic: validation, dispatch and encoding live in
 * `@clusterinfra/core`, and the plain-data schema behind `any` lives in
 * `@clusterinfra/icsgen/runtime`.
 *
 * The output is deterministic (it depends only on the IDL), so `--check`
 * can compare it byte for byte.
 */
import type { EnumDecl, FieldDecl, MethodDecl, ServiceDecl, StructDecl, TypeExpr } from './ast.js';
import { argsName, type LoadedFile, outputName, resultName } from './resolve.js';

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

  constructor(private readonly file: LoadedFile) {}

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
    return [
      ...jsdoc(doc || undefined),
      `export type ${d.name} = ${d.members.map((m) => quote(m.name)).join(' | ')};`,
      ...jsdoc(doc || undefined),
      `export const ${d.name} = z.enum([${d.members.map((m) => quote(m.name)).join(', ')}]);`,
    ];
  }

  private structDecl(d: StructDecl): string[] {
    const out = [...jsdoc(d.doc)];
    if (d.fields.length === 0) {
      out.push(`export interface ${d.name} {}`);
    } else {
      out.push(`export interface ${d.name} {`);
      for (const f of d.fields) {
        out.push(...jsdoc(f.doc, '  '), `  ${f.name}${f.optional ? '?' : ''}: ${this.tsType(f.type)};`);
      }
      out.push('}');
    }
    out.push(...jsdoc(d.doc));
    // The explicit type (output and input alike: no schema here transforms) lets structs refer to
    // themselves and to structs declared later, through z.lazy.
    if (d.fields.length === 0) {
      out.push(`export const ${d.name}: z.ZodType<${d.name}, ${d.name}> = z.object({});`);
    } else {
      out.push(`export const ${d.name}: z.ZodType<${d.name}, ${d.name}> = z.object({`);
      for (const f of d.fields) out.push(`  ${f.name}: ${this.fieldSchema(f, true)},`);
      out.push('});');
    }
    this.defined.add(d.name);
    return out;
  }

  private argsSchema(s: ServiceDecl, m: MethodDecl): string[] {
    const name = argsName(s, m.name);
    const out = [`/** The arguments of ${s.name}.${m.name}, sent as one object. */`];
    if (m.args.length === 0) {
      out.push(`export const ${name} = z.object({});`);
    } else {
      out.push(`export const ${name} = z.object({`);
      for (const a of m.args) out.push(...jsdoc(a.doc, '  '), `  ${a.name}: ${this.fieldSchema(a, false)},`);
      out.push('});');
    }
    out.push(`export type ${name} = z.input<typeof ${name}>;`);
    return out;
  }

  private resultSchema(s: ServiceDecl, m: MethodDecl): string[] {
    const name = resultName(s, m.name);
    const r = m.result!;
    if (r.kind === 'void') {
      return [
        `/** ${s.name}.${m.name} has no result: the handler returns nothing (or null) and the caller gets null. */`,
        `export const ${name} = z.union([z.void(), z.null()]).transform(() => null);`,
        `export type ${name} = z.output<typeof ${name}>;`,
      ];
    }
    return [`/** The result of ${s.name}.${m.name}. */`, `export const ${name} = ${this.zod(r, false)};`, `export type ${name} = z.output<typeof ${name}>;`];
  }

  private serviceDecl(s: ServiceDecl): string[] {
    const out: string[] = [];
    for (const m of s.methods) {
      out.push(...this.argsSchema(s, m), '');
      if (m.kind === 'rpc') out.push(...this.resultSchema(s, m), '');
    }
    out.push(...jsdoc(s.doc), `export const ${s.name} = defineService({`);
    out.push(`  name: ${quote(s.name)},`, `  channel: ${quote(s.channel)},`, `  subservice: ${s.subservice},`);
    if (s.doc !== undefined) out.push(`  description: ${quote(s.doc)},`);
    out.push('  methods: {');
    for (const m of s.methods) {
      const parts = [`kind: ${quote(m.kind)}`, `input: ${argsName(s, m.name)}`];
      if (m.kind === 'rpc') parts.push(`output: ${resultName(s, m.name)}`);
      if (m.idempotent) parts.push('idempotent: true');
      if (m.doc !== undefined) parts.push(`description: ${quote(m.doc)}`);
      out.push(...jsdoc(m.doc, '    '), `    ${m.name}: { ${parts.join(', ')} },`);
    }
    out.push('  },', '});');
    out.push(
      '',
      `/** What \`serve(ics, ${s.name}, impl)\` takes: one handler per method. */`,
      `export type ${s.name}Impl = ServiceImpl<(typeof ${s.name})['methods']>;`,
      `/** What \`client(ics, ${s.name}, node)\` returns. */`,
      `export type ${s.name}Client = ServiceClient<(typeof ${s.name})['methods']>;`,
    );
    return out;
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
    head.push("import { z } from 'zod';");
    if (services.length > 0) {
      head.push("import { defineService, type ServiceClient, type ServiceImpl } from '@clusterinfra/core';");
    }
    if (this.usesRuntime.value) head.push(`import { type PlainData, plainData } from '${RUNTIME_MODULE}';`);
    for (const dep of this.file.imports) {
      const names = this.imported.get(dep);
      if (!names || names.size === 0) continue;
      head.push(`import { ${[...names].sort().join(', ')} } from './${outputName(dep.path).replace(/\.ts$/, '.js')}';`);
    }
    return `${[head.join('\n'), ...body.map((b) => b.join('\n'))].join('\n\n')}\n`;
  }
}

/** The TypeScript module generated for one loaded file. */
export function emitFile(file: LoadedFile): string {
  return new FileEmitter(file).emit();
}
