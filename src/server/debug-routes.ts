import type * as http from 'node:http';
import type { LimitRule, RateLimitConfig } from '../config/types';
import type { RouteHandler } from './http-server';

function sendText(res: http.ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * One `/rlconfig` line, the reference's format first so its tooling still parses it:
 * `<domain>.<path>: unit=MINUTE requests_per_unit=3, shadow_mode: false, quota_mode: false`,
 * then sluice's own fields: `, algorithm: sliding_window, unit_multiplier: 1` (and `, name: <n>`
 * for a named limit). An unlimited rule reads `unit=UNKNOWN requests_per_unit=0, …, unlimited: true`.
 */
export function rlconfigLine(rule: LimitRule): string {
  const limit = rule.limit;
  const head =
    `${rule.id}: unit=${limit?.unit ?? 'UNKNOWN'} requests_per_unit=${limit?.requestsPerUnit ?? 0}, ` +
    `shadow_mode: ${rule.shadowMode}, quota_mode: ${rule.quotaMode}`;
  const extras = [
    ...(limit !== undefined ? [`algorithm: ${limit.algorithm}`, `unit_multiplier: ${limit.unitMultiplier}`] : ['unlimited: true']),
    ...(rule.name !== undefined ? [`name: ${rule.name}`] : []),
  ];
  return `${head}, ${extras.join(', ')}`;
}

/** `GET /rlconfig` on the debug port: every loaded limit, one line each, in file order. */
export function rlconfigRoute(configs: { current(): RateLimitConfig | undefined }): RouteHandler {
  return (_req, res) => {
    const config = configs.current();
    const body = (config?.rules() ?? []).map((rule) => `${rlconfigLine(rule)}\n`).join('');
    sendText(res, 200, body);
  };
}

/** `GET /metrics` on the debug port: the Prometheus exposition text. */
export function metricsRoute(metrics: { text(): Promise<string>; readonly contentType: string }): RouteHandler {
  return async (_req, res) => {
    sendText(res, 200, await metrics.text(), metrics.contentType);
  };
}
