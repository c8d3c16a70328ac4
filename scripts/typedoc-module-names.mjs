// TypeDoc plugin: name each module after the package entry point it documents
// (`@clusterinfra/core`, not `core/src`), without a `@module` comment in
// every index.ts. typedoc.json lists the entry points; this maps their
// guessed names (the path below packages/) to the names users import.
import { Converter } from 'typedoc';

const NAMES = {
  'core/src': '@clusterinfra/core',
  'core/src/testing': '@clusterinfra/core/testing',
  'transport-tcp/src': '@clusterinfra/transport-tcp',
  'transport-mem/src': '@clusterinfra/transport-mem',
  'icsgen/src': '@clusterinfra/icsgen',
  'icsgen/src/runtime': '@clusterinfra/icsgen/runtime',
  'admin/src': '@clusterinfra/admin',
  'cli/src': '@clusterinfra/cli',
  'registry/src': '@clusterinfra/registry',
  'runlevels/src': '@clusterinfra/runlevels',
};

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, (context) => {
    for (const mod of context.project.children ?? []) {
      const name = NAMES[mod.name];
      if (name) mod.name = name;
      else app.logger.warn(`typedoc-module-names: no package name for module ${mod.name}`);
    }
  });
}
