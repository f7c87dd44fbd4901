/**
 * Reads Prometheus exposition text into `name{label="v",...}` → value, labels in the order the
 * registry writes them (prom-client keeps the order they were given in).
 */
export function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}

/** The value of one series, 0 when absent (a counter never incremented). */
export function metricValue(values: Map<string, number>, series: string): number {
  return values.get(series) ?? 0;
}

/** Every series of one metric name, for assertions on the whole family. */
export function family(values: Map<string, number>, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [series, value] of values) {
    if (series === name || series.startsWith(`${name}{`)) out[series] = value;
  }
  return out;
}
