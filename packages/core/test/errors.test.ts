import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import * as core from '@clusterinfra/core';
import {
  ClusterInfraError,
  ERROR_CODES,
  HandshakeRejectedError,
  InvalidOptionError,
  isClusterInfraError,
  parseOptions,
} from '@clusterinfra/core';

const docPath = fileURLToPath(new URL('../../../docs/errors.md', import.meta.url));

describe('errors', () => {
  it('carry a stable code, a cause and retryable', () => {
    const cause = new Error('root');
    const err = new core.ConnectionRefusedError('127.0.0.1:1', { cause });
    expect(err).toBeInstanceOf(ClusterInfraError);
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('TRANSPORT_ERR_CONNECTION_REFUSED');
    expect(err.retryable).toBe(true);
    expect(err.cause).toBe(cause);
    expect(err.name).toBe('ConnectionRefusedError');
    expect(isClusterInfraError(err, 'TRANSPORT_ERR_CONNECTION_REFUSED')).toBe(true);
    expect(isClusterInfraError(err, 'TRANSPORT_ERR_TLS')).toBe(false);
    expect(isClusterInfraError(new Error('x'))).toBe(false);
  });

  it('handshake rejections say why and who refused', () => {
    const err = new HandshakeRejectedError('cluster-name', 'remote', 'peer is in cluster b');
    expect(err.reason).toBe('cluster-name');
    expect(err.by).toBe('remote');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('cluster-name');
    expect(new HandshakeRejectedError('busy', 'remote').retryable).toBe(true);
  });

  it('every exported error class uses a code from the catalog', () => {
    const classes = Object.values(core).filter(
      (v): v is typeof ClusterInfraError =>
        typeof v === 'function' && v.prototype instanceof ClusterInfraError,
    );
    expect(classes.length).toBeGreaterThan(10);
    const samples: ClusterInfraError[] = classes.map((C) => new (C as unknown as new (...a: unknown[]) => ClusterInfraError)('x', 'x', 'x'));
    for (const e of samples) expect(Object.keys(ERROR_CODES)).toContain(e.code);
  });

  it('docs/errors.md has exactly one row per code', () => {
    const doc = readFileSync(docPath, 'utf8');
    const documented = [...doc.matchAll(/^\|\s*`([A-Z_]+)`\s*\|/gm)].map((m) => m[1]);
    expect(new Set(documented).size).toBe(documented.length);
    expect([...documented].sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });
});

describe('parseOptions', () => {
  const schema = z.strictObject({
    limits: z.strictObject({ maxFrameSize: z.number().int().positive().default(1024) }).default({ maxFrameSize: 1024 }),
    name: z.string().default('n'),
  });

  it('applies defaults', () => {
    expect(parseOptions('thing', schema, undefined)).toEqual({ limits: { maxFrameSize: 1024 }, name: 'n' });
  });

  it('fails fast with the path of the bad option', () => {
    let err: unknown;
    try {
      parseOptions('thing', schema, { limits: { maxFrameSize: -1 } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect((err as InvalidOptionError).code).toBe('CONFIG_ERR_INVALID_OPTION');
    expect((err as InvalidOptionError).path).toBe('limits.maxFrameSize');
    expect((err as Error).message).toContain('thing');
    expect(() => parseOptions('thing', schema, { nmae: 'typo' })).toThrow(InvalidOptionError);
  });
});

describe('errors made by another copy of the package', () => {
  // A second instance of the errors module stands for the other build (ESM vs
  // CommonJS) or another version of @clusterinfra/core in the same process.
  const otherPath = '../src/errors/index.ts?another-copy';
  const otherCopy = async () => (await import(/* @vite-ignore */ otherPath)) as typeof core;

  it('are recognised by instanceof, class by class', async () => {
    const other = await otherCopy();
    expect(other.ClusterInfraError).not.toBe(ClusterInfraError);
    const foreign = new other.TimeoutError('slow');
    expect(foreign instanceof core.TimeoutError).toBe(true);
    expect(foreign instanceof ClusterInfraError).toBe(true);
    expect(foreign instanceof core.AbortedError).toBe(false);
    expect(isClusterInfraError(foreign, 'CORE_ERR_TIMEOUT')).toBe(true);
    const local = new core.AbortedError();
    expect(local instanceof other.AbortedError).toBe(true);
    expect(local instanceof other.TimeoutError).toBe(false);
  });

  it('do not make plain errors or look-alikes pass', async () => {
    expect(new Error('x') instanceof ClusterInfraError).toBe(false);
    expect({ code: 'CORE_ERR_TIMEOUT', name: 'TimeoutError' } instanceof core.TimeoutError).toBe(false);
    expect((null as unknown as object) instanceof ClusterInfraError).toBe(false);
  });
});
