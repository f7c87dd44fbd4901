import { describeCounterStore } from '../../conformance/counter-store.suite';
import { type RedisCluster, type RedisServer, startRedisCluster, startRedisServer } from '../../support/redis-server';
import { availableStore, clusterOptions, singleOptions } from './helpers';

/**
 * The store contract, with the same exact numbers as the memory store, on a single Redis and on a
 * three-master cluster (where the suite's keys carry no hash tag and so spread over slots: the
 * all-or-nothing cases then go through the cross-slot charge-and-refund path).
 */

let server: RedisServer;
let cluster: RedisCluster;

beforeAll(async () => {
  [server, cluster] = await Promise.all([startRedisServer(), startRedisCluster(3)]);
});

afterAll(async () => {
  await Promise.all([server?.stop(), cluster?.stop()]);
});

describeCounterStore('redis single', (clock) => availableStore(singleOptions(server), clock));
describeCounterStore('redis cluster', (clock) => availableStore(clusterOptions(cluster), clock));
