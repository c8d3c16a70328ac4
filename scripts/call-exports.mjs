// Run by check-packages.mjs in a child process (its own cwd, no arguments):
// calls every exported function of one entry point once, from the CommonJS
// build and from the ESM build, and prints what happened to each as JSON.
// Called with no arguments, a function must behave the same in both builds
// (returns the same kind of value, or throws the same error): a difference
// means the CommonJS build is broken, typically by an `import.meta` that
// tsup left empty there. Classes are constructed with `new`.
//
// A few functions only reach their interesting code with real arguments;
// CALLS gives those arguments, and such a call must succeed in both builds
// (what it returns is closed afterwards).
//
//   node scripts/call-exports.mjs <specifier>
import { createRequire } from 'node:module';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

/** specifier → export → the arguments of a call that must succeed. */
const CALLS = {
  '@clusterinfra/cli': {
    // The launcher finds its runner through import.meta.url: the bug this check was written for.
    startLocalCluster: [{ nodes: 1, admin: false, startTimeoutMs: 60_000 }],
  },
};

/** How long a returned promise may stay pending before it counts as `pending`. */
const SETTLE_MS = 5_000;

const isClass = (fn) => /^class[\s{]/.test(Function.prototype.toString.call(fn));

/** An error in words that do not depend on the build (`.cjs` and `.js` paths read alike). */
const errorText = (err) =>
  `${err?.constructor?.name ?? typeof err} ${err?.code ?? ''}: ${String(err?.message ?? err)}`.replaceAll('.cjs', '.js');

const kind = (v) => (v === null ? 'null' : typeof v === 'object' ? `object ${v.constructor?.name ?? ''}`.trim() : typeof v);

async function settle(promise) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ state: 'pending' }), SETTLE_MS);
  });
  try {
    return await Promise.race([promise.then((value) => ({ state: 'resolves', value }), (err) => ({ state: 'rejects', err })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Calls `fn` once; resolves with `{ text, value }` (`value` when it returned or resolved). */
async function call(fn, args) {
  try {
    const result = isClass(fn) ? new fn(...args) : fn(...args);
    if (!result || typeof result.then !== 'function') return { text: `returns ${kind(result)}`, value: result };
    const s = await settle(result);
    if (s.state === 'resolves') return { text: `resolves ${kind(s.value)}`, value: s.value };
    return { text: s.state === 'pending' ? `stays pending for ${SETTLE_MS} ms` : `rejects ${errorText(s.err)}` };
  } catch (err) {
    return { text: `throws ${errorText(err)}` };
  }
}

async function dispose(value) {
  for (const key of ['close', Symbol.asyncDispose, 'destroy']) {
    if (typeof value?.[key] === 'function') return void (await value[key]());
  }
}

const spec = process.argv[2];
const cjs = createRequire(join(root, 'package.json'))(spec);
const esm = await import(spec);
const report = { spec, called: 0, differ: [], failed: [] };
for (const name of Object.keys(cjs).sort()) {
  if (typeof cjs[name] !== 'function') continue;
  report.called++;
  const [c, e] = [await call(cjs[name], []), await call(esm[name], [])];
  if (c.text !== e.text) report.differ.push({ name, cjs: c.text, esm: e.text });
  const args = CALLS[spec]?.[name];
  if (!args) continue;
  for (const [build, mod] of [['cjs', cjs], ['esm', esm]]) {
    const r = await call(mod[name], args);
    if (!/^(returns|resolves)/.test(r.text)) report.failed.push({ name, build, args, outcome: r.text });
    await dispose(r.value).catch((err) => report.failed.push({ name, build, outcome: `close: ${errorText(err)}` }));
  }
}
console.log(`@@call-exports@@${JSON.stringify(report)}`);
process.exit(0);
