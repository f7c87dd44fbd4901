import { performance } from 'node:perf_hooks';

/** How busy this process's event loop is: the share of the time it ran code instead of waiting for I/O. */
export interface LoopUtilization {
  /** Utilization, 0 to 1, since the previous call (or since creation). */
  sinceLastSample(): number;
}

/** Node's own measure (`performance.eventLoopUtilization`), which costs a few hundred ns a call. */
export function systemLoopUtilization(): LoopUtilization {
  let last = performance.eventLoopUtilization();
  return {
    sinceLastSample(): number {
      const now = performance.eventLoopUtilization();
      const { utilization } = performance.eventLoopUtilization(now, last);
      last = now;
      return utilization;
    },
  };
}
