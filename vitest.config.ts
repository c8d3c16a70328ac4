import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (p: string): string => fileURLToPath(new URL(`./packages/${p}`, import.meta.url));

// Tests import package sources through these aliases, so `npm test` needs no build.
const alias = {
  '@clusterinfra/core/testing': src('core/src/testing/index.ts'),
  '@clusterinfra/core': src('core/src/index.ts'),
  '@clusterinfra/transport-mem': src('transport-mem/src/index.ts'),
  '@clusterinfra/transport-tcp': src('transport-tcp/src/index.ts'),
  '@clusterinfra/icsgen/runtime': src('icsgen/src/runtime.ts'),
  '@clusterinfra/icsgen': src('icsgen/src/index.ts'),
  '@clusterinfra/admin': src('admin/src/index.ts'),
  '@clusterinfra/cli/process': src('cli/src/process.ts'),
  '@clusterinfra/cli': src('cli/src/index.ts'),
  '@clusterinfra/sim': src('sim/src/index.ts'),
  '@clusterinfra/dlm': src('dlm/src/index.ts'),
  '@clusterinfra/transport-multipath': src('transport-multipath/src/index.ts'),
  '@clusterinfra/registry': src('registry/src/index.ts'),
  '@clusterinfra/runlevels': src('runlevels/src/index.ts'),
  '@clusterinfra/services': src('services/src/index.ts'),
  '@clusterinfra/otel': src('otel/src/index.ts'),
};

const project = (name: string, extra: Record<string, unknown> = {}) => ({
  resolve: { alias },
  test: {
    name,
    include: [`packages/${name}/test/**/*.test.ts`],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    ...extra,
  },
});

export default defineConfig({
  test: {
    projects: [project('core'), project('transport-mem'), project('transport-tcp'), project('icsgen'), project('admin'), project('cli'), project('sim', { testTimeout: 240_000, hookTimeout: 60_000 }), project('dlm'), project('transport-multipath'), project('registry'), project('runlevels'), project('services'), project('otel')],
  },
});
