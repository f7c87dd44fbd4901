import { AggregatorRegistry, Histogram, Registry } from 'prom-client';
import { FastHistogram } from '../../../src/metrics/fast-histogram';

/** FastHistogram against a plain prom-client Histogram fed the same observations, as scrapes and the cluster aggregation read them. */

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const VALUES = [0, 0.0001, 0.0005, 0.0007, 0.001, 0.003, 0.02, 0.2, 1, 2.5, 2.6, 100];

function pair(): { fast: FastHistogram<'result'>; plain: Histogram<'result'>; fastRegistry: Registry; plainRegistry: Registry } {
  const fastRegistry = new Registry();
  const plainRegistry = new Registry();
  const config = { name: 'x_seconds', help: 'latency' };
  const fast = new FastHistogram({ ...config, labelName: 'result', buckets: BUCKETS, registers: [fastRegistry] });
  const plain = new Histogram({ ...config, labelNames: ['result'], buckets: BUCKETS, registers: [plainRegistry] });
  return { fast, plain, fastRegistry, plainRegistry };
}

describe('FastHistogram', () => {
  test('exposes what a prom-client Histogram exposes for the same observations: text, JSON, cluster aggregate', async () => {
    const { fast, plain, fastRegistry, plainRegistry } = pair();
    const ok = fast.series('ok');
    VALUES.forEach((value, i) => {
      const result = i % 3 === 0 ? 'error' : 'ok';
      if (result === 'ok') ok.observe(value);
      else fast.observe({ result }, value);
      plain.observe({ result }, value);
    });
    expect(await fastRegistry.metrics()).toBe(await plainRegistry.metrics());
    const fastJson = await fastRegistry.getMetricsAsJSON();
    const plainJson = await plainRegistry.getMetricsAsJSON();
    expect(fastJson).toEqual(plainJson);
    // Two workers' worth, as the primary aggregates them.
    const aggregate = (json: typeof fastJson): Promise<string> => AggregatorRegistry.aggregate([json, json]).metrics();
    expect(await aggregate(fastJson)).toBe(await aggregate(plainJson));
  });

  test('a series appears at its first observation and goes at reset, as prom-client does', async () => {
    const { fast, plain, fastRegistry, plainRegistry } = pair();
    const kept = fast.series('ok');
    expect(await fastRegistry.metrics()).toBe(await plainRegistry.metrics());
    kept.observe(0.003);
    plain.observe({ result: 'ok' }, 0.003);
    expect(await fastRegistry.metrics()).toBe(await plainRegistry.metrics());
    fastRegistry.resetMetrics();
    plainRegistry.resetMetrics();
    expect(await fastRegistry.metrics()).toBe(await plainRegistry.metrics());
    kept.observe(0.2);
    plain.observe({ result: 'ok' }, 0.2);
    expect(await fastRegistry.metrics()).toBe(await plainRegistry.metrics());
  });

  test('drops a value that is not a finite number instead of throwing', async () => {
    const { fast, fastRegistry } = pair();
    fast.series('ok').observe(Number.NaN);
    fast.series('ok').observe(Infinity);
    expect(await fastRegistry.metrics()).not.toMatch(/x_seconds_count/);
  });
});
