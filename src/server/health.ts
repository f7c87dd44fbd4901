import { HealthImplementation } from 'grpc-health-check';
import type { ServingStatus } from 'grpc-health-check';
import type { Server, ServerWritableStream, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import { RLS_SERVICE_NAME } from './proto';

/**
 * The names `grpc.health.v1.Health/Check` answers for. `""` is what a Kubernetes gRPC probe and
 * most tools ask by default; the RLS name is what Envoy's `grpc_health_check` can name. Both are
 * registered from the start: grpc-health-check starts with an empty map, and NOT_FOUND would make
 * a probe fail for the wrong reason.
 */
// `ratelimit` is the name envoyproxy/ratelimit reports, so health checks copied from its setups keep working.
export const HEALTH_SERVICE_NAMES: readonly string[] = ['', RLS_SERVICE_NAME, 'ratelimit'];

/**
 * Readiness, from the reference service's components (config, store, sigterm). SERVING only
 * when a config is loaded, the store answers and we are not draining. Nothing is assumed ready:
 * whoever wires sluice reports each component (the memory store reports ok once, at start).
 * Feeds both the gRPC health service and HTTP `/healthcheck`, so they can never disagree.
 */
export class HealthState {
  private configLoaded = false;
  private storeOk = false;
  private draining = false;
  private readonly implementation: HealthImplementation;
  private current: ServingStatus = 'NOT_SERVING';
  /** Open `Watch` streams, each with whether it watches a name we serve: told of every change, ended at drain. */
  private readonly watches = new Map<ServerWritableStream<WatchRequest, WatchResponse>, boolean>();

  constructor() {
    this.implementation = new HealthImplementation(
      Object.fromEntries(HEALTH_SERVICE_NAMES.map((name) => [name, this.current])),
    );
  }

  setConfigLoaded(loaded: boolean): void {
    this.configLoaded = loaded;
    this.publish();
  }

  setStoreOk(ok: boolean): void {
    this.storeOk = ok;
    this.publish();
  }

  /**
   * On SIGTERM: report NOT_SERVING so traffic moves away, while calls keep being answered. Watch
   * streams get NOT_SERVING and end: an open stream would otherwise hold the shutdown for the
   * whole grace period and then break with UNAVAILABLE.
   */
  setDraining(draining: boolean): void {
    this.draining = draining;
    this.publish();
    if (draining) {
      for (const call of this.watches.keys()) call.end();
      this.watches.clear();
    }
  }

  isServing(): boolean {
    return this.notReadyReasons().length === 0;
  }

  /** What stands between us and SERVING, in words for `/healthcheck`; empty when serving. */
  notReadyReasons(): string[] {
    const reasons: string[] = [];
    if (!this.configLoaded) reasons.push('config not loaded');
    if (!this.storeOk) reasons.push('store unavailable');
    if (this.draining) reasons.push('draining');
    return reasons;
  }

  /** Adds `grpc.health.v1.Health` to a server: Check and List from grpc-health-check, Watch our own. */
  addToServer(server: Server): void {
    const withOwnWatch = {
      addService: (service: ServiceDefinition, handlers: UntypedServiceImplementation): void => {
        server.addService(service, { ...handlers, watch: (call: ServerWritableStream<WatchRequest, WatchResponse>) => this.watch(call) });
      },
    };
    this.implementation.addToServer(withOwnWatch as unknown as Server);
  }

  private watch(call: ServerWritableStream<WatchRequest, WatchResponse>): void {
    const known = HEALTH_SERVICE_NAMES.includes(call.request.service ?? '');
    call.write({ status: known ? this.current : 'SERVICE_UNKNOWN' });
    if (this.draining) {
      call.end();
      return;
    }
    // An unknown name stays open until drain, as the protocol says: it may become known later.
    this.watches.set(call, known);
    call.on('cancelled', () => this.watches.delete(call));
  }

  private publish(): void {
    const next: ServingStatus = this.isServing() ? 'SERVING' : 'NOT_SERVING';
    // Wake Watch streams only on a real change.
    if (next === this.current) return;
    this.current = next;
    for (const name of HEALTH_SERVICE_NAMES) {
      this.implementation.setStatus(name, next);
    }
    for (const [call, known] of this.watches) if (known) call.write({ status: next });
  }
}

interface WatchRequest {
  service?: string;
}

interface WatchResponse {
  status: ServingStatus | 'SERVICE_UNKNOWN';
}
