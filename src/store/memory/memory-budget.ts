import { getHeapStatistics } from 'node:v8';

/**
 * Share of V8's heap limit the memory store's counters may take by default (MEMORY_STORE_MAX_BYTES
 * = 0). Counters are estimated, not measured, bytes (bench/memory-bytes.ts checks the estimate is
 * not below what V8 really spends); the rest of the heap is for requests in flight, gRPC buffers,
 * the config, and the room the garbage collector needs to work without thrashing.
 */
export const DEFAULT_HEAP_SHARE = 0.5;

/** The default byte budget of the memory store: a share of this process's heap limit. */
export function defaultMemoryStoreBytes(heapSizeLimit: number = getHeapStatistics().heap_size_limit): number {
  return Math.floor(heapSizeLimit * DEFAULT_HEAP_SHARE);
}
