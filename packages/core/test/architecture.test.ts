/**
 * The directions of packages/core/src (DESIGN §3, docs/architecture.md):
 *
 * - Protocol code (clms/protocol/; in keyservice/ the view, the placement,
 *   the messages and the decisions of routing, hosting and the master) is
 *   pure and synchronous: it imports nothing from ics/, clock/ or any other
 *   IO layer, no node:* module and no package but zod, neither directly nor
 *   through what it imports; it has no `async`, `await` or `Promise`, no
 *   timers, no clock and no randomness of its own (time and chance come in
 *   as inputs).
 * - The parts of an ICS endpoint (ICS_PARTS) import only the parts below
 *   them.
 * - Dependencies point one way: the driver (clms/node.ts and clms/driver/)
 *   uses the protocol, never the reverse; a part in clms/driver/ gets a
 *   narrow port of what it needs from its node, never the ClusterNode
 *   itself (it imports no clms/node.ts); keyservice/ uses CLMS only
 *   through its public surface, clms/index.ts; CLMS reaches key services
 *   only where the ClusterNode wires the layer in (node.ts and
 *   driver/runtime.ts, through keyservice/index.ts).
 *
 * `findViolations` reads sources with the TypeScript parser; the first test
 * feeds it a tree with planted violations, so the rules are shown to bite.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/**
 * Files held to the protocol rules. In keyservice/, the decisions: the view,
 * the placement, the messages, the rules of routing a call (route.ts), of
 * hosting (takeover.ts) and of the master's proposals (proposals.ts), and
 * the state machines on those rules (step(input), ready(): effects) of a
 * call by name (calling.ts), a takeover (activation.ts), collecting a
 * hand-over (collect.ts) and asking the master (ask.ts), with what they
 * share (machine.ts), which routing.ts, host.ts and master.ts drive.
 */
const PURE_KEYSERVICE = new Set([
  'keyservice/view.ts',
  'keyservice/placement.ts',
  'keyservice/messages.ts',
  'keyservice/route.ts',
  'keyservice/takeover.ts',
  'keyservice/proposals.ts',
  'keyservice/calling.ts',
  'keyservice/activation.ts',
  'keyservice/collect.ts',
  'keyservice/ask.ts',
  'keyservice/machine.ts',
]);
const isPure = (f: string): boolean => f.startsWith('clms/protocol/') || f.startsWith('schema/') || PURE_KEYSERVICE.has(f);
/** What pure code may import (and what those import in turn). */
const pureMayUse = (f: string): boolean => isPure(f) || f === 'clms/types.ts' || f.startsWith('errors/');
/** IO layers no pure file may name, even for a type. */
const IO_LAYERS = ['ics/', 'clock/', 'transport/', 'contracts/', 'logging/', 'random/', 'clms/driver/'];
/** Packages pure code may import. */
const PURE_PACKAGES = new Set(['zod']);
/** Names pure code must not use: asynchrony, timers, the clock, chance, the process. */
const IMPURE_NAMES = new Set(['Promise', 'PromiseLike', 'setTimeout', 'setInterval', 'setImmediate', 'queueMicrotask', 'Date', 'performance', 'process']);
/**
 * The imports from clms/ into keyservice/, through the layer's door: the
 * node's runtime (driver/runtime.ts) holds a KeyServiceManager, and the
 * ClusterNode facade names its types (its key-service API is part of the
 * node's). Nothing else in CLMS knows key services.
 */
const WIRING = new Set(['clms/node.ts -> keyservice/index.ts', 'clms/driver/runtime.ts -> keyservice/index.ts']);
/**
 * The parts of an ICS endpoint, lowest first (ics/ics.ts, the endpoint,
 * wires them): a part imports only parts before it, so none can reach the
 * endpoint or a part above it except through the hooks it is given.
 */
const ICS_PARTS = ['ics/shared.ts', 'ics/registry.ts', 'ics/peer.ts', 'ics/flow.ts', 'ics/serving.ts', 'ics/links.ts', 'ics/calls.ts', 'ics/receive.ts', 'ics/teardown.ts', 'ics/ics.ts'];
/** Type-only references up the order that are allowed: a peer's tables hold the entries the call table and serving own. */
const ICS_TYPE_BACKREFS = new Set(['ics/peer.ts -> ics/calls.ts', 'ics/peer.ts -> ics/serving.ts']);

interface Import {
  target: string;
  /** `import type`, or every name imported is a type: erased from the output. */
  typeOnly: boolean;
}

/** Every import of a source file: relative ones resolved to a path under src/, others as written. */
function importsOf(file: string, sf: ts.SourceFile, exists: (f: string) => boolean): Import[] {
  const out: Import[] = [];
  const add = (spec: string, typeOnly: boolean): void => {
    if (!spec.startsWith('.')) return void out.push({ target: spec, typeOnly });
    let p = posix.normalize(posix.join(posix.dirname(file), spec)).replace(/\.js$/, '.ts');
    if (!p.endsWith('.ts')) p = exists(`${p}.ts`) ? `${p}.ts` : `${p}/index.ts`;
    out.push({ target: p, typeOnly });
  };
  const visit = (n: ts.Node): void => {
    if (ts.isImportDeclaration(n) && ts.isStringLiteral(n.moduleSpecifier)) {
      const c = n.importClause;
      const named = c?.namedBindings && ts.isNamedImports(c.namedBindings) ? c.namedBindings.elements : undefined;
      const allTypes = c !== undefined && !c.name && named !== undefined && named.length > 0 && named.every((e) => e.isTypeOnly);
      add(n.moduleSpecifier.text, c?.isTypeOnly === true || allTypes);
    } else if (ts.isExportDeclaration(n) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      const named = n.exportClause && ts.isNamedExports(n.exportClause) ? n.exportClause.elements : undefined;
      add(n.moduleSpecifier.text, n.isTypeOnly || (named !== undefined && named.length > 0 && named.every((e) => e.isTypeOnly)));
    } else if (ts.isCallExpression(n) && n.arguments.length === 1 && ts.isStringLiteral(n.arguments[0]!)) {
      const callee = n.expression;
      if (callee.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(callee) && callee.text === 'require')) add((n.arguments[0] as ts.StringLiteral).text, false);
    } else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && ts.isStringLiteral(n.argument.literal)) {
      add(n.argument.literal.text, true);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** `async`, `await`, `for await`, and the names pure code must not use. */
function impurities(sf: ts.SourceFile): string[] {
  const found: string[] = [];
  const at = (n: ts.Node): string => `line ${sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1}`;
  const visit = (n: ts.Node): void => {
    if (ts.isAwaitExpression(n)) found.push(`await (${at(n)})`);
    if (ts.isForOfStatement(n) && n.awaitModifier) found.push(`for await (${at(n)})`);
    if (ts.canHaveModifiers(n) && ts.getModifiers(n)?.some((m) => m.kind === ts.SyntaxKind.AsyncKeyword)) found.push(`async (${at(n)})`);
    if (ts.isIdentifier(n) && IMPURE_NAMES.has(n.text)) found.push(`${n.text} (${at(n)})`);
    if (ts.isPropertyAccessExpression(n) && n.getText(sf) === 'Math.random') found.push(`Math.random (${at(n)})`);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return found;
}

/** Every broken rule in a source tree (path under src/ → text), as one line each. */
export function findViolations(files: ReadonlyMap<string, string>): string[] {
  const exists = (f: string): boolean => files.has(f);
  const parsed = new Map<string, { sf: ts.SourceFile; imports: Import[] }>();
  const get = (f: string): { sf: ts.SourceFile; imports: Import[] } | undefined => {
    const text = files.get(f);
    if (text === undefined) return undefined;
    let p = parsed.get(f);
    if (!p) {
      const sf = ts.createSourceFile(f, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
      parsed.set(f, (p = { sf, imports: importsOf(f, sf, exists) }));
    }
    return p;
  };
  const out: string[] = [];
  for (const f of files.keys()) {
    const { sf, imports } = get(f)!;
    for (const { target, typeOnly } of imports) {
      const relative = target.endsWith('.ts');
      if (isPure(f)) {
        if (!relative && (target.startsWith('node:') || builtinModules.includes(target))) out.push(`${f}: imports ${target} (a protocol file does no IO)`);
        else if (!relative && !PURE_PACKAGES.has(target)) out.push(`${f}: imports package ${target} (a protocol file uses only ${[...PURE_PACKAGES].join(', ')})`);
        else if (relative && IO_LAYERS.some((l) => target.startsWith(l))) out.push(`${f}: imports ${target} (a protocol file names no IO layer, not even for a type)`);
        else if (relative && !pureMayUse(target) && !(typeOnly && target === 'clms/index.ts')) {
          out.push(`${f}: imports ${target} (a protocol file uses only protocol code, clms/types.ts and errors/; the driver uses the protocol, not the reverse)`);
        }
      }
      if (f.startsWith('clms/driver/') && target === 'clms/node.ts') out.push(`${f}: imports ${target} (a driver part gets a port, not the ClusterNode)`);
      if (f.startsWith('keyservice/') && target.startsWith('clms/') && target !== 'clms/index.ts') out.push(`${f}: imports ${target} (key services use CLMS through clms/index.ts only)`);
      if (f.startsWith('clms/') && target.startsWith('keyservice/') && !WIRING.has(`${f} -> ${target}`)) out.push(`${f}: imports ${target} (CLMS does not depend on key services)`);
      const part = ICS_PARTS.indexOf(f);
      if (part >= 0 && ICS_PARTS.indexOf(target) >= part && !(typeOnly && ICS_TYPE_BACKREFS.has(`${f} -> ${target}`))) {
        out.push(`${f}: imports ${target} (an ICS part uses only the parts below it)`);
      }
    }
    if (isPure(f)) for (const i of impurities(sf)) out.push(`${f}: ${i} (a protocol file is synchronous and takes time and chance as inputs)`);
  }
  // What pure files import at run time must be pure-safe too, all the way down.
  for (const f of files.keys()) {
    if (!isPure(f)) continue;
    const seen = new Set<string>([f]);
    const queue = [f];
    while (queue.length > 0) {
      const cur = queue.shift()!;
      for (const { target, typeOnly } of get(cur)?.imports ?? []) {
        if (typeOnly || seen.has(target) || !target.endsWith('.ts')) continue;
        seen.add(target);
        if (!pureMayUse(target)) out.push(`${f}: reaches ${target} through ${cur} (not pure)`);
        else queue.push(target);
      }
      if (cur !== f && !isPure(cur)) {
        for (const { target } of get(cur)?.imports ?? []) {
          if (!target.endsWith('.ts') && !PURE_PACKAGES.has(target)) out.push(`${f}: reaches ${target} through ${cur} (not pure)`);
        }
      }
    }
  }
  return [...new Set(out)].sort();
}

function readTree(dir: string, prefix = ''): Map<string, string> {
  const files = new Map<string, string>();
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const rel = `${prefix}${e.name}`;
    if (e.isDirectory()) for (const [k, v] of readTree(posix.join(dir, e.name), `${rel}/`)) files.set(k, v);
    else if (e.name.endsWith('.ts')) files.set(rel, readFileSync(posix.join(dir, e.name), 'utf8'));
  }
  return files;
}

describe('architecture: import directions', () => {
  it('the rules catch each kind of violation (a planted tree)', () => {
    const tree = new Map<string, string>([
      ['clms/protocol/ok.ts', "import { z } from 'zod';\nimport type { Transition } from '../types.js';\nexport const f = (t: Transition): number => t.number;\n"],
      ['clms/protocol/io.ts', "import type { Ics } from '../../ics/ics.js';\nimport { readFileSync } from 'node:fs';\nimport { EventEmitter } from 'eventemitter3';\nexport type X = Ics;\n"],
      ['clms/protocol/waits.ts', 'export async function f(): Promise<void> {\n  await g();\n}\nexport const t = () => setTimeout(() => {}, Date.now() + Math.random());\n'],
      ['clms/protocol/driverish.ts', "import { ClusterNode } from '../node.js';\nimport { helper } from '../helper.js';\nexport const n = ClusterNode;\n"],
      ['clms/helper.ts', "import { clock } from '../clock/index.js';\nexport const helper = clock;\n"],
      ['clms/node.ts', "import { f } from './protocol/ok.js';\nimport { place } from '../keyservice/placement.js';\nimport { Manager } from '../keyservice/index.js';\nexport class ClusterNode {}\n"],
      ['clms/keyservices.ts', "import { place } from '../keyservice/index.js';\n"],
      ['clms/driver/join.ts', "import type { ClusterNode } from '../node.js';\nimport type { Core } from '../protocol/ok.js';\n"],
      ['keyservice/index.ts', "export { place } from './placement.js';\nexport { Manager } from './manager.js';\n"],
      ['keyservice/manager.ts', "import type { Ics } from '../ics/ics.js';\nimport type { ClusterNode } from '../clms/node.js';\nexport class Manager { run(): Promise<void> { return Promise.resolve(); } }\n"],
      ['keyservice/view.ts', "import type { Transition } from '../clms/index.js';\nimport { clock } from '../clock/index.js';\nimport { place } from './placement.js';\nexport const v = (t: Transition): Promise<number> => Promise.resolve(place([]) + clock);\n"],
      ['keyservice/messages.ts', "import { z } from 'zod';\nimport { Manager } from './manager.js';\nexport const s = z.string();\n"],
      ['clms/index.ts', "export { ClusterNode } from './node.js';\n"],
      ['clms/types.ts', 'export interface Transition { number: number }\n'],
      ['keyservice/placement.ts', "import type { MemberInfo } from '../clms/index.js';\nimport { History } from '../clms/protocol/history.js';\nexport const place = (m: MemberInfo[]): number => m.length;\n"],
      ['keyservice/route.ts', "import { IcsStatusError } from '../ics/status.js';\nexport const r = (): Promise<void> => Promise.resolve();\n"],
      ['keyservice/ask.ts', "import { Changes } from './waits.js';\nexport class AskMaster {\n  async step(c: Changes): Promise<void> {\n    await c.sleep(1);\n  }\n}\n"],
      ['keyservice/waits.ts', 'export class Changes { sleep(ms: number): void {} }\n'],
      ['clock/index.ts', 'export const clock = 1;\n'],
      ['ics/ics.ts', 'export interface Ics {}\n'],
      ['ics/flow.ts', "import { CallTable } from './calls.js';\nimport type { Peer } from './peer.js';\n"],
      ['ics/peer.ts', "import type { Pending } from './calls.js';\nimport { Links } from './links.js';\n"],
      ['ics/calls.ts', "import type { Ics } from './ics.js';\n"],
    ]);
    expect(findViolations(tree)).toEqual([
      'clms/driver/join.ts: imports clms/node.ts (a driver part gets a port, not the ClusterNode)',
      'clms/keyservices.ts: imports keyservice/index.ts (CLMS does not depend on key services)',
      'clms/node.ts: imports keyservice/placement.ts (CLMS does not depend on key services)',
      'clms/protocol/driverish.ts: imports clms/helper.ts (a protocol file uses only protocol code, clms/types.ts and errors/; the driver uses the protocol, not the reverse)',
      'clms/protocol/driverish.ts: imports clms/node.ts (a protocol file uses only protocol code, clms/types.ts and errors/; the driver uses the protocol, not the reverse)',
      'clms/protocol/driverish.ts: reaches clms/helper.ts through clms/protocol/driverish.ts (not pure)',
      'clms/protocol/driverish.ts: reaches clms/node.ts through clms/protocol/driverish.ts (not pure)',
      'clms/protocol/io.ts: imports ics/ics.ts (a protocol file names no IO layer, not even for a type)',
      'clms/protocol/io.ts: imports node:fs (a protocol file does no IO)',
      'clms/protocol/io.ts: imports package eventemitter3 (a protocol file uses only zod)',
      'clms/protocol/waits.ts: Date (line 4) (a protocol file is synchronous and takes time and chance as inputs)',
      'clms/protocol/waits.ts: Math.random (line 4) (a protocol file is synchronous and takes time and chance as inputs)',
      'clms/protocol/waits.ts: Promise (line 1) (a protocol file is synchronous and takes time and chance as inputs)',
      'clms/protocol/waits.ts: async (line 1) (a protocol file is synchronous and takes time and chance as inputs)',
      'clms/protocol/waits.ts: await (line 2) (a protocol file is synchronous and takes time and chance as inputs)',
      'clms/protocol/waits.ts: setTimeout (line 4) (a protocol file is synchronous and takes time and chance as inputs)',
      'ics/calls.ts: imports ics/ics.ts (an ICS part uses only the parts below it)',
      'ics/flow.ts: imports ics/calls.ts (an ICS part uses only the parts below it)',
      'ics/peer.ts: imports ics/links.ts (an ICS part uses only the parts below it)',
      'keyservice/ask.ts: Promise (line 3) (a protocol file is synchronous and takes time and chance as inputs)',
      'keyservice/ask.ts: async (line 3) (a protocol file is synchronous and takes time and chance as inputs)',
      'keyservice/ask.ts: await (line 4) (a protocol file is synchronous and takes time and chance as inputs)',
      'keyservice/ask.ts: imports keyservice/waits.ts (a protocol file uses only protocol code, clms/types.ts and errors/; the driver uses the protocol, not the reverse)',
      'keyservice/ask.ts: reaches keyservice/waits.ts through keyservice/ask.ts (not pure)',
      'keyservice/manager.ts: imports clms/node.ts (key services use CLMS through clms/index.ts only)',
      'keyservice/messages.ts: imports keyservice/manager.ts (a protocol file uses only protocol code, clms/types.ts and errors/; the driver uses the protocol, not the reverse)',
      'keyservice/messages.ts: reaches keyservice/manager.ts through keyservice/messages.ts (not pure)',
      'keyservice/placement.ts: imports clms/protocol/history.ts (key services use CLMS through clms/index.ts only)',
      'keyservice/route.ts: Promise (line 2) (a protocol file is synchronous and takes time and chance as inputs)',
      'keyservice/route.ts: imports ics/status.ts (a protocol file names no IO layer, not even for a type)',
      'keyservice/route.ts: reaches ics/status.ts through keyservice/route.ts (not pure)',
      'keyservice/view.ts: Promise (line 4) (a protocol file is synchronous and takes time and chance as inputs)',
      'keyservice/view.ts: imports clock/index.ts (a protocol file names no IO layer, not even for a type)',
      'keyservice/view.ts: reaches clock/index.ts through keyservice/view.ts (not pure)',
    ]);
  });

  it('packages/core/src keeps them', () => {
    const tree = readTree(SRC);
    expect([...tree.keys()].filter(isPure).length, 'protocol files found').toBeGreaterThan(0);
    for (const f of PURE_KEYSERVICE) expect(tree.has(f), `${f} exists`).toBe(true);
    expect(findViolations(tree)).toEqual([]);
  });
});
