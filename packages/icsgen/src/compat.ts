/**
 * Compares an old and a new version of an interface and lists the changes
 * that break peers still running the old one (a rolling upgrade has both).
 * Types are compared by structure, since type names never go on the wire:
 * renaming a struct is not a change, changing what it holds is.
 */
import type { FieldDecl, MethodDecl, Pos, ServiceDecl, TypeDecl, TypeExpr } from './ast.js';
import { KEY_SERVICE_DATA, type LoadedFile } from './resolve.js';

export const BREAKING_CHANGE_KINDS = [
  'SERVICE_REMOVED',
  'ADDRESS_CHANGED',
  'METHOD_REMOVED',
  'KIND_CHANGED',
  'FIELD_REMOVED',
  'FIELD_ADDED_REQUIRED',
  'OPTIONAL_TO_REQUIRED',
  'TYPE_CHANGED',
  'ENUM_VALUE_REMOVED',
  'ENUM_VALUE_ADDED',
] as const;

export type BreakingChangeKind = (typeof BREAKING_CHANGE_KINDS)[number];

export interface BreakingChange {
  kind: BreakingChangeKind;
  /** What changed, e.g. `Kv.put(entry).value`. */
  path: string;
  message: string;
  /** In the new file where the thing still exists, else in the old one. */
  at: Pos;
}

interface Side {
  file: LoadedFile;
}

function typeText(t: TypeExpr | { kind: 'void' } | undefined): string {
  if (!t) return 'nothing';
  switch (t.kind) {
    case 'void':
      return 'void';
    case 'builtin':
      return t.name;
    case 'ref':
      return t.name;
    case 'array':
      return `${typeText(t.element)}[]`;
    case 'map':
      return `map<${typeText(t.value)}>`;
    case 'nullable':
      return `${typeText(t.inner)}?`;
  }
}

class Comparer {
  readonly changes: BreakingChange[] = [];
  /** Struct and enum pairs already compared (or being compared: recursive types). */
  private readonly seen = new Set<string>();
  private readonly ids = new Map<TypeDecl, number>();

  private id(d: TypeDecl): number {
    let n = this.ids.get(d);
    if (n === undefined) this.ids.set(d, (n = this.ids.size));
    return n;
  }

  private add(kind: BreakingChangeKind, path: string, message: string, at: Pos): void {
    this.changes.push({ kind, path, message: `${path}: ${message}`, at });
  }

  services(oldFile: LoadedFile, newFile: LoadedFile): void {
    const oldOnes = oldFile.ast.decls.filter((d): d is ServiceDecl => d.kind === 'service');
    const newOnes = new Map(newFile.ast.decls.filter((d): d is ServiceDecl => d.kind === 'service').map((s) => [s.name, s]));
    for (const o of oldOnes) {
      const n = newOnes.get(o.name);
      if (!n) {
        this.add('SERVICE_REMOVED', o.name, 'service removed', o.pos);
        continue;
      }
      if (o.channel !== n.channel || o.subservice !== n.subservice) {
        this.add(
          'ADDRESS_CHANGED',
          n.name,
          `address changed from channel ${o.channel} subservice ${o.subservice} to channel ${n.channel} subservice ${n.subservice}`,
          o.channel !== n.channel ? n.channelPos : n.subservicePos,
        );
      }
      if ((o.keyService === undefined) !== (n.keyService === undefined)) {
        const word = (s: ServiceDecl): string => (s.keyService ? 'keyservice' : 'service');
        this.add('KIND_CHANGED', n.name, `changed from ${word(o)} to ${word(n)}`, n.pos);
        continue;
      }
      for (const which of KEY_SERVICE_DATA) {
        // Old and new hosts exchange this data during a rolling upgrade.
        const od = o.keyService?.[which];
        const nd = n.keyService?.[which];
        const path = `${n.name} ${which}`;
        if (od && nd) this.type(path, { file: oldFile }, od.type, { file: newFile }, nd.type);
        else if (od || nd) this.add('TYPE_CHANGED', path, `type changed from ${typeText(od?.type)} to ${typeText(nd?.type)}`, nd?.pos ?? n.pos);
      }
      const newMethods = new Map(n.methods.map((m) => [m.name, m]));
      for (const om of o.methods) {
        const nm = newMethods.get(om.name);
        const path = `${o.name}.${om.name}`;
        if (!nm) {
          this.add('METHOD_REMOVED', path, 'method removed', om.pos);
          continue;
        }
        this.method(path, { file: oldFile }, om, { file: newFile }, nm);
      }
    }
  }

  private method(path: string, os: Side, o: MethodDecl, ns: Side, n: MethodDecl): void {
    if (o.kind !== n.kind) {
      const word = (k: string): string => (k === 'rpc' ? 'rpc' : 'msg');
      this.add('KIND_CHANGED', path, `changed from ${word(o.kind)} to ${word(n.kind)}`, n.pos);
      return;
    }
    this.fields(path, 'argument', os, o.args, ns, n.args, (name) => `${path}(${name})`);
    if (o.kind === 'rpc') {
      const or = o.result!;
      const nr = n.result!;
      if (or.kind === 'void' || nr.kind === 'void') {
        if (or.kind !== nr.kind) this.add('TYPE_CHANGED', `${path} result`, `type changed from ${typeText(or)} to ${typeText(nr)}`, nr.pos);
      } else {
        this.type(`${path} result`, os, or, ns, nr);
      }
    }
  }

  private fields(
    owner: string,
    what: 'argument' | 'field',
    os: Side,
    o: FieldDecl[],
    ns: Side,
    n: FieldDecl[],
    pathOf: (name: string) => string,
  ): void {
    const newByName = new Map(n.map((f) => [f.name, f]));
    const oldByName = new Map(o.map((f) => [f.name, f]));
    for (const of of o) {
      const nf = newByName.get(of.name);
      const path = pathOf(of.name);
      if (!nf) {
        this.add('FIELD_REMOVED', path, `${what} removed`, of.pos);
        continue;
      }
      if (of.optional && !nf.optional) {
        this.add('OPTIONAL_TO_REQUIRED', path, `${what} changed from optional to required (old peers may leave it out)`, nf.pos);
      }
      this.type(path, os, of.type, ns, nf.type);
    }
    for (const nf of n) {
      if (!oldByName.has(nf.name) && !nf.optional) {
        this.add('FIELD_ADDED_REQUIRED', pathOf(nf.name), `required ${what} added to ${owner} (old peers do not send it); make it optional`, nf.pos);
      }
    }
  }

  private type(path: string, os: Side, o: TypeExpr, ns: Side, n: TypeExpr): void {
    const changed = (): void => this.add('TYPE_CHANGED', path, `type changed from ${typeText(o)} to ${typeText(n)}`, n.pos);
    if (o.kind !== n.kind) {
      changed();
      // T ↔ T?: still look inside, so that changes to T are not hidden behind this one.
      if (o.kind === 'nullable') this.type(path, os, o.inner, ns, n);
      else if (n.kind === 'nullable') this.type(path, os, o, ns, n.inner);
      return;
    }
    switch (o.kind) {
      case 'builtin':
        if (o.name !== (n as typeof o).name) changed();
        return;
      case 'array':
        return this.type(`${path}[]`, os, o.element, ns, (n as typeof o).element);
      case 'map':
        return this.type(`${path}{}`, os, o.value, ns, (n as typeof o).value);
      case 'nullable':
        return this.type(path, os, o.inner, ns, (n as typeof o).inner);
      case 'ref': {
        const od = os.file.scope.get(o.name);
        const nd = ns.file.scope.get((n as typeof o).name);
        if (!od || !nd) return;
        if (od.decl.kind !== nd.decl.kind) return changed();
        const key = `${this.id(od.decl)}:${this.id(nd.decl)}`;
        if (this.seen.has(key)) return;
        this.seen.add(key);
        if (od.decl.kind === 'enum' && nd.decl.kind === 'enum') {
          const newMembers = new Set(nd.decl.members.map((m) => m.name));
          const oldMembers = new Set(od.decl.members.map((m) => m.name));
          for (const m of od.decl.members) {
            if (!newMembers.has(m.name)) this.add('ENUM_VALUE_REMOVED', `${path}`, `enum ${nd.decl.name} lost value '${m.name}'`, nd.decl.pos);
          }
          for (const m of nd.decl.members) {
            if (!oldMembers.has(m.name)) {
              this.add('ENUM_VALUE_ADDED', `${path}`, `enum ${nd.decl.name} gained value '${m.name}' (old peers refuse it)`, m.pos);
            }
          }
        } else if (od.decl.kind === 'struct' && nd.decl.kind === 'struct') {
          const nStruct = nd.decl;
          this.fields(nStruct.name, 'field', { file: od.file }, od.decl.fields, { file: nd.file }, nStruct.fields, (f) => `${path}.${f}`);
        }
      }
    }
  }
}

/** The breaking changes from `oldFile` to `newFile` (both loaded with their imports). */
export function compareFiles(oldFile: LoadedFile, newFile: LoadedFile): BreakingChange[] {
  const c = new Comparer();
  c.services(oldFile, newFile);
  return c.changes;
}
