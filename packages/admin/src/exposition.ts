/**
 * The Prometheus text exposition format (version 0.0.4), written by hand:
 * `# HELP` and `# TYPE` once per family, then one line per sample, with
 * label values and help text escaped as the format requires.
 */

export type Labels = Readonly<Record<string, string>>;
export type MetricType = 'counter' | 'gauge' | 'histogram';

export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Label values escape backslash, double quote and newline. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Help text escapes backslash and newline (quotes are fine there). */
export function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

function formatLabels(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return '';
  return `{${keys.map((k) => `${k}="${escapeLabelValue(labels[k]!)}"`).join(',')}}`;
}

/** Collects families and renders them in the order they were added. */
export class Exposition {
  private readonly lines: string[] = [];

  /** A counter or gauge family: one sample per label set. */
  family(name: string, type: 'counter' | 'gauge', help: string, samples: Iterable<[Labels, number]>): this {
    this.header(name, type, help);
    for (const [labels, value] of samples) this.sample(name, labels, value);
    return this;
  }

  /** A histogram family: cumulative `_bucket` lines (with `le="+Inf"`), `_sum` and `_count` per label set. */
  histogram(name: string, help: string, bounds: readonly number[], series: Iterable<[Labels, HistogramData]>): this {
    this.header(name, 'histogram', help);
    for (const [labels, h] of series) {
      let cumulative = 0;
      for (let i = 0; i < bounds.length; i++) {
        cumulative += h.buckets[i] ?? 0;
        this.sample(`${name}_bucket`, { ...labels, le: formatValue(bounds[i]!) }, cumulative);
      }
      this.sample(`${name}_bucket`, { ...labels, le: '+Inf' }, h.count);
      this.sample(`${name}_sum`, labels, h.sum);
      this.sample(`${name}_count`, labels, h.count);
    }
    return this;
  }

  render(): string {
    return this.lines.length === 0 ? '' : `${this.lines.join('\n')}\n`;
  }

  private header(name: string, type: MetricType, help: string): void {
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  }

  private sample(name: string, labels: Labels, value: number): void {
    this.lines.push(`${name}${formatLabels(labels)} ${formatValue(value)}`);
  }
}

/** One histogram's state: per-bucket (not cumulative) counts, then sum and count. */
export interface HistogramData {
  /** Observations per bucket: `buckets[i]` counts values in (bounds[i-1], bounds[i]]; values above the last bound are only in `count`. */
  buckets: number[];
  sum: number;
  count: number;
}

export function newHistogram(bounds: readonly number[]): HistogramData {
  return { buckets: new Array<number>(bounds.length).fill(0), sum: 0, count: 0 };
}

export function observe(h: HistogramData, bounds: readonly number[], value: number): void {
  h.count++;
  h.sum += value;
  // Few buckets: a linear scan is as fast as a search and obviously right.
  for (let i = 0; i < bounds.length; i++) {
    if (value <= bounds[i]!) {
      h.buckets[i] = (h.buckets[i] ?? 0) + 1;
      return;
    }
  }
}
