import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: "src/index.ts", testing: "src/testing/index.ts" },
  format: ['esm', 'cjs'],
  // Nothing marked @internal reaches the published types (scripts/check-packages.mjs checks it).
  dts: { compilerOptions: { stripInternal: true } },
  sourcemap: true,
  clean: true,
  target: 'node20',
  // Error classes are recognised across copies by their names (errors/index.ts), so keep them.
  keepNames: true,
  tsconfig: '../../tsconfig.build.json',
});
