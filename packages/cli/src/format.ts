/**
 * Output for people: aligned tables and one-line events, in colour only
 * when stdout is a terminal and NO_COLOR is not set (https://no-color.org).
 */
import type { HistoryView, KeysView, StatusView } from '@clusterinfra/admin';
import type { NodeState, Transition } from '@clusterinfra/core';

export interface Style {
  bold(s: string): string;
  dim(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  red(s: string): string;
  blue(s: string): string;
}

const sgr = (open: number, close: number) => (s: string) => `\u001b[${open}m${s}\u001b[${close}m`;
const plain = (s: string): string => s;

export function makeStyle(color: boolean): Style {
  if (!color) return { bold: plain, dim: plain, green: plain, yellow: plain, red: plain, blue: plain };
  return { bold: sgr(1, 22), dim: sgr(2, 22), green: sgr(32, 39), yellow: sgr(33, 39), red: sgr(31, 39), blue: sgr(34, 39) };
}

/** Colour is for terminals; NO_COLOR (any non-empty value) turns it off. */
export function useColor(isTTY: boolean | undefined, env: Record<string, string | undefined>): boolean {
  return isTTY === true && !env.NO_COLOR;
}

const ANSI = /\u001b\[[0-9;]*m/g;
const width = (s: string): number => s.replace(ANSI, '').length;

/** Columns padded to their widest cell; the header is bold. Terminal control characters in cells are made visible. */
export function table(headers: string[], rows: string[][], style: Style): string {
  const widths = headers.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ''))));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(widths[i]! - width(c))))
      .join('  ')
      .trimEnd();
  return [style.bold(line(headers)), ...rows.map(line)].join('\n');
}

/** Strings from the cluster may hold anything: never let them drive the terminal. */
export function clean(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

export function stateColor(state: NodeState, style: Style): string {
  switch (state) {
    case 'Up':
      return style.green(state);
    case 'ComingUp':
      return style.blue(state);
    case 'ShuttingDown':
      return style.yellow(state);
    case 'GoingDown':
      return style.red(state);
    default:
      return style.dim(state);
  }
}

const yesNo = (v: boolean, style: Style): string => (v ? style.green('yes') : style.red('no'));

export function formatStatus(s: StatusView, style: Style): string {
  const head = `cluster ${style.bold(clean(s.cluster))}, answered by node ${s.node}${s.address ? ` (${clean(s.address)})` : ''}`;
  const facts = [
    `master ${s.master === null ? style.red('none') : `${s.master} (term ${s.term})`}`,
    `quorum ${yesNo(s.hasQuorum, style)}`,
    `formed ${yesNo(s.formed, style)}`,
    `transition ${s.lastTransition}`,
  ].join('   ');
  // A PHASE column when the application uses run levels (@clusterinfra/runlevels puts each node's phase in `meta.runlevel`).
  const phaseOf = (m: StatusView['members'][number]): string | undefined => (typeof m.meta?.runlevel === 'string' ? m.meta.runlevel : undefined);
  const phases = s.members.some((m) => phaseOf(m) !== undefined);
  // A ROLES column when any node declares roles (`meta.roles`, an array of names: @clusterinfra/services).
  const rolesOf = (m: StatusView['members'][number]): string[] => (Array.isArray(m.meta?.roles) ? m.meta.roles.filter((r): r is string => typeof r === 'string') : []);
  const roles = s.members.some((m) => rolesOf(m).length > 0);
  const rows = s.members.map((m) => [
    `${m.node}${m.master ? ' *' : ''}`,
    stateColor(m.state, style),
    ...(phases ? [clean(phaseOf(m) ?? '-')] : []),
    ...(roles ? [clean(rolesOf(m).join(',') || '-')] : []),
    String(m.incarnation),
    clean(m.address || '-'),
    m.hosts.length ? clean(m.hosts.join(', ')) : '-',
  ]);
  const columns = ['NODE', 'STATE', ...(phases ? ['PHASE'] : []), ...(roles ? ['ROLES'] : []), 'INCARNATION', 'ADDRESS', 'KEY SERVICES'];
  const members = rows.length ? table(columns, rows, style) : style.dim('(no members yet)');
  const health = s.health.ok ? style.green('healthy') : `${style.red('unhealthy')}: ${s.health.problems.map(clean).join('; ')}`;
  return `${head}\n${facts}\n\n${members}\n${style.dim('* master')}\n\n${health}\n`;
}

export function describeTransition(t: Transition): string {
  if (t.kind === 'keyservice' && t.keyService) {
    const k = t.keyService;
    return `key service ${clean(k.name)} ${k.phase} on node ${t.node} (epoch ${k.epoch})`;
  }
  if (t.kind === 'master') return `node ${t.node} is master (term ${t.term})`;
  if (t.kind === 'meta') return `node ${t.node} changed its metadata`;
  return `node ${t.node} ${t.from} → ${t.to}${t.cause ? ` (${clean(t.cause)})` : ''}`;
}

/** Wall-clock time of day, in UTC so output does not depend on where it runs. */
export function clock(ms: number): string {
  return new Date(ms).toISOString().slice(11, 23);
}

export function formatHistory(h: HistoryView, style: Style): string {
  if (h.transitions.length === 0) return `${style.dim(`no transitions here (the history holds ${h.first}..${h.last})`)}\n`;
  const rows = h.transitions.map((t) => [String(t.number), String(t.term), clock(t.time), stateColor(t.to, style), describeTransition(t)]);
  const more = h.next === null ? '' : `\n${style.dim(`more: cluster history --since ${h.next}`)}`;
  return `${table(['#', 'TERM', 'TIME (UTC)', 'TO', 'WHAT'], rows, style)}${more}\n`;
}

export function formatKeys(k: KeysView, style: Style): string {
  const formed = `formed ${yesNo(k.formed, style)}`;
  if (k.keyServices.length === 0) return `${formed}\n${style.dim('no key services')}\n`;
  const rows = k.keyServices.map((x) => [
    clean(x.name),
    x.host === undefined ? style.red('none') : String(x.host),
    String(x.epoch),
    x.halted ? style.red('halted') : x.ready ? style.green('ready') : style.yellow('moving'),
    x.critical ? 'yes' : 'no',
    String(x.since),
  ]);
  return `${formed}\n\n${table(['NAME', 'HOST', 'EPOCH', 'STATE', 'CRITICAL', 'SINCE'], rows, style)}\n`;
}

/** One line per streamed event. */
export function formatEvent(type: string, data: unknown, style: Style): string {
  const d = data as Record<string, unknown>;
  switch (type) {
    case 'transition': {
      const t = data as Transition;
      return `${style.dim(clock(t.time))}  #${t.number}  ${describeTransition(t)}`;
    }
    case 'master':
      return `${style.dim('master')}  ${d.master === null ? style.red('no master') : `node ${String(d.master)}`} (term ${String(d.term)})`;
    case 'quorum':
      return `${style.dim('quorum')}  ${d.hasQuorum ? style.green('gained') : style.red('lost')}`;
    case 'formed':
      return `${style.dim('formed')}  ${d.formed ? style.green('yes') : style.red('no')}`;
    case 'keyservice':
      return `${style.dim('key service')}  ${clean(String(d.name))} on ${d.host === undefined ? 'no node' : `node ${String(d.host)}`}, epoch ${String(d.epoch)}${d.ready ? ', ready' : ''}`;
    case 'decision':
      return `${style.dim('decision')}  ${clean(String(d.kind))}${d.node === undefined ? '' : ` node ${String(d.node)}`}: ${clean(String(d.rule))}`;
    default:
      return `${style.dim(clean(type))}  ${clean(JSON.stringify(data))}`;
  }
}
