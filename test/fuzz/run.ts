// Runs one property of properties.ts for a number of cases. Each case has a time bound: a case
// slower than `caseMs` fails the property like a wrong answer (fast-check then shrinks it), so
// quadratic blow-ups are caught; a case that never returns cannot be stopped from its own thread,
// which is what the watchdog in main.ts is for (`beat` tells it the worker is alive).
import fc from 'fast-check';
import type { FuzzProperty } from './properties.js';

export interface RunOptions {
  cases: number;
  seed?: number;
  /** Wall-clock bound of one case, in ms. */
  caseMs: number;
  /** Called before every case. */
  beat?: () => void;
}

export interface RunResult {
  cases: number;
  ms: number;
  seed: number;
  /** Slowest case, in ms. */
  slowestMs: number;
  /** fast-check's report (counterexample, seed, path), when the property failed. */
  failure?: string;
}

export function runProperty(p: FuzzProperty, o: RunOptions): RunResult {
  let slowestMs = 0;
  const arb = p.arbitrary();
  p.setUp?.();
  const t0 = performance.now();
  let details: fc.RunDetails<[unknown]>;
  try {
    details = fc.check(
      fc.property(arb, (input) => {
        o.beat?.();
        const start = performance.now();
        p.run(input);
        const ms = performance.now() - start;
        if (ms > slowestMs) slowestMs = ms;
        if (ms > o.caseMs) throw new Error(`one case took ${ms.toFixed(0)} ms (bound ${o.caseMs} ms)`);
      }),
      { numRuns: o.cases, ...(o.seed !== undefined ? { seed: o.seed } : {}) },
    );
  } finally {
    p.tearDown?.();
  }
  const ms = performance.now() - t0;
  const result: RunResult = { cases: details.numRuns, ms, seed: details.seed, slowestMs };
  if (details.failed) {
    const cause =
      details.errorInstance instanceof Error && details.errorInstance.cause instanceof Error ? details.errorInstance.cause : undefined;
    // A counterexample can be a megabyte of bytes: keep the report readable.
    const report = fc.defaultReportMessage(details) ?? 'failed';
    const short = report.length > 4000 ? `${report.slice(0, 4000)}... (${report.length} characters)` : report;
    result.failure = `${short}${cause?.stack ? `\ncause: ${cause.stack}` : ''}`;
  }
  return result;
}
