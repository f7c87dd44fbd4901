import * as fs from 'node:fs';
import type { RedisCost } from './redis-cost';
import type { ReplayResult } from './replay';
import type { Trace, TraceLimit } from './traces';

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const pct = (part: number, whole: number, digits = 2): string => (whole === 0 ? '–' : `${((100 * part) / whole).toFixed(digits)} %`);
const signedPct = (part: number, whole: number): string => {
  const value = (100 * (part - whole)) / whole;
  return `${value >= 0 ? '+' : '−'}${Math.abs(value).toFixed(2)} %`;
};

/** The accuracy table: every contender on every trace. */
export function accuracyTable(traces: readonly Trace[], results: readonly ReplayResult[], { limit, windowMs }: TraceLimit): string {
  const lines = [
    `Limit: ${limit} hits per ${windowMs / 1000} s window; every request is 1 hit. Ground truth: the exact count of what each`,
    'algorithm admitted in the trailing window (t − window, t]. Rates are shares of all requests (decisions).',
    '',
    '| trace | algorithm | requests | admitted (vs exact) | over-admitted | worst window | under-admitted | worst room at a rejection |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const trace of traces) {
    for (const r of results.filter((x) => x.trace === trace.name)) {
      lines.push(
        `| ${trace.name} | ${r.contender} | ${int(r.requests)} | ${int(r.admitted)} (${signedPct(r.admitted, r.exactAdmitted)}) | ` +
          `${int(r.overAdmitted)} (${pct(r.overAdmitted, r.requests)}) | ${int(r.worstWindow)} (${(r.worstWindow / limit).toFixed(2)}×) | ` +
          `${int(r.underAdmitted)} (${pct(r.underAdmitted, r.requests)}) | ${r.worstRoom === 0 ? '–' : `${pct(r.worstRoom, limit, 0)} of the limit`} |`,
      );
    }
  }
  lines.push('', 'Traces (seeded, replayed at simulated time):', '');
  for (const trace of traces) lines.push(`- **${trace.name}**: ${trace.description}.`);
  return lines.join('\n');
}

const BANDS: readonly [number, number][] = [
  [0.1, 0.5],
  [0.5, 0.8],
  [0.8, 1.25],
  [1.25, 2],
  [2, 3],
];

/** Over- and under-admission by offered rate, for the traces that draw one rate per identity. */
export function bandTable(trace: Trace, results: readonly ReplayResult[]): string {
  const rates = trace.rates;
  if (rates === undefined) return '';
  const lines = [
    `By offered rate (× the limit), ${trace.name} trace — over-admitted / under-admitted, as shares of that band's requests:`,
    '',
    `| algorithm | ${BANDS.map(([a, b]) => `${a}–${b}×`).join(' | ')} |`,
    `| --- | ${BANDS.map(() => '---:').join(' | ')} |`,
  ];
  for (const r of results.filter((x) => x.trace === trace.name)) {
    const cells = BANDS.map(([low, high]) => {
      let requests = 0;
      let over = 0;
      let under = 0;
      for (let id = 0; id < rates.length; id++) {
        const rate = rates[id]!;
        if (rate < low || rate >= high) continue;
        requests += r.byIdentity.requests[id]!;
        over += r.byIdentity.over[id]!;
        under += r.byIdentity.under[id]!;
      }
      return `${pct(over, requests)} / ${pct(under, requests)}`;
    });
    lines.push(`| ${r.contender} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

export function redisTables(cost: RedisCost): string {
  const lines = [
    `Redis ${cost.redisVersion}, loopback, no persistence; keys like \`${'sluice:v3:{…}:sliding_window:60000:oauth2:client_id=…:user_id=…'}\` (${cost.keyLength} characters).`,
    'CPU: `usec_per_call` of EVALSHA in `INFO commandstats` (server time only) over every decision of the run, limit 100 a minute;',
    'light = 2,000 identities × 10 requests 1 s apart (all admitted), heavy = 500 identities × 150 requests 100 ms apart (logs',
    'of 100 entries, the last third mostly rejected), 21 sub-windows = 500 identities × 62 requests 1 s apart. Time is injected',
    '(a ManualClock) unless the row says Redis TIME.',
    '',
    '| run | checks per call | decisions | admitted | Redis CPU per decision |',
    '| --- | ---: | ---: | ---: | ---: |',
  ];
  for (const row of cost.cpu) {
    lines.push(`| ${row.label} | ${row.checks} | ${int(row.decisions)} | ${pct(row.admitted, 1, 0)} | ${row.usecPerCall.toFixed(1)} µs |`);
  }
  lines.push(
    '',
    'Memory: `MEMORY USAGE <key> SAMPLES 0` of one identity\'s counter, and `used_memory` with all counters minus without',
    'them (FLUSHALL), divided by the identities: what a key really costs, keyspace and expiry dictionaries included.',
    '',
    '| counter | MEMORY USAGE | amortised per identity |',
    '| --- | ---: | ---: |',
  );
  for (const row of cost.memory) {
    lines.push(`| ${row.label} | ${int(row.keyBytes)} B | ${int(row.amortisedBytes)} B (over ${int(row.identities)}) |`);
  }
  return lines.join('\n');
}

/**
 * Replaces the text between `<!-- <name>:begin -->` and `<!-- <name>:end -->` in a file; the
 * markers stay. Throws when the markers are missing, so a broken doc is noticed.
 */
export function replaceBetweenMarkers(file: string, name: string, body: string): void {
  const text = fs.readFileSync(file, 'utf8');
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const from = text.indexOf(begin);
  const to = text.indexOf(end);
  if (from < 0 || to < from) throw new Error(`${file}: markers ${begin} … ${end} not found`);
  fs.writeFileSync(file, `${text.slice(0, from + begin.length)}\n${body}\n${text.slice(to)}`);
}
