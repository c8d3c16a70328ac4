// TypeDoc plugin: name each module after the package entry point it documents
// (`@clusterinfra/core`, not `core/src`), without a `@module` comment in
// every index.ts. typedoc.json lists the entry points (`npm run
// check:packages` says when a published entry point is missing there); their
// guessed names are `<folder>/src` and `<folder>/src/<subpath>`, and the
// package.json of the workspace in that folder gives the name users import.
import { Converter } from 'typedoc';
import { readJson, root, workspaces } from './repository.mjs';
import { join } from 'node:path';

function packageName(moduleName) {
  const m = /^(.+?)\/src(?:\/(.+?))?(?:\/index)?$/.exec(moduleName);
  const dir = m && workspaces().find((w) => w === m[1] || w.endsWith(`/${m[1]}`));
  if (!dir) return undefined;
  const name = readJson(join(root, dir, 'package.json')).name;
  return m[2] ? `${name}/${m[2]}` : name;
}

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, (context) => {
    for (const mod of context.project.children ?? []) {
      const name = packageName(mod.name);
      if (name) mod.name = name;
      else app.logger.warn(`typedoc-module-names: no package name for module ${mod.name}`);
    }
  });
}
