/**
 * The live web page served at `GET /`: one self-contained HTML document
 * (inline script and style, allowed by a per-response CSP nonce, no
 * external assets). It draws the members as cards and the transition
 * timeline, and follows `/v1/watch` live. With a transport that reports
 * per-path health (the `paths` option), it also lists each link's paths,
 * read from `/v1/paths` every few seconds (paths change without a
 * membership event). Everything that came from the
 * cluster is put on the page with `textContent`, never as HTML.
 *
 * The token: taken from `?token=` (then removed from the address bar and
 * kept in sessionStorage for reloads), or asked for. API calls send it as a
 * bearer header; only the event stream carries it in its URL, because a
 * browser's EventSource cannot set headers.
 */

const STYLE = `
:root { color-scheme: light dark; --bg: #f6f7f9; --fg: #1d2330; --muted: #667085; --card: #fff; --line: #d0d5dd;
  --Up: #12b76a; --ComingUp: #2e90fa; --ShuttingDown: #f79009; --GoingDown: #f04438; --Down: #98a2b3; --NeverUp: #d0d5dd; }
@media (prefers-color-scheme: dark) { :root { --bg: #101828; --fg: #f2f4f7; --muted: #98a2b3; --card: #1d2939; --line: #344054; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; padding: .75rem 1.25rem; border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.1rem; margin: 0 1rem 0 0; }
#badges { display: inline-flex; flex-wrap: wrap; gap: .4rem; }
.badge { padding: .15rem .55rem; border-radius: 999px; border: 1px solid var(--line); font-size: .8rem; }
.badge.good { border-color: var(--Up); color: var(--Up); }
.badge.bad { border-color: var(--GoingDown); color: var(--GoingDown); }
main { display: grid; grid-template-columns: minmax(0, 2fr) minmax(16rem, 1fr); gap: 1.25rem; padding: 1.25rem; }
@media (max-width: 800px) { main { grid-template-columns: 1fr; } }
h2 { font-size: .95rem; margin: 0 0 .75rem; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
#members { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: .9rem; }
.member { background: var(--card); border: 1px solid var(--line); border-radius: .75rem; padding: .9rem; text-align: center; position: relative; }
.member .dot { width: 4rem; height: 4rem; border-radius: 50%; margin: 0 auto .5rem; display: grid; place-items: center;
  font-size: 1.4rem; font-weight: 700; color: #fff; background: var(--NeverUp); transition: background .3s; }
.member[data-state="Up"] .dot { background: var(--Up); }
.member[data-state="ComingUp"] .dot { background: var(--ComingUp); }
.member[data-state="ShuttingDown"] .dot { background: var(--ShuttingDown); }
.member[data-state="GoingDown"] .dot { background: var(--GoingDown); }
.member[data-state="Down"] .dot { background: var(--Down); }
.member[data-state="Down"] { opacity: .65; }
.member .state { font-weight: 600; }
.member .master { position: absolute; top: .5rem; right: .6rem; font-size: .75rem; font-weight: 700; color: var(--ShuttingDown); }
.member .small { color: var(--muted); font-size: .75rem; word-break: break-all; }
.member .phase, .member .roles { font-size: .8rem; margin-top: .2rem; }
.chips { display: flex; flex-wrap: wrap; gap: .3rem; justify-content: center; margin-top: .4rem; }
.chip { font-size: .72rem; padding: .05rem .45rem; border-radius: .4rem; background: var(--bg); border: 1px solid var(--line); }
#timeline { list-style: none; margin: 0; padding: 0; max-height: 75vh; overflow: auto; }
#timeline li { border-left: 3px solid var(--line); padding: .3rem .6rem; margin-bottom: .35rem; background: var(--card); border-radius: 0 .4rem .4rem 0; }
#timeline li .num { font-weight: 700; margin-right: .4rem; }
#timeline li .when { color: var(--muted); font-size: .75rem; float: right; }
#timeline li[data-to="Up"] { border-left-color: var(--Up); }
#timeline li[data-to="ComingUp"] { border-left-color: var(--ComingUp); }
#timeline li[data-to="ShuttingDown"] { border-left-color: var(--ShuttingDown); }
#timeline li[data-to="GoingDown"] { border-left-color: var(--GoingDown); }
#timeline li[data-to="Down"] { border-left-color: var(--Down); }
#paths-section h2 { margin-top: 1.25rem; }
#paths { display: grid; gap: .5rem; }
#paths .link { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; background: var(--card); border: 1px solid var(--line); border-radius: .5rem; padding: .45rem .7rem; }
#paths .peer { font-weight: 600; min-width: 7rem; }
#paths .path { font-size: .78rem; padding: .1rem .5rem; border-radius: .4rem; border: 1px solid var(--line); }
#paths .path[data-state="up"] { border-color: var(--Up); color: var(--Up); }
#paths .path[data-state="connecting"] { border-color: var(--ComingUp); color: var(--ComingUp); }
#paths .path[data-state="down"] { border-color: var(--GoingDown); color: var(--GoingDown); }
#paths .path[data-active="true"] { font-weight: 700; }
#paths .small, #paths .none { color: var(--muted); font-size: .75rem; }
form#login { padding: 2rem 1.25rem; display: flex; gap: .5rem; }
form#login input { padding: .4rem; min-width: 20rem; }
.hidden { display: none !important; }
#error { color: var(--GoingDown); padding: 0 1.25rem; }
`;

/* The page script. Plain ES2020; it builds every node with createElement and textContent. */
const SCRIPT = `
'use strict';
const KEY = 'clusterinfra-admin-token';
const MAX_TIMELINE = 200;
const PATHS_POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
function el(tag, props, children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'text') e.textContent = String(v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children || []) if (c) e.appendChild(c);
  return e;
}
function takeToken() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl) {
    sessionStorage.setItem(KEY, fromUrl);
    url.searchParams.delete('token');
    // Keep the token out of the address bar, history and bookmarks.
    history.replaceState(null, '', url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem(KEY);
}
let token = takeToken();
let source = null;
let refreshTimer = null;
let pathsTimer = null;

function showError(msg) { $('error').textContent = msg || ''; }
function askToken() {
  $('login').classList.remove('hidden');
  $('app').classList.add('hidden');
}
async function api(path) {
  const res = await fetch(path, { headers: { authorization: 'Bearer ' + token }, cache: 'no-store' });
  if (res.status === 401) { sessionStorage.removeItem(KEY); token = null; askToken(); throw new Error('the token was refused'); }
  const body = await res.json();
  if (!res.ok) throw new Error((body && body.error && body.error.code) || ('HTTP ' + res.status));
  return body;
}
function badge(text, good) { return el('span', { class: 'badge ' + (good === undefined ? '' : good ? 'good' : 'bad'), text }); }

function renderStatus(s) {
  $('cluster').textContent = 'cluster ' + s.cluster;
  const badges = $('badges');
  badges.replaceChildren(
    badge('via node ' + s.node),
    badge(s.master === null ? 'no master' : 'master ' + s.master + ' (term ' + s.term + ')', s.master !== null),
    badge(s.hasQuorum ? 'quorum' : 'no quorum', s.hasQuorum),
    badge(s.formed ? 'formed' : 'not formed', s.formed),
    badge('transition ' + s.lastTransition),
  );
  badges.setAttribute('data-healthy', String(s.health.ok));
  const cards = s.members.map((m) => el('div', { class: 'member', 'data-node': m.node, 'data-state': m.state, 'data-master': m.master }, [
    m.master ? el('span', { class: 'master', text: '\\u2605 master', title: 'master' }) : null,
    el('div', { class: 'dot', text: m.node }),
    el('div', { class: 'state', text: m.state }),
    el('div', { class: 'small', text: m.address || '' }),
    el('div', { class: 'small', text: 'incarnation ' + m.incarnation }),
    m.meta && typeof m.meta.runlevel === 'string' ? el('div', { class: 'phase', title: 'run level (@clusterinfra/runlevels)', text: 'phase ' + m.meta.runlevel }) : null,
    m.meta && Array.isArray(m.meta.roles) && m.meta.roles.length ? el('div', { class: 'roles', title: 'roles (meta.roles, @clusterinfra/services)', text: 'roles ' + m.meta.roles.filter((r) => typeof r === 'string').join(', ') }) : null,
    el('div', { class: 'chips' }, m.hosts.map((h) => el('span', { class: 'chip', title: 'key service hosted here', text: h }))),
  ]));
  $('members').replaceChildren(...cards);
}

function pathTitle(p) {
  const parts = ['failures ' + p.failures, p.state + ' for ' + Math.round(p.sinceMs / 1000) + ' s'];
  if (p.silentMs !== null) parts.push('last heard ' + p.silentMs + ' ms ago');
  if (p.lastError) parts.push('last down: ' + p.lastError);
  return parts.join('; ');
}
function renderPaths(v) {
  $('paths-section').classList.toggle('hidden', !v.available);
  const b = $('pathbadge');
  b.classList.toggle('hidden', !v.available);
  if (!v.available) return;
  b.textContent = v.degraded ? v.degraded + (v.degraded === 1 ? ' link' : ' links') + ' short of a path' : 'every path up';
  b.className = 'badge ' + (v.degraded ? 'bad' : 'good');
  const rows = v.links.map((l) => el('div', { class: 'link', 'data-peer': l.node, 'data-link': l.link }, [
    el('span', { class: 'peer', text: 'node ' + l.node + (l.direction === 'inbound' ? ' (in)' : ' (out)') }),
    ...l.paths.map((p) => el('span', { class: 'path', 'data-path': p.index, 'data-state': p.state, 'data-active': p.active, title: pathTitle(p),
      text: 'path ' + p.index + ' ' + p.state + (p.active ? ' \u00b7 active' : '') + (p.failures ? ' \u00b7 ' + p.failures + ' down' : '') })),
    l.retransmitted || l.duplicatesDropped ? el('span', { class: 'small', text: l.retransmitted + ' resent, ' + l.duplicatesDropped + ' duplicates dropped' }) : null,
  ]));
  $('paths').replaceChildren(...(rows.length ? rows : [el('div', { class: 'none', text: 'no links open' })]));
}
async function refreshPaths() {
  try {
    const v = await api('/v1/paths');
    renderPaths(v);
    if (v.available && !pathsTimer) pathsTimer = setInterval(refreshPaths, PATHS_POLL_MS);
  } catch (err) { showError(String(err.message || err)); }
}

function describe(t) {
  if (t.kind === 'keyservice' && t.keyService) return 'key service ' + t.keyService.name + ' ' + t.keyService.phase + ' on node ' + t.node + ' (epoch ' + t.keyService.epoch + ')';
  if (t.kind === 'master') return 'node ' + t.node + ' is master (term ' + t.term + ')';
  if (t.kind === 'meta') return 'node ' + t.node + ' metadata';
  return 'node ' + t.node + ' ' + t.from + ' \\u2192 ' + t.to + (t.cause ? ' (' + t.cause + ')' : '');
}
function addTransition(t) {
  const list = $('timeline');
  if (list.querySelector('[data-number="' + Number(t.number) + '"]')) return;
  const li = el('li', { 'data-number': t.number, 'data-to': t.to, 'data-node': t.node }, [
    el('span', { class: 'when', text: new Date(t.time).toLocaleTimeString() }),
    el('span', { class: 'num', text: '#' + t.number }),
    el('span', { text: describe(t) }),
  ]);
  list.insertBefore(li, list.firstChild);
  while (list.children.length > MAX_TIMELINE) list.removeChild(list.lastChild);
}

async function refresh() {
  try {
    renderStatus(await api('/v1/status'));
    showError('');
  } catch (err) { showError(String(err.message || err)); }
}
function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); if (pathsTimer) refreshPaths(); }, 100);
}

function follow(since) {
  if (source) source.close();
  const q = new URLSearchParams({ token, since: String(since) });
  source = new EventSource('/v1/watch?' + q.toString());
  source.onopen = () => { $('live').textContent = 'live'; $('live').className = 'badge good'; };
  source.onerror = () => { $('live').textContent = 'reconnecting'; $('live').className = 'badge bad'; };
  source.addEventListener('transition', (e) => { addTransition(JSON.parse(e.data)); refreshSoon(); });
  for (const type of ['master', 'quorum', 'keyservice', 'formed']) source.addEventListener(type, refreshSoon);
}

async function start() {
  if (!token) { askToken(); return; }
  $('login').classList.add('hidden');
  $('app').classList.remove('hidden');
  try {
    const s = await api('/v1/status');
    renderStatus(s);
    refreshPaths();
    // Replay the recent history into the timeline, then follow live without a gap.
    follow(Math.max(s.firstTransition, s.lastTransition - 49, 1));
  } catch (err) { showError(String(err.message || err)); }
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  token = $('token').value.trim();
  if (token) { sessionStorage.setItem(KEY, token); start(); }
});
start();
`;

export function renderPage(nonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ClusterInfra</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<header>
  <h1 id="cluster">ClusterInfra</h1>
  <span id="badges"></span>
  <span id="pathbadge" class="badge hidden"></span>
  <span id="live" class="badge">connecting</span>
</header>
<div id="error" role="alert"></div>
<form id="login" class="hidden">
  <label for="token">Admin token</label>
  <input id="token" type="password" autocomplete="off" placeholder="the node's admin token">
  <button type="submit">Open</button>
</form>
<main id="app" class="hidden">
  <section><h2>Members</h2><div id="members"></div>
    <div id="paths-section" class="hidden"><h2>Interconnect paths</h2><div id="paths"></div></div></section>
  <section><h2>Transitions</h2><ol id="timeline"></ol></section>
</main>
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>
`;
}
