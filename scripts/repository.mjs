// Where the repository lives, set in ONE place: `repository.url` of the root
// package.json. Everything else is derived from it here: each published
// package's `repository` (with `directory`), `homepage` and `bugs`, and the
// absolute links the package READMEs use for the docs (they must work on
// npm, where `../../docs/x.md` does not). The URL is a GitHub-style
// placeholder until the maintainers set the real one; after changing it, run
// `npm run sync:packages` (scripts/sync-packages.mjs) and commit the result.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const root = new URL('..', import.meta.url).pathname;
/** The branch the README links point into. */
export const BRANCH = 'main';

export const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'));

/** `git+https://github.com/o/r.git` → `https://github.com/o/r` (what a browser opens). */
export function webUrl(repositoryUrl) {
  const m = /^(?:git\+)?(https:\/\/[^/]+\/[^/]+\/[^/]+?)(?:\.git)?\/?$/.exec(repositoryUrl ?? '');
  if (!m) throw new Error(`root package.json: repository.url must be https://host/owner/name (got ${repositoryUrl})`);
  return m[1];
}

/** The root package.json's repository: its URL as written and the web address. */
export function repository() {
  const url = readJson(join(root, 'package.json')).repository?.url;
  return { url, web: webUrl(url) };
}

/**
 * The workspace folders (the root's `workspaces`, where `dir/*` means every
 * folder below `dir` with a package.json), so that a package added to the
 * list is checked without touching the scripts.
 */
export function workspaces() {
  const out = [];
  for (const entry of readJson(join(root, 'package.json')).workspaces ?? []) {
    if (!entry.endsWith('/*')) {
      out.push(entry);
      continue;
    }
    const dir = entry.slice(0, -2);
    for (const d of readdirSync(join(root, dir)).sort()) {
      if (existsSync(join(root, dir, d, 'package.json'))) out.push(`${dir}/${d}`);
    }
  }
  return out;
}

/** The fields a published package in `dir` (e.g. `packages/core`) must carry. */
export function packageFields(dir, repo = repository()) {
  return {
    repository: { type: 'git', url: repo.url, directory: dir },
    homepage: `${repo.web}/tree/${BRANCH}/${dir}#readme`,
    bugs: { url: `${repo.web}/issues` },
  };
}

/**
 * What an absolute link into the repository points at: `{ path, anchor }`
 * for `<web>/blob|tree/<branch>/<path>[#anchor]`, `{ page }` for the
 * repository's own pages (its front page, issues, pull requests, releases),
 * `{ error }` for anything else under the repository (another branch, a
 * form GitHub has but we do not check), and undefined for links elsewhere.
 */
export function repositoryTarget(link, repo = repository()) {
  if (link !== repo.web && !link.startsWith(`${repo.web}/`) && !link.startsWith(`${repo.web}#`)) return undefined;
  const [rest, anchor] = link.slice(repo.web.length).split('#');
  if (/^\/?$|^\/(issues|pulls|releases)(\/new)?\/?$/.test(rest)) return { page: rest || '/' };
  const m = /^\/(blob|tree)\/([^/]+)\/(.+?)\/?$/.exec(rest);
  if (!m) return { error: 'not a file, folder, issues or releases page of the repository' };
  if (m[2] !== BRANCH) return { error: `points into branch ${m[2]}, not ${BRANCH}` };
  return { path: decodeURIComponent(m[3]), anchor };
}
