// Types of repository.mjs, for the tests that import it.
export const root: string;
export const BRANCH: string;
export function readJson(file: string): Record<string, unknown>;
export function webUrl(repositoryUrl: string | undefined): string;
export function repository(): { url: string; web: string };
export function workspaces(): string[];
export function packageFields(
  dir: string,
  repo?: { url: string; web: string },
): { repository: { type: 'git'; url: string; directory: string }; homepage: string; bugs: { url: string } };
export function repositoryTarget(
  link: string,
  repo?: { web: string },
): { path: string; anchor: string | undefined } | { page: string } | { error: string } | undefined;
