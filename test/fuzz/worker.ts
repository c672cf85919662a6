// The worker thread of main.ts: runs the properties it is given, one after another, ticking a shared
// counter before every case so that the main thread can tell a hang from slow progress.
import { parentPort, workerData } from 'node:worker_threads';
import { PROPERTIES } from './properties.js';
import { runProperty } from './run.js';

export interface WorkerJob {
  /** [property index, cases] in order. */
  jobs: [number, number][];
  seed?: number;
  caseMs: number;
  /** Int32Array over a SharedArrayBuffer: [cases started]. */
  beat: SharedArrayBuffer;
}

export type WorkerMessage = { type: 'begin'; index: number } | { type: 'done'; index: number; result: ReturnType<typeof runProperty> };

const job = workerData as WorkerJob;
const beat = new Int32Array(job.beat);
for (const [index, cases] of job.jobs) {
  parentPort!.postMessage({ type: 'begin', index } satisfies WorkerMessage);
  const result = runProperty(PROPERTIES[index]!, {
    cases,
    caseMs: job.caseMs,
    beat: () => Atomics.add(beat, 0, 1),
    ...(job.seed !== undefined ? { seed: job.seed } : {}),
  });
  parentPort!.postMessage({ type: 'done', index, result } satisfies WorkerMessage);
}
