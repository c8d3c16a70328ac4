/**
 * Summarise a V8 .cpuprofile: self time per function and per file.
 *
 *   npx tsx bench/profile.ts bench/profiles/*.cpuprofile [--top=15]
 */
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { basename } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface SelfTime {
  name: string;
  where: string;
  us: number;
  pct: number;
}

const META = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

function shortUrl(url: string): string {
  if (url === '') return '';
  const u = url.replace(/^file:\/\//, '');
  const i = u.indexOf('node_modules/');
  if (i >= 0) return u.slice(i + 'node_modules/'.length);
  const j = u.indexOf('/packages/');
  if (j >= 0) return u.slice(j + 1);
  const k = u.indexOf('/bench/');
  if (k >= 0) return u.slice(k + 1);
  return u;
}

const maps = new Map<string, SourceMap | undefined>();

/** `file:line` of a frame, through the bundle's source map when there is one (bench/.build). */
function locate(cf: CallFrame): string {
  if (cf.url === '') return '(native)';
  let map = maps.get(cf.url);
  if (!maps.has(cf.url)) {
    map = undefined;
    if (cf.url.startsWith('file://') && cf.url.includes('/.build/')) {
      const file = `${fileURLToPath(cf.url)}.map`;
      if (existsSync(file)) map = new SourceMap(JSON.parse(readFileSync(file, 'utf8')));
    }
    maps.set(cf.url, map);
  }
  if (map) {
    const e = map.findEntry(cf.lineNumber, cf.columnNumber) as { originalSource?: string; originalLine?: number };
    if (e.originalSource) return `${shortUrl(e.originalSource)}:${(e.originalLine ?? 0) + 1}`;
  }
  return `${shortUrl(cf.url)}:${cf.lineNumber + 1}`;
}

/** Self time by function (name + file), and by file; percentages of the whole profile. */
export function summarize(profile: CpuProfile): { total: number; idle: number; byFunction: SelfTime[]; byFile: SelfTime[] } {
  const byNode = new Map<number, ProfileNode>();
  for (const n of profile.nodes) byNode.set(n.id, n);
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time since the previous sample; charge it to sample i.
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, profile.timeDeltas[i] ?? 0));
  }
  let total = 0;
  let idle = 0;
  const fn = new Map<string, SelfTime>();
  const file = new Map<string, SelfTime>();
  for (const [id, us] of selfUs) {
    const cf = byNode.get(id)!.callFrame;
    total += us;
    const name = cf.functionName || '(anonymous)';
    if (name === '(idle)') idle += us;
    const where = META.has(name) ? '' : locate(cf);
    const key = `${name}@${where}`;
    const f = fn.get(key) ?? { name, where, us: 0, pct: 0 };
    f.us += us;
    fn.set(key, f);
    const fileKey = META.has(name) ? name : where.replace(/:\d+$/, '');
    const g = file.get(fileKey) ?? { name: fileKey, where: '', us: 0, pct: 0 };
    g.us += us;
    file.set(fileKey, g);
  }
  const finish = (m: Map<string, SelfTime>): SelfTime[] =>
    [...m.values()].map((x) => ({ ...x, pct: total > 0 ? (100 * x.us) / total : 0 })).sort((a, b) => b.us - a.us);
  return { total, idle, byFunction: finish(fn), byFile: finish(file) };
}

export function formatSummary(title: string, profile: CpuProfile, top = 12): string {
  const s = summarize(profile);
  const busy = s.total - s.idle;
  const lines = [
    `${title}: ${(s.total / 1000).toFixed(0)} ms sampled, ${((100 * busy) / Math.max(1, s.total)).toFixed(1)}% busy`,
    '   self%  busy%  function                                   where',
  ];
  for (const f of s.byFunction.slice(0, top)) {
    const ofBusy = f.name === '(idle)' ? '' : ((100 * f.us) / Math.max(1, busy)).toFixed(1);
    lines.push(`  ${f.pct.toFixed(1).padStart(6)} ${ofBusy.padStart(6)}  ${f.name.slice(0, 42).padEnd(42)} ${f.where}`);
  }
  lines.push('  by file (self%): ' + s.byFile.slice(0, 8).map((f) => `${f.name} ${f.pct.toFixed(1)}`).join(', '));
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const top = Number(args.find((a) => a.startsWith('--top='))?.slice(6) ?? 15);
  for (const f of args.filter((a) => !a.startsWith('--'))) {
    console.log(formatSummary(basename(f), JSON.parse(readFileSync(f, 'utf8')) as CpuProfile, top));
    console.log();
  }
}
