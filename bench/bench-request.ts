import type { WireRequestShape } from '../src/server/proto';

/**
 * The request every throughput bench sends: an OAuth2 API's descriptors for client `i` (per
 * client, per user of a client, per user, per route and scope), the first `descriptors` of them.
 */
export function benchRequest(descriptors: 1 | 4, i: number): WireRequestShape {
  const client = `client-${i}`;
  const user = `user-${i}`;
  const all: [string, string][][] = [
    [['client_id', client]],
    [['client_id', client], ['user_id', user]],
    [['user_id', user]],
    [['route', 'orders-read'], ['scope', 'orders:read']],
  ];
  return {
    domain: 'bench',
    descriptors: all.slice(0, descriptors).map((entries) => ({ entries: entries.map(([key, value]) => ({ key, value })) })),
  };
}
