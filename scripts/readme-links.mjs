// The links of a package README and whether each resolves where npm shows
// it: relative links inside the package as packed, absolute links into the
// repository (scripts/repository.mjs) to files and folders it has.
// check-packages.mjs runs this on each packed tarball; docs.test.ts runs it
// on the sources (so `npm test` catches a bad link before any build) and on
// planted bad links.
import { posix } from 'node:path';
import { repositoryTarget } from './repository.mjs';

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
export function anchors(markdown) {
  const text = markdown.replace(/^```[\s\S]*?^```$/gm, '');
  return new Set(
    [...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
      m[1]
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, '')
        .replace(/ /g, '-'),
    ),
  );
}

/** Every link target of a Markdown text outside code: inline, reference-style, autolinks and bare URLs. */
export function links(markdown) {
  const text = markdown.replace(/^```[\s\S]*?^```$/gm, '').replace(/`[^`\n]*`/g, '');
  const out = new Set();
  for (const m of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) out.add(m[1]);
  for (const m of text.matchAll(/^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)) out.add(m[1]);
  for (const m of text.matchAll(/https?:\/\/[^\s<>()[\]`"']+/g)) out.add(m[0].replace(/[.,;:!?]+$/, ''));
  return [...out];
}

/** `a/b/c.md` → `a`, `a/b`: the folders that hold the files. */
export function folders(files) {
  const dirs = new Set();
  for (const f of files) for (let d = posix.dirname(f); d !== '.'; d = posix.dirname(d)) dirs.add(d);
  return dirs;
}

/**
 * Checks every link of `readme`. `pkg`: the package's files (paths relative
 * to its root) and `read(path)`; `repo`: the repository's address (`web`,
 * `url`), its files and `read(path)`. Resolves to the broken links with the
 * reason, and the links to elsewhere (not fetched).
 */
export function checkLinks(readme, pkg, repo) {
  const pkgDirs = folders(pkg.files);
  const repoDirs = folders(repo.files);
  const external = [];
  const why = (link) => {
    const [target, anchor] = link.split('#');
    const heading = (text, where) => (anchor === undefined || anchors(text).has(anchor) ? undefined : `no heading #${anchor} in ${where}`);
    if (target === '') return heading(readme, 'the README');
    if (/^mailto:/.test(link)) return undefined;
    if (/^[a-z][a-z0-9+.-]*:/i.test(link)) {
      const into = repositoryTarget(link, repo);
      if (into === undefined) return void external.push(link);
      if (into.error) return into.error;
      if (into.page) return undefined;
      if (repoDirs.has(into.path)) return undefined;
      if (!repo.files.has(into.path)) return `${into.path} is not in the repository`;
      return into.path.endsWith('.md') ? heading(repo.read(into.path), into.path) : undefined;
    }
    const path = posix.normalize(decodeURIComponent(target)).replace(/\/$/, '');
    if (path.startsWith('../') || path.startsWith('/')) return 'points outside the package: npm does not ship it (use the repository URL)';
    if (pkgDirs.has(path)) return undefined;
    if (!pkg.files.has(path)) return `${path} is not in the package`;
    return path.endsWith('.md') ? heading(pkg.read(path), path) : undefined;
  };
  const all = links(readme);
  const broken = all.map((link) => ({ link, why: why(link) })).filter((b) => b.why !== undefined);
  return { checked: all.length - external.length, broken, external };
}
