import { expect, it } from 'vitest';
import { main } from '../../../examples/hello-cluster.js';

it('the hello-cluster example (npm run example:hello) runs on transport-mem', async () => {
  const lines: string[] = [];
  const r = await main({ transport: 'memory', print: (l) => lines.push(l) });
  expect(r.greetings).toEqual(['hello world', 'hello later']);
  expect(r.nodedownError).toBe('ICS_ERR_NODE_DOWN (may-have-run)');
  expect(lines.some((l) => l.includes('ICS_ERR_INVALID_ARGUMENT'))).toBe(true);
  expect(lines.at(-1)).toContain('all nodes closed');
});

it('the hello-cluster example runs over TCP too', async () => {
  const r = await main({ transport: 'tcp', print: () => {} });
  expect(r.nodedownError).toBe('ICS_ERR_NODE_DOWN (may-have-run)');
});

