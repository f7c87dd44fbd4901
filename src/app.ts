import { ConfigHolder } from './config/config-holder';
import { loadConfigDirectory } from './config/load';
import { Limiter } from './limiter/limiter';
import type { Logger } from './logging/logger';
import { HealthState } from './server/health';
import { startGrpcServer } from './server/grpc-server';
import { healthcheckRoute, indexRoute, startHttpServer } from './server/http-server';
import { RlsService } from './service/rate-limit-service';
import type { Settings } from './settings/settings';
import type { CounterStore } from './store/counter-store';
import { MemoryStore } from './store/memory/memory-store';
import { type Clock, systemClock } from './util/clock';

/** A started sluice: the bound ports and a way to stop it. */
export interface RunningSluice {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly debugPort: number;
  readonly health: HealthState;
  /** Stops taking calls, lets in-flight ones finish (up to the grace period), closes everything. */
  stop(): Promise<void>;
}

export interface AppDependencies {
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Overrides the store chosen from settings (tests). */
  readonly store?: CounterStore;
}

/**
 * The composition root: the only place that picks implementations and wires the layers
 * (config → limiter → store; service; servers). Throws ConfigError if the initial config is bad,
 * so a broken deployment fails loudly at start instead of serving without limits.
 */
export async function startSluice(settings: Settings, deps: AppDependencies): Promise<RunningSluice> {
  const { logger } = deps;
  const clock = deps.clock ?? systemClock;

  const configs = new ConfigHolder();
  const config = loadConfigDirectory(settings.configDir, {
    ignoreDotFiles: settings.ignoreDotFiles,
    mergeDomainConfig: settings.mergeDomainConfig,
  });
  configs.set(config);

  const store = deps.store ?? new MemoryStore(clock);
  const limiter = new Limiter(store, { chargeRejectedHits: settings.chargeRejectedHits });
  const service = new RlsService(configs, limiter, {
    shadowMode: settings.shadowMode,
    caps: {
      maxDescriptors: settings.maxDescriptors,
      maxEntries: settings.maxEntries,
      maxKeyLength: settings.maxKeyLength,
      maxValueLength: settings.maxValueLength,
      maxHitsAddend: settings.maxHitsAddend,
    },
  });

  const health = new HealthState();
  health.setConfigLoaded(true);
  health.setStoreOk(true);

  const grpc = await startGrpcServer({
    service,
    health,
    host: settings.grpcHost,
    port: settings.grpcPort,
    logger,
    maxReceiveMessageLength: settings.grpcMaxReceiveMessageBytes,
  });
  const http = await startHttpServer({
    host: settings.host,
    port: settings.port,
    routes: { '/healthcheck': healthcheckRoute(health) },
    logger,
  });
  const debug = await startHttpServer({
    host: settings.debugHost,
    port: settings.debugPort,
    routes: { '/': indexRoute({ '/': 'this index' }) },
    logger,
  });

  logger.info(
    {
      grpcPort: grpc.port,
      httpPort: http.port,
      debugPort: debug.port,
      store: deps.store ? 'custom' : 'memory',
      configDir: settings.configDir,
      domains: config.domains(),
      limits: config.rules().length,
    },
    'sluice started',
  );

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      health.setDraining(true);
      logger.info('sluice draining');
      await grpc.shutdown(settings.shutdownGraceMs);
      await Promise.all([http.close(), debug.close()]);
      await store.close();
      logger.info('sluice stopped');
    })();
    return stopping;
  };

  return { grpcPort: grpc.port, httpPort: http.port, debugPort: debug.port, health, stop };
}
