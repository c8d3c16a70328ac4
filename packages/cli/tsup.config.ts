import { defineConfig } from 'tsup';

export default defineConfig({
  // cli: the `cluster` bin; local/runner: the node process `cluster sim` forks;
  // process: the process launcher (@clusterinfra/cli/process).
  entry: { index: 'src/index.ts', cli: 'src/cli.ts', 'local/runner': 'src/local/runner.ts', process: 'src/process.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  tsconfig: '../../tsconfig.build.json',
  // The CommonJS files get `import.meta.url` from `__filename` (the launcher
  // finds its runner next to itself); without this it is empty there and
  // require('@clusterinfra/cli').startLocalCluster(...) throws.
  shims: true,
  // The ESM files get the bin's shebang, and a `require` for CommonJS code
  // bundled into them (commander, until it is a declared dependency of this
  // package and so stays external).
  banner: ({ format }) =>
    format === 'esm'
      ? { js: "#!/usr/bin/env node\nimport { createRequire as __clusterinfraCreateRequire } from 'node:module';\nconst require = __clusterinfraCreateRequire(import.meta.url);" }
      : {},
});
