import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { defaultLogger, silentLogger } from '@clusterinfra/core';
import { LogLimiter } from '../src/logging/index.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));

function runWithDebug(nodeDebug: string): string {
  const script = `
    import { defaultLogger } from './packages/core/src/logging/index.ts';
    const log = defaultLogger().child({ component: 'ics' });
    log.info('hello %s', 'world');
    log.warn({ peer: 3 }, 'slow peer');
    log.warn({ remote: 'node-4', reason: 'auth' }, 'refused a connection: %s', 'handshake rejected by local side: auth');
  `;
  const res = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: root,
    env: { ...process.env, NODE_DEBUG: nodeDebug },
    encoding: 'utf8',
  });
  return res.stderr;
}

describe('logging', () => {
  it('is silent by default and its children too', () => {
    expect(silentLogger.child({ a: 1 })).toBe(silentLogger);
    if (!process.env.NODE_DEBUG?.includes('clusterinfra')) expect(defaultLogger()).toBe(silentLogger);
  });

  it('prints through util.debuglog when NODE_DEBUG=clusterinfra', () => {
    const out = runWithDebug('clusterinfra');
    expect(out).toContain('INFO {"component":"ics"} hello world');
    expect(out).toContain('WARN {"component":"ics"} slow peer {"peer":3}');
    expect(runWithDebug('')).not.toContain('hello world');
  });

  it('a message with a %s of its own keeps its argument and prints the object after it (no stray %j)', () => {
    const out = runWithDebug('clusterinfra');
    expect(out).toContain('WARN {"component":"ics"} refused a connection: handshake rejected by local side: auth {"remote":"node-4","reason":"auth"}');
    expect(out).not.toContain('%j');
  });

  it('LogLimiter lets one line per key through per period and counts the ones held back', () => {
    let now = 0;
    const limit = new LogLimiter(() => now, 10_000, 2);
    expect(limit.take('auth')).toEqual({ ok: true, suppressed: 0 });
    for (let i = 0; i < 25; i++) expect(limit.take('auth').ok).toBe(false);
    expect(limit.take('identity').ok).toBe(true);
    now = 10_000;
    expect(limit.take('auth')).toEqual({ ok: true, suppressed: 25 });
    // Bounded: a third key pushes out the oldest.
    expect(limit.take('busy').ok).toBe(true);
    expect(limit.take('identity')).toEqual({ ok: true, suppressed: 0 });
  });
});
