/**
 * The DLM's codes join core's `ErrorCode` through core's
 * extension point (`ErrorCodeExtensions`): no cast, and core's helpers take
 * them. `npm run typecheck` checks the type half (the ts-expect-error below
 * fails it if an undeclared code were accepted).
 */
import { type ErrorCode, isClusterInfraError } from '@clusterinfra/core';
import { expect, it } from 'vitest';
import { DeadlockError, isDlmError, LockTimeoutError } from '../src/index.js';

it('package codes are ErrorCodes: isClusterInfraError matches them by code, as for core codes', () => {
  const deadlock: unknown = new DeadlockError('victim');
  expect(isClusterInfraError(deadlock, 'DLM_ERR_DEADLOCK')).toBe(true);
  expect(isClusterInfraError(deadlock, 'DLM_ERR_TIMEOUT')).toBe(false);
  expect(isClusterInfraError(new LockTimeoutError('late'), 'DLM_ERR_TIMEOUT')).toBe(true);
  expect(isDlmError(deadlock, 'DLM_ERR_DEADLOCK')).toBe(true);
  const codes: ErrorCode[] = ['CORE_ERR_TIMEOUT', 'DLM_ERR_DEADLOCK'];
  // @ts-expect-error a code no package declared is not an ErrorCode
  codes.push('NOBODY_ERR_SUCH_CODE');
  expect(codes).toHaveLength(3);
});
