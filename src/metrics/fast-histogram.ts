import { Histogram, type LabelValues, type MetricObjectWithValues, type MetricValueWithName, type Registry } from 'prom-client';

/**
 * A prom-client Histogram with one label, whose observations on the hot path are one bucket
 * increment on a series the caller keeps (`series(value)`).
 *
 * Why: prom-client's `observe` checks and hashes the label object and looks buckets up by their
 * bound as a property name on every call, about 0.45 µs; sluice observes two histograms per
 * decision. This keeps its own counts and answers `get()` (what the registry, its text output
 * and the cluster aggregation read) in prom-client's own shape, so the exposition is unchanged;
 * a test compares both, text and JSON, against a plain Histogram fed the same values.
 * `observe(labels, value)` still works (through a lookup); prom-client's own storage is unused.
 */
export class FastHistogram<T extends string> extends Histogram<T> {
  private readonly bounds: readonly number[];
  private readonly bySeries = new Map<string, HistogramSeries>();
  /** Series observed since the last reset, in the order of their first observation (prom-client's order). */
  private readonly exported: HistogramSeries[] = [];

  constructor(
    private readonly config: {
      readonly name: string;
      readonly help: string;
      readonly labelName: T;
      readonly buckets: readonly number[];
      readonly registers: Registry[];
    },
  ) {
    super({ name: config.name, help: config.help, labelNames: [config.labelName], buckets: [...config.buckets], registers: config.registers });
    this.bounds = [...config.buckets].sort((a, b) => a - b);
    // prom-client assigns `observe` per instance in its constructor: replace that one.
    const observe = (labels: LabelValues<T>, value: number): void => {
      this.series(String(labels[config.labelName] ?? '')).observe(value);
    };
    Object.defineProperty(this, 'observe', { value: observe, writable: true, configurable: true });
  }

  /** The series of one label value: keep it and observe into it. */
  series(labelValue: string): HistogramSeries {
    let series = this.bySeries.get(labelValue);
    if (series === undefined) {
      series = new HistogramSeries(labelValue, this.bounds, (first) => this.exported.push(first));
      this.bySeries.set(labelValue, series);
    }
    return series;
  }

  override async get(): Promise<MetricObjectWithValues<MetricValueWithName<T>>> {
    return this.export(true);
  }

  /** What prom-client's text exposition reads (the label after `le`, as prom-client writes it). */
  async getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<T>>> {
    return this.export(false);
  }

  override reset(): void {
    // prom-client's constructor calls this too, before this class's fields exist.
    const bySeries = this.bySeries as Map<string, HistogramSeries> | undefined;
    if (bySeries === undefined) return;
    for (const series of bySeries.values()) series.clear();
    this.exported.length = 0;
  }

  private export(merged: boolean): MetricObjectWithValues<MetricValueWithName<T>> {
    const values: MetricValueWithName<T>[] = [];
    const bucketName = `${this.config.name}_bucket`;
    for (const series of this.exported) {
      const own = { [this.config.labelName]: series.labelValue } as Partial<Record<T, string>>;
      const value = (labels: Record<string, string | number>, count: number, metricName: string, exemplar: null | undefined): MetricValueWithName<T> =>
        (merged
          ? { labels: { ...labels, ...own }, value: count, metricName, exemplar }
          : { labels, sharedLabels: own, value: count, metricName, exemplar }) as unknown as MetricValueWithName<T>;
      let cumulative = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        cumulative += series.counts[i]!;
        values.push(value({ le: this.bounds[i]! }, cumulative, bucketName, null));
      }
      values.push(value({ le: '+Inf' }, series.count, bucketName, null));
      values.push(value({}, series.sum, `${this.config.name}_sum`, undefined));
      values.push(value({}, series.count, `${this.config.name}_count`, undefined));
    }
    // prom-client's typings say an enum and a `collect`; at run time `get()` gives this ('sum': a histogram's default aggregator).
    const metric = { name: this.config.name, help: this.config.help, type: 'histogram', values, aggregator: 'sum' };
    return metric as unknown as MetricObjectWithValues<MetricValueWithName<T>>;
  }
}

/** One label value's counts: per bucket (not cumulative), their sum and count. */
export class HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  /** Observed since the last reset: exported (prom-client exports a series from its first observation). */
  private observed = false;

  constructor(
    readonly labelValue: string,
    private readonly bounds: readonly number[],
    private readonly onFirstObservation: (series: HistogramSeries) => void,
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    // prom-client throws for these; a latency that is not a number is dropped instead of failing a call.
    if (!Number.isFinite(value)) return;
    const { bounds } = this;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.counts[i]! += 1;
        break;
      }
    }
    this.sum += value;
    this.count += 1;
    if (!this.observed) {
      this.observed = true;
      this.onFirstObservation(this);
    }
  }

  clear(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
    this.observed = false;
  }
}
