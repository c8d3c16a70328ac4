// Checks every published package of the workspaces (the root package.json's
// `workspaces`, skipping `private` ones) as npm would ship it. Run after
// `npm run build`:
// - package.json: publint, and `repository` (with `directory`), `homepage`
//   and `bugs` as scripts/repository.mjs derives them from the root's
//   `repository.url` (`npm run sync:packages` writes them);
// - types: are-the-types-wrong (node16 CJS/ESM and bundler);
// - the packed tarball: it has a README.md, and every link in that README
//   resolves: a relative link to a file inside the tarball, an absolute link
//   into the repository to a file or folder the repository has (and a
//   heading, for `#anchor`s into Markdown); links elsewhere are listed, not
//   fetched. No CommonJS file in it uses `import.meta` (tsup leaves it empty);
// - every entry point: import() and require() give the same exports, and
//   every exported function, called once from each build
//   (scripts/call-exports.mjs), behaves the same in both; typedoc.json lists
//   its source (`.` → src/index.ts, `./x` → src/x.ts or src/x/index.ts), so
//   the API reference covers it;
// - declarations (packages in STRIP_INTERNAL, built with stripInternal): no
//   emitted .d.ts/.d.cts mentions `@internal`, and they compile on their own
//   (so nothing stripped was still needed by a public type).
//
//   node scripts/check-packages.mjs [package names]   (default: every one)
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkLinks } from './readme-links.mjs';
import { packageFields, readJson, repository, root, workspaces } from './repository.mjs';

const bin = (name) => join(root, 'node_modules', '.bin', name);
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });

/** The repository as README links see it: its files (tracked, or new and not ignored). */
const repoView = {
  ...repository(),
  files: new Set(execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean)),
  read: (path) => readFileSync(join(root, path), 'utf8'),
};

// ------------------------------------------------------------------ package.json fields

function checkFields(dir, pkg) {
  const problems = [];
  for (const [key, want] of Object.entries(packageFields(dir, repoView))) {
    if (JSON.stringify(pkg[key]) !== JSON.stringify(want)) problems.push(`${key} is ${JSON.stringify(pkg[key])}, want ${JSON.stringify(want)}`);
  }
  if (problems.length > 0) throw new Error(`package.json: ${problems.join('; ')} (run npm run sync:packages)`);
}

// ------------------------------------------------------------------ the tarball

/** Packs the package as npm publish would; the files it holds (relative paths) and where they were unpacked. */
function pack(pkgDir) {
  const out = mkdtempSync(join(tmpdir(), 'check-packages-'));
  const [info] = JSON.parse(execFileSync('npm', ['pack', pkgDir, '--json', '--pack-destination', out], { cwd: root, encoding: 'utf8' }));
  execFileSync('tar', ['-xzf', join(out, info.filename), '-C', out]);
  return {
    tarball: join(out, info.filename),
    dir: join(out, 'package'),
    files: new Set(info.files.map((f) => f.path)),
    cleanup: () => rmSync(out, { recursive: true, force: true }),
  };
}

function checkTarball(pkg, packed) {
  if (!packed.files.has('README.md')) throw new Error('the tarball has no README.md (add it, and to `files`)');
  const read = (path) => readFileSync(join(packed.dir, path), 'utf8');
  const { checked, broken, external } = checkLinks(read('README.md'), { files: packed.files, read }, repoView);
  if (broken.length > 0) throw new Error(`README.md has links that do not resolve:\n${broken.map((b) => `  ${b.link}: ${b.why}`).join('\n')}`);
  console.log(`README.md: ${checked} links resolve${external.length ? `; not fetched (outside the repository): ${external.join(', ')}` : ''}`);

  const emptyMeta = [...packed.files].filter((f) => f.endsWith('.cjs') || (f.endsWith('.js') && pkg.type !== 'module'));
  const offenders = emptyMeta.filter((f) => /\bimport\.meta\b|\bimport_meta\s*=\s*\{\s*\}/.test(readFileSync(join(packed.dir, f), 'utf8')));
  if (offenders.length > 0) throw new Error(`import.meta is empty in CommonJS, used in ${offenders.join(', ')} (tsup: shims: true, or avoid it)`);
}

// ------------------------------------------------------------------ declarations

/** Packages whose published types must hold nothing marked @internal (their tsup dts sets stripInternal). */
const STRIP_INTERNAL = new Set(['@clusterinfra/core']);

function checkNoInternal(pkgDir, packed) {
  const decls = [...packed.files].filter((f) => /\.d\.c?ts$/.test(f));
  if (decls.length === 0) throw new Error('the tarball has no .d.ts files');
  const leaks = decls.filter((f) => /@internal\b/.test(readFileSync(join(packed.dir, f), 'utf8')));
  if (leaks.length > 0) throw new Error(`@internal members in the published types: ${leaks.join(', ')} (tsup: dts.compilerOptions.stripInternal)`);
  // The same files in the workspace's dist/ (where their dependencies resolve), compiled alone: a public type that needs something stripped fails here.
  const args = ['--noEmit', '--strict', '--skipLibCheck', 'false', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node'];
  run(bin('tsc'), [...args, ...decls.map((f) => join(pkgDir, f))]);
  console.log(`types: ${decls.length} declaration files, nothing @internal, they compile on their own`);
}

// ------------------------------------------------------------------ entry points

/** Runs scripts/call-exports.mjs for `spec` in an empty folder and returns its report. */
function callExports(spec) {
  const cwd = mkdtempSync(join(tmpdir(), 'call-exports-'));
  try {
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'call-exports.mjs'), spec], { cwd, encoding: 'utf8', timeout: 180_000, env: { ...process.env, NO_COLOR: '1' } });
    const line = r.stdout?.split('\n').findLast((l) => l.startsWith('@@call-exports@@'));
    if (!line) throw new Error(`${spec}: calling the exports ended without a report (${r.error?.message ?? `exit ${r.status}`})\n${r.stderr}`);
    return JSON.parse(line.slice('@@call-exports@@'.length));
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

const typedocEntries = new Set(readJson(join(root, 'typedoc.json')).entryPoints);

async function checkEntries(dir, pkg) {
  const require = createRequire(join(root, 'package.json'));
  for (const sub of Object.keys(pkg.exports)) {
    if (sub.endsWith('package.json')) continue;
    const spec = sub === '.' ? pkg.name : `${pkg.name}/${sub.slice(2)}`;
    const sources = sub === '.' ? [`${dir}/src/index.ts`] : [`${dir}/src/${sub.slice(2)}.ts`, `${dir}/src/${sub.slice(2)}/index.ts`];
    if (!sources.some((f) => typedocEntries.has(f))) throw new Error(`${spec}: typedoc.json's entryPoints lack ${sources.join(' or ')} (the API reference would miss it)`);
    // The testing entry imports vitest, which refuses to load outside its runner.
    if (spec.endsWith('/testing')) {
      require.resolve(spec);
      console.log(`${spec}: resolves (not loaded: it needs vitest's runner)`);
      continue;
    }
    const cjs = require(spec);
    const esm = await import(spec);
    const names = Object.keys(esm).filter((k) => k !== 'default');
    if (names.length === 0 || names.some((k) => !(k in cjs))) throw new Error(`${spec}: ESM and CJS exports differ`);
    const r = callExports(spec);
    const problems = [
      ...r.differ.map((d) => `  ${d.name}(): CommonJS ${d.cjs}, ESM ${d.esm}`),
      ...r.failed.map((f) => `  ${f.name}(${JSON.stringify(f.args ?? [])}) from ${f.build}: ${f.outcome}`),
    ];
    if (problems.length > 0) throw new Error(`${spec}: calling the exports:\n${problems.join('\n')}`);
    console.log(`${spec}: import and require both give ${names.length} exports; ${r.called} functions called from each build behave alike`);
  }
}

// ------------------------------------------------------------------ main

const only = process.argv.slice(2);
let failures = 0;
for (const dir of workspaces()) {
  const pkgDir = join(root, dir);
  const pkg = readJson(join(pkgDir, 'package.json'));
  if (pkg.private || (only.length > 0 && !only.includes(pkg.name))) continue;
  console.log(`\n--- ${pkg.name} (${dir})`);
  let packed;
  try {
    checkFields(dir, pkg);
    run(bin('publint'), ['--strict', pkgDir]);
    packed = pack(pkgDir);
    run(bin('attw'), [packed.tarball, '--profile', 'node16', '--format', 'table-flipped']);
    checkTarball(pkg, packed);
    if (STRIP_INTERNAL.has(pkg.name)) checkNoInternal(pkgDir, packed);
    await checkEntries(dir, pkg);
  } catch (err) {
    failures++;
    console.error(`${pkg.name}: ${err.message}`);
  } finally {
    packed?.cleanup();
  }
}
if (failures > 0) {
  console.error(`\n${failures} package(s) failed the checks`);
  process.exit(1);
}
console.log('\nall packages pass');
