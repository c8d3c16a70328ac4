import { describe, expect, it } from 'vitest';
import { escapeLabelValue, Exposition, newHistogram, observe } from '../src/exposition.js';
import { parseExposition, sampleValue } from './prom-parse.js';

describe('Prometheus exposition', () => {
  it('escapes label values and help text so that a parser gets them back', () => {
    const nasty = 'a "quoted" \\ back\nslash';
    const text = new Exposition().family('x_total', 'counter', 'help with \\ and\nnewline', [[{ name: nasty }, 3]]).render();
    expect(text).toContain('# HELP x_total help with \\\\ and\\nnewline\n');
    expect(text).toContain(`x_total{name="${escapeLabelValue(nasty)}"} 3\n`);
    expect(text.split('\n').filter((l) => l.startsWith('x_total'))).toHaveLength(1);
    const parsed = parseExposition(text);
    expect(sampleValue(parsed, 'x_total', { name: nasty })).toBe(3);
  });

  it('writes cumulative histogram buckets ending in +Inf = count', () => {
    const bounds = [0.1, 1, 10];
    const h = newHistogram(bounds);
    for (const v of [0.05, 0.1, 0.5, 5, 50]) observe(h, bounds, v);
    const text = new Exposition().histogram('lat_seconds', 'latency', bounds, [[{ service: 's' }, h]]).render();
    const parsed = parseExposition(text);
    expect(sampleValue(parsed, 'lat_seconds_bucket', { service: 's', le: '0.1' })).toBe(2);
    expect(sampleValue(parsed, 'lat_seconds_bucket', { service: 's', le: '1' })).toBe(3);
    expect(sampleValue(parsed, 'lat_seconds_bucket', { service: 's', le: '10' })).toBe(4);
    expect(sampleValue(parsed, 'lat_seconds_bucket', { service: 's', le: '+Inf' })).toBe(5);
    expect(sampleValue(parsed, 'lat_seconds_count', { service: 's' })).toBe(5);
    expect(sampleValue(parsed, 'lat_seconds_sum', { service: 's' })).toBeCloseTo(55.65);
  });

  it('the checking parser refuses what the format forbids', () => {
    expect(() => parseExposition('x 1\n')).toThrow(/no family/);
    expect(() => parseExposition('# HELP x h\n# TYPE x gauge\nx{a="b} 1\n')).toThrow(/unterminated/);
    expect(() => parseExposition('# HELP x h\n# TYPE x gauge\nx{a="\\q"} 1\n')).toThrow(/bad escape/);
    expect(() => parseExposition('# HELP x h\n# TYPE x gauge\nx 1')).toThrow(/newline/);
    expect(() => parseExposition('# HELP h h\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n')).toThrow(/cumulative/);
  });
});
