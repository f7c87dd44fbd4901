/**
 * A timeout that fires only after the I/O that has already arrived has been handled.
 *
 * Node runs expired timers before it reads sockets in each turn of the event loop. After the loop
 * was busy (a GC pause, a burst of requests), a plain timer would declare a store call timed out
 * although its reply sits unread in the socket buffer — and under load that turns into a storm of
 * false timeouts and an open circuit breaker. Deferring the callback with `setImmediate` (the
 * "check" phase, after "poll") lets such replies settle first, so only a reply that really did
 * not arrive in time counts as late.
 *
 * Returns a function that cancels the timeout.
 */
export function setIoFairTimeout(callback: () => void, ms: number): () => void {
  let immediate: NodeJS.Immediate | undefined;
  const timer = setTimeout(() => {
    immediate = setImmediate(callback);
  }, ms);
  return () => {
    clearTimeout(timer);
    if (immediate !== undefined) clearImmediate(immediate);
  };
}
