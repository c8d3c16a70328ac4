import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { defaultLogger, silentLogger } from '@clusterinfra/core';

const root = fileURLToPath(new URL('../../..', import.meta.url));

function runWithDebug(nodeDebug: string): string {
  const script = `
    import { defaultLogger } from './packages/core/src/logging/index.ts';
    const log = defaultLogger().child({ component: 'ics' });
    log.info('hello %s', 'world');
    log.warn({ peer: 3 }, 'slow peer');
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
});
