// Checks that every published package resolves for import, require and
// TypeScript: publint (package.json correctness), are-the-types-wrong
// (types for node16 CJS/ESM and bundler), and a real import() + require()
// of each entry point from the built output. Run after `npm run build`.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const packagesDir = join(root, 'packages');
const bin = (name) => join(root, 'node_modules', '.bin', name);
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });

let failures = 0;
for (const dir of readdirSync(packagesDir)) {
  const pkgDir = join(packagesDir, dir);
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  if (pkg.private) continue;
  console.log(`\n--- ${pkg.name}`);
  try {
    run(bin('publint'), ['--strict', pkgDir]);
    run(bin('attw'), ['--pack', pkgDir, '--profile', 'node16', '--format', 'table-flipped']);
    const require = createRequire(join(root, 'package.json'));
    for (const sub of Object.keys(pkg.exports)) {
      if (sub.endsWith('package.json')) continue;
      const spec = sub === '.' ? pkg.name : `${pkg.name}/${sub.slice(2)}`;
      // The testing entry imports vitest, which refuses to load outside its runner.
      if (spec.endsWith('/testing')) {
        require.resolve(spec);
        continue;
      }
      const cjs = require(spec);
      const esm = await import(spec);
      const names = Object.keys(esm).filter((k) => k !== 'default');
      if (names.length === 0 || names.some((k) => !(k in cjs))) throw new Error(`${spec}: ESM and CJS exports differ`);
      console.log(`${spec}: import and require both give ${names.length} exports`);
    }
  } catch (err) {
    failures++;
    console.error(`${pkg.name}: ${err.message}`);
  }
}
if (failures > 0) {
  console.error(`\n${failures} package(s) failed the checks`);
  process.exit(1);
}
console.log('\nall packages pass');
