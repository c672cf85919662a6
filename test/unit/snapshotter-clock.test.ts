// clockRealtimeNs: clock_gettime(CLOCK_REALTIME) through libc, in nanoseconds. It must be the same
// clock as Date.now() (containerd compares its own time.Now() with our times), and finer.
import { describe, expect, it } from 'vitest';
import { clockRealtimeNs } from '../../src/ioctl/index.js';

describe('clockRealtimeNs', () => {
  it('lies between two Date.now() readings, to the millisecond', () => {
    for (let i = 0; i < 100; i++) {
      const before = BigInt(Date.now());
      const ns = clockRealtimeNs();
      const after = BigInt(Date.now());
      expect(ns / 1_000_000n >= before && ns / 1_000_000n <= after, `${before} <= ${ns} ns <= ${after}`).toBe(true);
    }
  });

  it('has sub-millisecond precision and never goes back between readings', () => {
    const samples = Array.from({ length: 200 }, () => clockRealtimeNs());
    for (let i = 1; i < samples.length; i++) expect(samples[i]! >= samples[i - 1]!).toBe(true);
    // Readings that are whole milliseconds all 200 times would be a ms clock.
    expect(samples.some((ns) => ns % 1_000_000n !== 0n)).toBe(true);
    expect(new Set(samples).size).toBeGreaterThan(1);
  });
});
