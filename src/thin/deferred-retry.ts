// The timer that retries deletions deferred while their device was busy (Docker's driver: every
// 30 s). It never keeps the process alive, runs one retry at a time, and stops with the device set.
import { OptionError } from './errors.js';

export const DEFERRED_DELETE_INTERVAL_MS = 30_000;
/** The longest delay setInterval takes (a signed 32-bit millisecond count). */
const TIMER_MAX_MS = 2 ** 31 - 1;

/** A retry interval in ms, checked before anything is made: 0 (off) to setInterval's limit. */
export function checkRetryInterval(ms: number | undefined): number {
  const v = ms ?? DEFERRED_DELETE_INTERVAL_MS;
  // A longer delay would silently become 1 ms.
  if (!Number.isSafeInteger(v) || v < 0 || v > TIMER_MAX_MS) {
    throw new OptionError('deferredDeleteIntervalMs', String(v), `not a whole number of milliseconds from 0 to ${TIMER_MAX_MS}`);
  }
  return v;
}

export class RetryTimer {
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  /** `due` says whether a retry is wanted now; `retry` queues it; `onError` gets what it threw. */
  constructor(
    private readonly due: () => boolean,
    private readonly retry: () => Promise<void>,
    private readonly onError: (e: unknown) => void,
  ) {}

  start(intervalMs: number): void {
    if (intervalMs === 0) return;
    this.timer = setInterval(() => {
      if (this.running || !this.due()) return;
      this.running = true;
      this.retry()
        .catch(this.onError)
        .finally(() => {
          this.running = false;
        });
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
