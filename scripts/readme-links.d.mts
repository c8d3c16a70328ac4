// Types of readme-links.mjs, for the tests that import it.
export function anchors(markdown: string): Set<string>;
export function links(markdown: string): string[];
export function folders(files: Iterable<string>): Set<string>;
export interface FileView {
  files: Set<string>;
  read(path: string): string;
}
export function checkLinks(
  readme: string,
  pkg: FileView,
  repo: FileView & { web: string; url: string },
): { checked: number; broken: { link: string; why: string }[]; external: string[] };
