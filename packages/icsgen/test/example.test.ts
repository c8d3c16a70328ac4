import { describe, expect, it } from 'vitest';
import { main } from '../../../examples/kv/main.js';

describe('examples/kv', () => {
  it('serves the generated Kv service on one node and calls it from another', async () => {
    const lines: string[] = [];
    const result = await main((l) => lines.push(l));
    expect(result.got?.key).toBe('greeting');
    expect(new TextDecoder().decode(result.got?.value)).toBe('hello');
    expect(result.missing).toBeNull();
    expect(result.scanned).toEqual(['greeting', 'tree']);
    expect(result.size).toBe(2);
    expect(result.invalidCode).toBe('ICS_ERR_INVALID_ARGUMENT');
    expect(lines[0]).toBe('get greeting → hello (green)');
  });
});
