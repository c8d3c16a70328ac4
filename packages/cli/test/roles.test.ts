/** `cluster status` shows a ROLES column when a member declares roles (`meta.roles`), and none otherwise. */
import { expect, it } from 'vitest';
import type { StatusView } from '../../admin/src/views.js';
import { formatStatus, makeStyle } from '../src/format.js';

const member = (node: number, meta: Record<string, unknown>): StatusView['members'][number] =>
  ({ node, state: 'Up', incarnation: node * 10, address: `node-${node}`, meta, hosts: [], master: node === 1 }) as unknown as StatusView['members'][number];

const view = (members: StatusView['members']): StatusView =>
  ({ cluster: 'shop', node: 1, address: 'node-1', master: 1, term: 1, hasQuorum: true, formed: true, lastTransition: 5, members, health: { ok: true, problems: [] } }) as unknown as StatusView;

it('a ROLES column, with each node roles (or -), only when a member declares some', () => {
  const text = formatStatus(view([member(1, { roles: ['frontend'] }), member(2, { roles: ['storage', 'eu', 7] }), member(3, {})]), makeStyle(false));
  const lines = text.split('\n');
  expect(lines.find((l) => l.includes('NODE'))).toMatch(/NODE\s+STATE\s+ROLES\s+INCARNATION/);
  expect(lines.find((l) => l.startsWith('2'))).toMatch(/^2\s+Up\s+storage,eu\s+20/);
  expect(lines.find((l) => l.startsWith('3'))).toMatch(/^3\s+Up\s+-\s+30/);
  expect(formatStatus(view([member(1, {}), member(2, { roles: [] })]), makeStyle(false))).not.toContain('ROLES');
});
