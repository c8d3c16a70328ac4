// `npm run sync:packages`: writes what scripts/repository.mjs derives from
// the root package.json's `repository.url` into every published workspace
// package: `repository` (with `directory`), `homepage` and `bugs`. When the
// URL changed since the last run, the README links into the old address are
// moved to the new one. `npm run check:packages` fails until this has run.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageFields, readJson, repository, root, webUrl, workspaces } from './repository.mjs';

const repo = repository();
for (const dir of workspaces()) {
  const file = join(root, dir, 'package.json');
  const pkg = readJson(file);
  if (pkg.private) continue;
  const fields = packageFields(dir, repo);
  const before = pkg.repository?.url;

  // New keys go after `license`, where npm's own tools put them; existing ones keep their place.
  const out = {};
  for (const [key, value] of Object.entries(pkg)) {
    out[key] = key in fields ? fields[key] : value;
    if (key === 'license') for (const [k, v] of Object.entries(fields)) if (!(k in pkg)) out[k] = v;
  }
  for (const [k, v] of Object.entries(fields)) out[k] ??= v;
  const text = `${JSON.stringify(out, null, 2)}\n`;
  if (text !== readFileSync(file, 'utf8')) {
    writeFileSync(file, text);
    console.log(`${dir}/package.json: repository, homepage and bugs set`);
  }

  if (before && before !== repo.url) {
    const readme = join(root, dir, 'README.md');
    const old = webUrl(before);
    const text = readFileSync(readme, 'utf8');
    const moved = text.replaceAll(`${old}/`, `${repo.web}/`).replaceAll(`${old})`, `${repo.web})`);
    if (moved !== text) {
      writeFileSync(readme, moved);
      console.log(`${dir}/README.md: links moved from ${old} to ${repo.web}`);
    }
  }
}
