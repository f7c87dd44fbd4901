import { ConfigHolder } from './config/config-holder';
import { loadConfigDirectory } from './config/load';
import { ConfigWatcher } from './config/watcher';
import { ReloadHostLoader, reloadHeapMb } from './config/reload-host-loader';
import { Limiter } from './limiter/limiter';
import type { Logger } from './logging/logger';
import { InstrumentedStore } from './metrics/instrumented-store';
import { SluiceMetrics } from './metrics/metrics';
import { metricsRoute, rlconfigRoute } from './server/debug-routes';
import { HealthState } from './server/health';
import { jsonRoute } from './server/json-route';
import { MIN_CALLS_PER_CONNECTION } from './server/call-budget';
import { startGrpcServer } from './server/grpc-server';
import { TlsReloader } from './server/tls-reloader';
import { healthcheckRoute, indexRoute, startHttpServer } from './server/http-server';
import { RlsService } from './service/rate-limit-service';
import { type Settings, describeStore } from './settings/settings';
import type { CounterStore } from './store/counter-store';
import { MemoryStore } from './store/memory/memory-store';
import { createRedisStore } from './store/redis/redis-store';
import { OverLimitCacheStore } from './store/over-limit-cache-store';
import { ResilientStore } from './store/resilient-store';
import { type Clock, systemClock } from './util/clock';

/** A started sluice: the bound ports and a way to stop it. */
export interface RunningSluice {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly debugPort: number;
  readonly health: HealthState;
  readonly metrics: SluiceMetrics;
  /** The fields of the startup line (ports, store, config, ...), for a cluster primary to repeat. */
  readonly startup: Readonly<Record<string, unknown>>;
  /** Re-reads the config directory now, as a file change would (the watcher does this by itself). */
  reloadConfig(): Promise<boolean>;
  /** Stops taking calls, lets in-flight ones finish (up to the grace period), closes everything. */
  stop(): Promise<void>;
}

export interface AppDependencies {
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Overrides the store chosen from settings (tests). */
  readonly store?: CounterStore;
  /**
   * The compiled entry of the config reload host; default: the one beside the compiled app.
   * Tests that run the TypeScript sources point it at the dist/ build.
   */
  readonly configReloadScript?: string;
  /**
   * Start the config reload host on the first reload rather than at start. For sluice run inside
   * another program of hundreds of MB (the in-process tests): starting a process copies the page
   * tables of the one that starts it (measured: 50-80 ms more per start in a 1 GB jest process).
   */
  readonly lazyReloadHost?: boolean;
  /**
   * Set when this app is one of several node:cluster workers (WORKERS > 1): its startup line
   * then says `sluice worker started` (the primary writes the one `sluice started` line), and
   * /metrics answers the view across workers that `metricsText` gives.
   */
  readonly worker?: { readonly id: number; readonly metricsText: () => Promise<string> };
}

/**
 * The composition root: the only place that picks implementations and wires the layers
 * (config → limiter → store; service; servers). Throws ConfigError if the initial config is bad,
 * so a broken deployment fails loudly at start instead of serving without limits.
 */
export async function startSluice(settings: Settings, deps: AppDependencies): Promise<RunningSluice> {
  const { logger } = deps;
  const clock = deps.clock ?? systemClock;

  const metrics = new SluiceMetrics({
    nearLimitRatio: settings.nearLimitRatio,
    detailedMetricMaxValues: settings.detailedMetricMaxValues,
    chargeRejectedHits: settings.chargeRejectedHits,
  });
  const configs = new ConfigHolder();
  const limits = settings.configLimits;
  // Start-up reads on this thread: nothing is being answered yet, and a bad config must fail the
  // start. Reloads run in the reload host, a process beside this one (ReloadHostLoader).
  const config = loadConfigDirectory(settings.configDir, {
    ignoreDotFiles: settings.ignoreDotFiles,
    mergeDomainConfig: settings.mergeDomainConfig,
    limits,
  });
  configs.set(config);
  metrics.configLoaded(config);
  const loader = new ReloadHostLoader({
    request: {
      dir: settings.configDir,
      ignoreDotFiles: settings.ignoreDotFiles,
      mergeDomainConfig: settings.mergeDomainConfig,
      limits,
    },
    heapMb: reloadHeapMb(limits.maxFileBytes),
    timeoutMs: settings.configReloadTimeoutMs,
    script: deps.configReloadScript,
  });
  // Now, while this process is small: starting a process copies the page tables of its heap.
  if (deps.lazyReloadHost !== true) loader.start();
  const watcher = new ConfigWatcher({
    dir: settings.configDir,
    watchRoot: settings.watchRoot,
    ignoreDotFiles: settings.ignoreDotFiles,
    loader,
    debounceMs: settings.configReloadDebounceMs,
    holder: configs,
    logger: logger.child({ module: 'config-watcher' }),
    listener: {
      onReloadSuccess: (loaded) => metrics.configLoaded(loaded),
      onReloadError: () => metrics.configLoadFailed(),
    },
  });

  const health = new HealthState();
  const { store, description: storeDescription } = buildStore(settings, deps, clock, health, metrics);
  const limiter = new Limiter(store, {
    chargeRejectedHits: settings.chargeRejectedHits,
    keyPrefix: settings.cacheKeyPrefix,
  });
  const service = new RlsService(configs, limiter, {
    shadowMode: settings.shadowMode,
    ...(settings.responseHeaders !== undefined && { responseHeaders: settings.responseHeaders }),
    metrics,
    maxDescriptorsInFlight: settings.maxDescriptorsInFlight,
    caps: {
      maxDescriptors: settings.maxDescriptors,
      maxEntries: settings.maxEntries,
      maxKeyLength: settings.maxKeyLength,
      maxValueLength: settings.maxValueLength,
      maxHitsAddend: settings.maxHitsAddend,
    },
  });

  health.setConfigLoaded(true);

  // Whatever started is undone if a later step fails (a port in use): an open Redis connection
  // or a bound server would otherwise keep a process that failed to start alive.
  const undo: (() => Promise<void>)[] = [() => store.close(), () => watcher.close(), () => Promise.resolve(loader.close())];
  const tlsReloader =
    settings.grpcTls !== undefined && settings.grpcTls.reloadIntervalMs > 0
      ? new TlsReloader({
          files: settings.grpcTls.files,
          initial: settings.grpcTls,
          intervalMs: settings.grpcTls.reloadIntervalMs,
          logger: logger.child({ module: 'grpc-tls' }),
        })
      : undefined;
  if (tlsReloader !== undefined) undo.push(() => Promise.resolve(tlsReloader.close()));
  const started = async <T>(step: Promise<T>, close: (value: T) => Promise<void>): Promise<T> => {
    try {
      const value = await step;
      undo.unshift(() => close(value));
      return value;
    } catch (err) {
      for (const action of undo) await action().catch(() => undefined);
      throw err;
    }
  };
  const grpc = await started(
    startGrpcServer({
      service,
      health,
      host: settings.grpcHost,
      port: settings.grpcPort,
      logger,
      maxReceiveMessageLength: settings.grpcMaxReceiveMessageBytes,
      streamResetLimit: settings.grpcStreamResetLimit,
      ...(settings.grpcMaxConcurrentStreams > 0 && { maxConcurrentStreams: settings.grpcMaxConcurrentStreams }),
      ...(settings.maxCallsInFlight > 0 && {
        callBudget: {
          total: settings.maxCallsInFlight,
          minPerConnection: MIN_CALLS_PER_CONNECTION,
          ...(settings.grpcMaxConcurrentStreams > 0 && { maxPerConnection: settings.grpcMaxConcurrentStreams }),
        },
      }),
      tls: settings.grpcTls,
      tlsReloader,
      maxConnectionAgeMs: settings.grpcMaxConnectionAgeMs,
      maxConnectionAgeGraceMs: settings.grpcMaxConnectionAgeGraceMs,
      transport: settings.grpcTransport,
    }),
    (server) => server.shutdown(0),
  );
  const http = await started(
    startHttpServer({
      host: settings.host,
      port: settings.port,
      routes: {
        '/healthcheck': healthcheckRoute(health),
        '/json': jsonRoute(service, logger, settings.grpcMaxReceiveMessageBytes),
      },
      logger,
    }),
    (server) => server.close(),
  );
  const debug = await started(
    startHttpServer({
      host: settings.debugHost,
      port: settings.debugPort,
      routes: {
        '/': indexRoute({
          '/': 'this index',
          '/rlconfig': 'print out the currently loaded configuration for debugging',
          '/metrics': 'Prometheus metrics',
        }),
        '/rlconfig': rlconfigRoute(configs),
        '/metrics': metricsRoute(
          deps.worker === undefined ? metrics : { text: deps.worker.metricsText, contentType: metrics.contentType },
        ),
      },
      logger,
    }),
    (server) => server.close(),
  );

  const startup = {
    grpcPort: grpc.port,
    httpPort: http.port,
    debugPort: debug.port,
    store: storeDescription,
    ...(settings.redis !== undefined && deps.store === undefined && {
      storeFailureMode: settings.storeFailureMode,
      storeTimeoutMs: settings.storeTimeoutMs,
      clock: settings.clockSource,
    }),
    configDir: settings.configDir,
    // How edits reach a running sluice: a swap of the RUNTIME_ROOT symlink, or any change in the directory.
    configReload: settings.watchRoot === undefined ? 'directory changes' : `RUNTIME_ROOT swap (${settings.watchRoot})`,
    domains: config.domains(),
    limits: config.rules().length,
    grpcTls: settings.grpcTls === undefined ? 'off' : settings.grpcTls.clientCa === undefined ? 'tls' : 'mtls',
    // Node < 22.10 cannot raise it: a client cancelling over 1,000 calls on a connection within
    // about 30 s (Envoy, at its timeout, when sluice is slow) then gets the connection closed.
    streamResetLimit: grpc.streamResetLimitApplied ? settings.grpcStreamResetLimit : 'node default (1000, then 33/s): needs Node >= 22.10',
    // Shared among connections through grpc-js's servers; 'not applied' if a grpc-js upgrade hid them.
    maxCallsInFlight: settings.maxCallsInFlight === 0 ? 'no limit' : grpc.callBudgetApplied ? settings.maxCallsInFlight : 'not applied',
    // The lean transport reaches grpc-js's servers too; if a grpc-js upgrade hid them, grpc-js serves all.
    grpcTransport: settings.grpcTransport === grpc.transport ? grpc.transport : `${grpc.transport} (lean not applied: grpc-js's HTTP/2 servers not found)`,
  };
  logger.info(startup, deps.worker === undefined ? 'sluice started' : 'sluice worker started');
  watcher.start();

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      health.setDraining(true);
      logger.info('sluice draining');
      await watcher.close();
      loader.close();
      tlsReloader?.close();
      await grpc.shutdown(settings.shutdownGraceMs);
      await Promise.all([http.close(), debug.close()]);
      await store.close();
      logger.info('sluice stopped');
    })();
    return stopping;
  };

  return {
    grpcPort: grpc.port,
    httpPort: http.port,
    debugPort: debug.port,
    health,
    metrics,
    startup,
    reloadConfig: async () => (await watcher.reloadNow()).ok,
    stop,
  };
}

/**
 * The counter store the settings ask for, with health wired to it.
 *
 * No REDIS_URL: the memory store, always ready. REDIS_URL: the Redis store behind the resilient
 * layer (deadlines, circuit breaker, failure policy, a local limiter on the app's clock for
 * `local` rules). The Redis store connects in the background, so a Redis that is down at start
 * neither crashes nor blocks startup: health says NOT_SERVING and calls are answered per the
 * failure policy until it is up. Calls that arrive before the first connection has a verdict
 * wait for it (up to their deadline), so a healthy start answers none from the policy.
 */
function buildStore(
  settings: Settings,
  deps: AppDependencies,
  clock: Clock,
  health: HealthState,
  metrics: SluiceMetrics,
): { store: CounterStore; description: string } {
  // LOCAL_CACHE_SIZE_IN_BYTES / LOCAL_CACHE_MAX_ENTRIES: the over-limit cache, outside the
  // instrumented store (whose metrics then count only real store calls) and, for Redis, inside
  // the resilient layer (so answers of the failure policy are never cached as rejections).
  const cached = (store: CounterStore): CounterStore =>
    settings.localCacheSizeInBytes > 0 || settings.localCacheMaxEntries > 0
      ? new OverLimitCacheStore(store, {
          clock,
          maxBytes: settings.localCacheSizeInBytes,
          maxEntries: settings.localCacheMaxEntries,
          recorder: {
            overLimitCacheHit: () => metrics.overLimitCacheHit(),
            overLimitCacheEntries: (entries) => metrics.overLimitCacheEntriesSet(entries),
          },
        })
      : store;
  if (deps.store !== undefined) {
    health.setStoreOk(true);
    return { store: cached(new InstrumentedStore(deps.store, metrics)), description: 'custom' };
  }
  if (settings.redis === undefined) {
    health.setStoreOk(true);
    const memory = new MemoryStore(clock, {
      maxBytes: settings.memoryStoreMaxBytes,
      onEvict: (hits) => metrics.memoryStoreEvicted(hits),
    });
    metrics.memoryStoreStats(() => memory.stats());
    return { store: cached(new InstrumentedStore(memory, metrics)), description: describeStore(undefined) };
  }
  const redis = createRedisStore(
    {
      ...settings.redis,
      // CLOCK=redis (the default) leaves time to Redis TIME: one clock for every replica.
      ...(settings.clockSource === 'local' && { clock }),
    },
    deps.logger,
  );
  const store = new ResilientStore({
    // Instrumented inside the resilient layer: latency and errors of the real Redis calls.
    primary: cached(new InstrumentedStore(redis, metrics)),
    availability: redis,
    local: new MemoryStore(clock, { maxBytes: settings.memoryStoreMaxBytes, onEvict: (hits) => metrics.memoryStoreEvicted(hits) }),
    defaultFailureMode: settings.storeFailureMode,
    breaker: { failureThreshold: settings.storeBreakerFailures, cooldownMs: settings.storeBreakerCooldownMs },
    // Deadlines and cooldowns are real time, whatever clock the windows use.
    clock: systemClock,
    logger: deps.logger.child({ module: 'resilient-store' }),
  });
  health.setStoreOk(store.isAvailable());
  store.onAvailabilityChange((available) => health.setStoreOk(available));
  metrics.breaker(store.breakerState());
  store.onStateChange((state) => metrics.breakerTransition(state));
  return { store, description: describeStore(settings.redis) };
}
