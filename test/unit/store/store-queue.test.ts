import { StoreQueue } from '../../../src/store/store-queue';
import { ManualClock } from '../../../src/util/clock';
import type { LoopUtilization } from '../../../src/util/loop-utilization';

/** An event loop as busy as `utilization` says, in every window. */
class SetLoop implements LoopUtilization {
  constructor(public utilization: number) {}

  sinceLastSample(): number {
    return this.utilization;
  }
}

describe('StoreQueue', () => {
  let clock: ManualClock;
  let queue: StoreQueue;
  let loop: SetLoop;

  beforeEach(() => {
    clock = new ManualClock(1_000_000);
    loop = new SetLoop(0.3);
    queue = new StoreQueue(clock, loop);
  });

  it('predicts no wait before it has seen the store saturated, whatever is queued', () => {
    queue.sent(10_000);
    expect(queue.waiting()).toBe(10_000);
    expect(queue.predictedWaitMs(4)).toBe(0);
  });

  it('learns the throughput from windows in which the store always had work, and predicts the wait from it', () => {
    // 1,000 checks queued; the store answers 100 checks every 5 ms (20 per ms), never running dry.
    queue.sent(1_000);
    for (let i = 0; i < 8; i++) {
      clock.advance(5);
      queue.answered(100);
    }
    expect(queue.waiting()).toBe(200);
    // 200 waiting plus the call's 4, at 20 checks per ms.
    expect(queue.predictedWaitMs(4)).toBeCloseTo(204 / 20, 5);
  });

  it('does not learn from a short queue: there the store only gets through what arrives', () => {
    // A trickle: 4 checks at a time, answered 30 ms later, the queue never above 4.
    for (let i = 0; i < 10; i++) {
      queue.sent(4);
      clock.advance(30);
      queue.answered(4);
    }
    queue.sent(5_000);
    expect(queue.predictedWaitMs(4)).toBe(0);
  });

  it('does not learn from a window with a stall in it (a frozen store that resumes, a blocked event loop)', () => {
    queue.sent(1_000);
    // Frozen for 2 s, then everything answered at once.
    clock.advance(2_000);
    queue.answered(100);
    for (let i = 0; i < 9; i++) queue.answered(100);
    expect(queue.predictedWaitMs(4)).toBe(0);
    // A slow window (few checks answered) teaches nothing either.
    queue.sent(1_000);
    clock.advance(30);
    queue.answered(4);
    expect(queue.predictedWaitMs(4)).toBe(0);
  });

  it('predicts nothing while the queue is short, even with a known throughput', () => {
    queue.sent(1_000);
    for (let i = 0; i < 8; i++) {
      clock.advance(5);
      queue.answered(100);
    }
    queue.answered(190);
    expect(queue.waiting()).toBe(10);
    expect(queue.predictedWaitMs(4)).toBe(0);
  });

  it("sheds nothing while sluice's own event loop is the bottleneck, and again once it is not", () => {
    const saturatedWindows = (): void => {
      queue.sent(1_000);
      for (let i = 0; i < 8; i++) {
        clock.advance(5);
        queue.answered(100);
      }
    };
    saturatedWindows();
    expect(queue.predictedWaitMs(4)).toBeCloseTo(204 / 20, 5);
    // Answers now wait in sluice, which is busy reading and answering calls: no prediction.
    loop.utilization = 0.95;
    saturatedWindows();
    expect(queue.waiting()).toBeGreaterThanOrEqual(64);
    expect(queue.predictedWaitMs(4)).toBe(0);
    loop.utilization = 0.5;
    saturatedWindows();
    expect(queue.predictedWaitMs(4)).toBeGreaterThan(0);
  });
});
