import { defineConfig } from 'tsup';

export default defineConfig({
  // cli: the `cluster` bin; local/runner: the node process `cluster sim` forks.
  entry: { index: 'src/index.ts', cli: 'src/cli.ts', 'local/runner': 'src/local/runner.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  tsconfig: '../../tsconfig.build.json',
  banner: ({ format }) => (format === 'esm' ? { js: '#!/usr/bin/env node' } : {}),
});
