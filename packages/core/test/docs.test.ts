/**
 * The user-facing docs cannot silently fall behind the code:
 * - every ```ts block of the README and the guides written as whole
 *   programs compiles against the real sources (the repo's tsconfig, its
 *   path aliases, strict);
 * - docs/configuration.md has a row for every option of the zod schemas
 *   (ClusterNode, ICS, handler pools, tcp, memory), no row for an option that
 *   does not exist, and the defaults the schemas apply;
 * - every error code named anywhere in the docs exists, and docs/errors.md
 *   names the class that raises each code (errors.test.ts checks that the
 *   table has exactly one row per code);
 * - relative links between the docs point at files and headings that exist;
 * - the Kubernetes manifest has the pieces kubernetes.md promises;
 * - the mutual-TLS setup of operations.md works as written: its openssl
 *   commands make certificates that let nodes talk over TLS, and a node with
 *   a certificate from another CA is refused.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import * as core from '@clusterinfra/core';
import { ClusterInfraError, createIcs, DNS_DISCOVERY_DEFAULTS, ERROR_CODES, ICS_DEFAULTS, type Ics, presets } from '@clusterinfra/core';
import { tcp } from '@clusterinfra/transport-tcp';
import { ICSGEN_ERROR_CODES } from '@clusterinfra/icsgen';
import { DLM_ERROR_CODES } from '@clusterinfra/dlm';
import { REGISTRY_ERROR_CODES } from '@clusterinfra/registry';
import { SERVICES_ERROR_CODES } from '@clusterinfra/services';
import { clusterNodeOptionsSchema } from '../src/clms/options.js';
import { icsOptionsSchema, poolSchema } from '../src/ics/options.js';
import { tcpOptionsSchema } from '../../transport-tcp/src/options.js';
import { networkSchema } from '../../transport-mem/src/options.js';
import { adminOptionsSchema } from '../../admin/src/options.js';
import { transportSchema as memoryTransportSchema } from '../../transport-mem/src/transport.js';
import { anchors, checkLinks } from '../../../scripts/readme-links.mjs';
import { packageFields, readJson, repository, workspaces } from '../../../scripts/repository.mjs';
import { multipathOptionsSchema } from '../../transport-multipath/src/options.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const read = (p: string): string => readFileSync(join(root, p), 'utf8');

/** The pages whose ```ts blocks are whole programs (other guides show fragments). */
const COMPILED_DOCS = ['README.md', 'docs/architecture.md', 'docs/configuration.md', 'docs/operations.md', 'docs/kubernetes.md', 'packages/core/README.md'];

// ------------------------------------------------------------------ markdown helpers

function codeBlocks(markdown: string, lang: string): string[] {
  const out: string[] = [];
  const re = new RegExp('^```' + lang + '\\n([\\s\\S]*?)^```$', 'gm');
  for (const m of markdown.matchAll(re)) out.push(m[1]!);
  return out;
}

/** The text under each `## ` heading (sub-headings stay inside), by heading text. */
function sections(markdown: string): Map<string, string> {
  const out = new Map<string, string>();
  const parts = markdown.split(/^## /m).slice(1);
  for (const p of parts) {
    const nl = p.indexOf('\n');
    out.set(p.slice(0, nl).trim(), p.slice(nl + 1));
  }
  return out;
}

/** Table rows whose first cell is a backticked option path: path → the other cells. */
function optionRows(text: string): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^\|\s*`([A-Za-z][\w.[\]]*)`\s*\|(.*)\|\s*$/.exec(line);
    if (!m) continue;
    const cells = m[2]!.split(/(?<!\\)\|/).map((c) => c.trim());
    expect(rows.has(m[1]!), `option ${m[1]} has two rows`).toBe(false);
    rows.set(m[1]!, cells);
  }
  return rows;
}

// ------------------------------------------------------------------ zod helpers

interface ZodLike {
  _zod: { def: { type: string; innerType?: ZodLike; element?: ZodLike; shape?: Record<string, ZodLike> } };
}

/** Strip optional / default / nullable wrappers. */
function unwrap(s: ZodLike): ZodLike {
  let cur = s;
  while (cur._zod.def.innerType && ['optional', 'default', 'nullable', 'prefault', 'readonly'].includes(cur._zod.def.type)) cur = cur._zod.def.innerType;
  return cur;
}

/**
 * Option paths of an object schema: its keys, and one level below them the
 * keys of nested objects (`window.bytes`) and of array elements
 * (`channels[].name`). Deeper levels are documented in prose.
 */
function optionPaths(schema: ZodLike, prefix = '', depth = 0): string[] {
  const shape = unwrap(schema)._zod.def.shape;
  if (!shape) throw new Error(`not an object schema: ${prefix}`);
  const out: string[] = [];
  for (const [key, value] of Object.entries(shape)) {
    const path = prefix + key;
    out.push(path);
    if (depth > 0) continue;
    const inner = unwrap(value);
    if (inner._zod.def.type === 'object') out.push(...optionPaths(inner, `${path}.`, depth + 1));
    const element = inner._zod.def.type === 'array' ? inner._zod.def.element : undefined;
    if (element && unwrap(element)._zod.def.type === 'object') out.push(...optionPaths(element, `${path}[].`, depth + 1));
  }
  return out;
}

function valueAt(o: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), o);
}

/** The ways the docs may write a default: `1048576` or `1 MiB`, `'lan'` or `lan`, `[]`. */
function spellings(v: unknown): string[] {
  if (typeof v === 'number') {
    const out = [String(v)];
    if (v >= 1024 * 1024 && v % (1024 * 1024) === 0) out.push(`${v / (1024 * 1024)} MiB`);
    else if (v >= 1024 && v % 1024 === 0) out.push(`${v / 1024} KiB`);
    return out;
  }
  if (typeof v === 'string' || typeof v === 'boolean') return [String(v)];
  if (Array.isArray(v) && v.length === 0) return ['[]'];
  if (v && typeof v === 'object' && Object.keys(v).length === 0) return ['{}'];
  return [];
}

const normalize = (cell: string): string => cell.replace(/[`']/g, '').trim();

/**
 * Every option path has a row and every row is an option; where the schema
 * applies a simple default (a number, string, boolean, `[]`, `{}`), the
 * default cell says it.
 */
function checkOptionTable(name: string, rows: Map<string, string[]>, paths: string[], resolved: unknown, given: string[] = []): void {
  expect([...rows.keys()].sort(), `${name}: rows of configuration.md vs options of the schema`).toEqual([...new Set(paths)].sort());
  for (const path of paths) {
    if (given.includes(path)) continue; // required: what the test passed in, not a default
    const ways = spellings(valueAt(resolved, path));
    if (ways.length === 0) continue;
    const cell = normalize(rows.get(path)![0]!);
    expect(ways, `${name}: default of ${path} is written as "${cell}"`).toContain(cell);
  }
}

const fakeTransport = { create: () => undefined };

// ------------------------------------------------------------------ tests

describe('docs: code blocks compile', () => {
  it('every ```ts block of the README and the guides type-checks against the sources', () => {
    const snippets = new Map<string, string>();
    for (const doc of COMPILED_DOCS) {
      if (!existsSync(join(root, doc))) continue;
      codeBlocks(read(doc), 'ts').forEach((code, i) => {
        // In the repo root, so that the tsconfig's paths and node_modules resolve as for any source.
        snippets.set(join(root, `__docs_${doc.replace(/[/.]/g, '_')}_${i}.ts`), `${code}\nexport {};\n`);
      });
    }
    expect([...snippets.keys()].some((f) => f.includes('__docs_README_md_'))).toBe(true);

    const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} });
    expect(config).toBeDefined();
    const options = { ...config!.options, noEmit: true };
    const host = ts.createCompilerHost(options, true);
    const getSourceFile = host.getSourceFile.bind(host);
    host.getSourceFile = (file, lang, ...rest) => {
      const text = snippets.get(resolve(file));
      return text !== undefined ? ts.createSourceFile(file, text, lang, true) : getSourceFile(file, lang, ...rest);
    };
    const fileExists = host.fileExists.bind(host);
    host.fileExists = (file) => snippets.has(resolve(file)) || fileExists(file);
    const readFile = host.readFile.bind(host);
    host.readFile = (file) => snippets.get(resolve(file)) ?? readFile(file);

    const program = ts.createProgram({ rootNames: [...snippets.keys()], options, host });
    const problems: string[] = [];
    for (const file of snippets.keys()) {
      const sf = program.getSourceFile(file)!;
      for (const d of [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)]) {
        const at = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
        problems.push(`${relative(root, file)}:${at}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
      }
    }
    expect(problems).toEqual([]);
  }, 120_000);
});

describe('docs/configuration.md', () => {
  const page = sections(read('docs/configuration.md'));
  const section = (title: string): string => {
    const s = page.get(title);
    expect(s, `configuration.md has a "## ${title}" section`).toBeDefined();
    return s!;
  };

  it('ClusterNode: every option, its default, and the timing keys in the presets table', () => {
    const text = section('ClusterNode');
    const resolved = clusterNodeOptionsSchema.parse({ nodeNum: 1, clusterName: 'c', transport: fakeTransport, candidates: [1] });
    // The timing keys are rows of the presets table, by their bare name.
    const paths = optionPaths(clusterNodeOptionsSchema as unknown as ZodLike).map((p) => p.replace(/^timing\./, ''));
    checkOptionTable('ClusterNode', optionRows(text), paths, resolved, ['nodeNum', 'clusterName', 'transport', 'candidates']);
  });

  it('the presets table has every preset as a column with its numbers', () => {
    const text = section('ClusterNode');
    const header = text.split('\n').find((l) => /^\|\s*timing\s*\|/.test(l));
    expect(header).toBeDefined();
    const columns = header!.split('|').map((c) => c.trim()).filter(Boolean);
    const rows = optionRows(text);
    for (const [name, timing] of Object.entries(presets)) {
      const col = columns.indexOf(name);
      expect(col, `preset ${name} has a column`).toBeGreaterThan(0);
      for (const [key, value] of Object.entries(timing)) expect(rows.get(key)?.[col - 1], `${name}.${key}`).toBe(String(value));
    }
  });

  it('every quorum policy of the schema is in the quorum table', () => {
    const text = section('ClusterNode');
    const quorum = unwrap(clusterNodeOptionsSchema.shape.quorum as unknown as ZodLike)._zod.def as unknown as { options: ZodLike[] };
    expect(quorum.options.length).toBeGreaterThan(1);
    for (const option of quorum.options) {
      const def = unwrap(option)._zod.def as unknown as { type: string; values?: unknown[]; shape?: Record<string, unknown> };
      const marker = def.type === 'literal' ? `| \`'${String(def.values![0])}'\`` : `| \`{ ${Object.keys(def.shape!)[0]}:`;
      expect(text, `quorum policy ${marker}`).toContain(marker);
    }
  });

  it('ICS: every option (with channels and handler pools) and its default', () => {
    const resolved = {
      ...icsOptionsSchema.parse({ transport: fakeTransport, clusterName: 'c', nodeNum: 1 }),
      pool: poolSchema.parse({}),
    };
    const paths = [...optionPaths(icsOptionsSchema as unknown as ZodLike), ...optionPaths(poolSchema as unknown as ZodLike, 'pool.', 1)];
    checkOptionTable('ICS', optionRows(section('ICS')), paths, resolved, ['transport', 'clusterName', 'nodeNum']);
    // The defaults are the ones in ICS_DEFAULTS (the schema's source), spot-checked.
    expect(optionRows(section('ICS')).get('maxMessageSize')?.[0]).toBe(spellings(ICS_DEFAULTS.maxMessageSize)[1]);
  });

  it('TCP transport: every option and its default', () => {
    checkOptionTable('tcp', optionRows(section('TCP transport')), optionPaths(tcpOptionsSchema as unknown as ZodLike), tcpOptionsSchema.parse({}));
  });

  it('memory transport: every option of the network and of memory()', () => {
    const paths = [...optionPaths(networkSchema as unknown as ZodLike), ...optionPaths(memoryTransportSchema as unknown as ZodLike)];
    checkOptionTable('memory', optionRows(section('Memory transport')), paths, {});
  });

  it('multipath transport: every option and its default', () => {
    checkOptionTable('multipath', optionRows(section('Multipath transport')), optionPaths(multipathOptionsSchema as unknown as ZodLike), multipathOptionsSchema.parse({}));
  });

  it('DNS discovery: a row for every option with a default, and that default', () => {
    // The schema is private to discovery.ts; its defaults are exported, and every option must have a row.
    const rows = optionRows(section('DNS discovery'));
    for (const [key, value] of Object.entries(DNS_DISCOVERY_DEFAULTS)) expect(spellings(value), `default of ${key}`).toContain(normalize(rows.get(key)?.[0] ?? ''));
    for (const key of ['name', 'port', 'servers', 'clock', 'logger']) expect(rows.has(key), key).toBe(true);
  });

  it('admin endpoint: every option and its default', () => {
    const resolved = adminOptionsSchema.parse({ token: 'x'.repeat(16) });
    checkOptionTable('admin', optionRows(section('Admin endpoint')), optionPaths(adminOptionsSchema as unknown as ZodLike), resolved, ['token']);
  });

  it('the checker itself notices a missing row and a wrong default', () => {
    const rows = optionRows('| `a` | 1 MiB | x |\n| `b` | 3 | y |');
    expect(() => checkOptionTable('t', rows, ['a', 'b', 'c'], { a: 1024 * 1024, b: 3 })).toThrow();
    expect(() => checkOptionTable('t', rows, ['a', 'b'], { a: 1024 * 1024, b: 4 })).toThrow();
    expect(() => checkOptionTable('t', rows, ['a', 'b'], { a: 1024 * 1024, b: 3 })).not.toThrow();
  });
});

describe('docs: error codes', () => {
  const known = new Set<string>([...Object.keys(ERROR_CODES), ...ICSGEN_ERROR_CODES, ...Object.keys(DLM_ERROR_CODES), ...Object.keys(REGISTRY_ERROR_CODES), ...Object.keys(SERVICES_ERROR_CODES)]);

  const markdownFiles = (): string[] => {
    const docs = readdirSync(join(root, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`);
    const packages = readdirSync(join(root, 'packages'))
      .map((p) => `packages/${p}/README.md`)
      .filter((p) => existsSync(join(root, p)));
    return ['README.md', ...docs, ...packages];
  };

  it('every code named anywhere in the docs exists', () => {
    const unknown: string[] = [];
    for (const file of markdownFiles()) {
      for (const m of read(file).matchAll(/\b[A-Z][A-Z0-9]*_ERR_[A-Z0-9_]*[A-Z0-9]\b/g)) if (!known.has(m[0])) unknown.push(`${file}: ${m[0]}`);
    }
    expect(unknown).toEqual([]);
  });

  it('docs/errors.md names the class that raises each code', async () => {
    const classes = Object.entries(core).filter(
      (e): e is [string, typeof ClusterInfraError] => typeof e[1] === 'function' && e[1].prototype instanceof ClusterInfraError,
    );
    const byCode = new Map<string, Set<string>>();
    for (const [name, C] of classes) {
      const code = new (C as unknown as new (...a: unknown[]) => ClusterInfraError)('x', 'x', 'x').code;
      byCode.set(code, (byCode.get(code) ?? new Set()).add(name));
    }
    // The class cell: `Name`, or `Name` (`@clusterinfra/pkg`) for a class another package exports.
    const rows = [...read('docs/errors.md').matchAll(/^\|\s*`([A-Z_]+)`\s*\|\s*`(\w+)`(?:\s*\(`(@clusterinfra\/[\w-]+)`\))?\s*\|/gm)];
    expect(rows.length).toBe(Object.keys(ERROR_CODES).length);
    for (const [, code, cls, pkg] of rows) {
      if (pkg) {
        const exports = (await import(/* @vite-ignore */ pkg)) as Record<string, unknown>;
        expect(exports[cls!], `${code}: ${cls} is exported from ${pkg}`).toBeTypeOf('function');
      } else {
        expect(byCode.get(code!) ?? [], `${code} is raised by ${cls} from @clusterinfra/core`).toContain(cls);
      }
    }
  });
});

describe('docs: links', () => {
  it('relative links of the README and the guides point at files and headings that exist', () => {
    const broken: string[] = [];
    for (const doc of COMPILED_DOCS) {
      if (!existsSync(join(root, doc))) continue;
      const text = read(doc).replace(/^```[\s\S]*?^```$/gm, '');
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue;
        const [file, anchor] = target.split('#') as [string, string | undefined];
        const path = file === '' ? join(root, doc) : resolve(dirname(join(root, doc)), file);
        if (!existsSync(path)) {
          broken.push(`${doc}: ${target} (no such file)`);
          continue;
        }
        if (anchor && path.endsWith('.md') && !anchors(readFileSync(path, 'utf8')).has(anchor)) broken.push(`${doc}: ${target} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
  });
});

describe('docs/k8s/statefulset.yaml', () => {
  const yaml = (): string => read('docs/k8s/statefulset.yaml');
  const manifests = (): string[] => yaml().split(/^---\s*$/m).filter((d) => d.trim() && !/^(\s*#.*\n?)*\s*$/.test(d));
  const kindOf = (d: string): string | undefined => /^kind:\s*(\w+)/m.exec(d)?.[1];

  it('is plain YAML a light check can read: spaces only, every document with apiVersion, kind and a name', () => {
    expect(yaml()).not.toMatch(/\t/);
    const documents = manifests();
    expect(documents.length).toBeGreaterThanOrEqual(2);
    for (const d of documents) {
      expect(d).toMatch(/^apiVersion:\s*\S+/m);
      expect(d).toMatch(/^kind:\s*\w+/m);
      expect(d).toMatch(/^metadata:\n\s+name:\s*\S+/m);
    }
  });

  it('has a headless Service and a StatefulSet governed by it, which derives the node number from the pod ordinal', () => {
    const documents = manifests();
    const service = documents.find((d) => kindOf(d) === 'Service' && /clusterIP:\s*None/.test(d));
    const set = documents.find((d) => kindOf(d) === 'StatefulSet');
    expect(service, 'a headless Service').toBeDefined();
    expect(set, 'a StatefulSet').toBeDefined();
    const serviceName = /^metadata:\n\s+name:\s*(\S+)/m.exec(service!)![1];
    expect(set).toMatch(new RegExp(`serviceName:\\s*${serviceName}\\b`));
    // The ordinal: the pod-index label (Kubernetes 1.28+) or the hostname's suffix.
    expect(set).toMatch(/apps\.kubernetes\.io\/pod-index|HOSTNAME/);
    expect(set).toMatch(/secretKeyRef:/);
    expect(set).toMatch(/readinessProbe:/);
    // The same numbers in the manifest and the page: kubernetes.md's program reads these variables.
    const page = read('docs/kubernetes.md');
    for (const env of ['POD_IP', 'CLUSTER_SECRET', 'CLUSTER_SERVICE']) {
      expect(set, `the StatefulSet sets ${env}`).toMatch(new RegExp(`name:\\s*${env}\\b`));
      expect(page, `kubernetes.md reads ${env}`).toContain(`process.env.${env}`);
    }
  });
});

describe('docs/operations.md: the mutual-TLS worked setup', () => {
  it('its openssl commands make certificates two nodes talk with, and another CA is refused', async () => {
    const script = codeBlocks(read('docs/operations.md'), 'sh').find((b) => b.includes('openssl req -x509'));
    expect(script, 'operations.md has the CA and node certificate commands').toBeDefined();
    const dir = mkdtempSync(join(tmpdir(), 'docs-tls-'));
    const nodes: Ics[] = [];
    try {
      // The page's addresses are 10.0.0.n; here they are loopback addresses 127.0.0.n.
      execFileSync('bash', ['-euo', 'pipefail', '-c', script!.replaceAll('10.0.0.', '127.0.0.')], { cwd: dir, stdio: 'pipe', timeout: 60_000 });
      const file = (name: string): Buffer => readFileSync(join(dir, name));
      // Another CA and a node certificate from it, for the rogue.
      const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
      const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe', timeout: 60_000 });
      openssl('req', '-x509', ...ec, '-keyout', 'rogue-ca.key', '-out', 'rogue-ca.crt', '-days', '2', '-subj', '/CN=rogue');
      openssl('req', ...ec, '-keyout', 'rogue.key', '-out', 'rogue.csr', '-subj', '/CN=rogue');
      openssl('x509', '-req', '-in', 'rogue.csr', '-CA', 'rogue-ca.crt', '-CAkey', 'rogue-ca.key', '-CAcreateserial', '-out', 'rogue.crt', '-days', '2', '-extfile', 'node3.ext');

      const addresses = new Map<number, string>();
      const start = async (n: number, key: string, cert: string): Promise<Ics> => {
        const ics = createIcs({
          transport: tcp({ host: `127.0.0.${n}`, port: 0, tls: { key: file(key), cert: file(cert), ca: file('ca.crt'), minVersion: 'TLSv1.3' } }),
          clusterName: 'shop',
          nodeNum: n,
          peers: (x) => addresses.get(x),
          reconnect: { maxAttempts: 0 },
        });
        nodes.push(ics);
        await ics.start();
        addresses.set(n, ics.address!);
        ics.registerService({ subservice: 1, name: 'greeter', handlers: { greet: (_a, ctx) => `node ${n} greets node ${ctx.caller.nodeNum}` } });
        return ics;
      };
      const one = await start(1, 'node1.key', 'node1.crt');
      await start(2, 'node2.key', 'node2.crt');
      const rogue = await start(3, 'rogue.key', 'rogue.crt');

      const greeter = { channel: 'default', subservice: 1 };
      expect(await one.call(2, greeter, 'greet', null, { timeoutMs: 20_000 })).toBe('node 2 greets node 1');
      // As the page says: a client certificate that does not verify is refused with `auth`, an untrusted server certificate is a TLS error.
      const refused = async (from: Ics, to: number): Promise<string | undefined> => {
        const err = await from.call(to, greeter, 'greet', null, { timeoutMs: 20_000 }).then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(ClusterInfraError);
        return ((err as ClusterInfraError).cause as ClusterInfraError | undefined)?.code;
      };
      expect(await refused(rogue, 1)).toBe('TRANSPORT_ERR_HANDSHAKE_REJECTED');
      expect(await refused(one, 3)).toBe('TRANSPORT_ERR_TLS');
    } finally {
      await Promise.all(nodes.map((n) => n.close()));
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('package READMEs: they stand alone on npm (check:packages runs the same check on the packed tarballs)', () => {
  const repoFiles = new Set(execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean));
  it('every published package has repository, homepage and bugs from the root, and a README whose links resolve', () => {
    const broken: string[] = [];
    const published = workspaces().filter((dir) => readJson(join(root, dir, 'package.json')).private !== true);
    expect(published).toContain('packages/core');
    for (const dir of published) {
      const pkg = readJson(join(root, dir, 'package.json')) as { files: string[]; repository: unknown; homepage: unknown; bugs: unknown };
      expect({ repository: pkg.repository, homepage: pkg.homepage, bugs: pkg.bugs }, `${dir}/package.json (npm run sync:packages)`).toEqual(packageFields(dir));
      expect(pkg.files, `${dir}: files lists README.md`).toContain('README.md');
      // What npm packs, from the sources: the files under the package's `files` entries (the build output is not linked).
      const files = new Set(
        [...repoFiles]
          .filter((f) => f.startsWith(`${dir}/`))
          .map((f) => f.slice(dir.length + 1))
          .filter((f) => pkg.files.some((e) => f === e || f.startsWith(`${e}/`))),
      );
      const r = checkLinks(read(`${dir}/README.md`), { files, read: (p) => read(`${dir}/${p}`) }, { ...repository(), files: repoFiles, read });
      broken.push(...r.broken.map((b) => `${dir}/README.md: ${b.link}: ${b.why}`));
    }
    expect(broken).toEqual([]);
  });

  it('the link check reports every kind of broken link and passes the good ones', () => {
    const readme = [
      '# Pkg',
      '## Usage',
      '[bad 1](../../docs/cli.md) [bad 2](https://github.com/o/r/blob/main/docs/nope.md)',
      '[bad 3](https://github.com/o/r/blob/main/docs/cli.md#no-such-heading) [bad 4](src/index.ts) [bad 5](#nothing)',
      '[bad 6](https://github.com/o/r/blob/dev/docs/cli.md) and https://github.com/o/r/wiki.',
      '[good](https://github.com/o/r/blob/main/docs/cli.md#options) [good](dist/index.js) [good](#usage)',
      '<https://github.com/o/r/issues> [good](https://github.com/o/r/tree/main/examples/kv) https://nodejs.org/api/net.html.',
      '`[not a link](../../x.md)`',
      '',
      '[ref]: https://github.com/o/r/blob/main/missing.md',
    ].join('\n');
    const r = checkLinks(
      readme,
      { files: new Set(['README.md', 'dist/index.js']), read: () => readme },
      { url: 'git+https://github.com/o/r.git', web: 'https://github.com/o/r', files: new Set(['docs/cli.md', 'examples/kv/main.ts']), read: () => '# CLI\n\n## Options\n' },
    );
    expect(r.broken.map((b) => b.link)).toEqual([
      '../../docs/cli.md',
      'https://github.com/o/r/blob/main/docs/nope.md',
      'https://github.com/o/r/blob/main/docs/cli.md#no-such-heading',
      'src/index.ts',
      '#nothing',
      'https://github.com/o/r/blob/dev/docs/cli.md',
      'https://github.com/o/r/blob/main/missing.md',
      'https://github.com/o/r/wiki',
    ]);
    expect(r.external).toEqual(['https://nodejs.org/api/net.html']);
    expect(r.checked).toBe(13);
  });
});
