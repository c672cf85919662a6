// `npm run fuzz`: the property list of properties.ts at scale (10^6 cases by default, split by
// weight), in a worker thread with a bounded heap. Fails (exit 1) when a decoder throws anything but
// its typed error, when one case runs over --case-ms (the worker times itself), when no case
// finishes for --hang-ms (the main thread's watchdog ends the worker: a hang), when the worker runs
// out of its --heap-mb heap, or when the process's peak RSS passes --max-rss-mb. Prints cases/s per
// decoder and in all, and the peak RSS.
//
//   npm run fuzz -- [--cases N] [--only TEXT] [--seed N] [--case-ms MS] [--hang-ms MS] [--heap-mb MB] [--max-rss-mb MB]
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { PROPERTIES, shares } from './properties.js';
import type { RunResult } from './run.js';
import type { WorkerJob, WorkerMessage } from './worker.js';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '1000000' },
    only: { type: 'string' },
    seed: { type: 'string' },
    'case-ms': { type: 'string', default: '1000' },
    'hang-ms': { type: 'string', default: '15000' },
    'heap-mb': { type: 'string', default: '512' },
    'max-rss-mb': { type: 'string', default: '1536' },
  },
});
const total = Number(values.cases);
const caseMs = Number(values['case-ms']);
const hangMs = Number(values['hang-ms']);
const heapMb = Number(values['heap-mb']);
const maxRssMb = Number(values['max-rss-mb']);
const seed = values.seed === undefined ? undefined : Number(values.seed);

const n = shares(total);
const pending: [number, number][] = PROPERTIES.map((_p, i) => [i, n[i]!] as [number, number]).filter(
  ([i]) => values.only === undefined || `${PROPERTIES[i]!.decoder} ${PROPERTIES[i]!.cases}`.includes(values.only),
);

interface Outcome {
  index: number;
  result?: RunResult;
  failure?: string;
  peakRssMb: number;
}
const outcomes: Outcome[] = [];
const rssMb = () => process.memoryUsage.rss() / 2 ** 20;

/** Runs `jobs` in one worker; resolves with the jobs it did not get to (after a hang or a crash). */
function runWorker(jobs: [number, number][]): Promise<[number, number][]> {
  const beat = new SharedArrayBuffer(4);
  const beats = new Int32Array(beat);
  const data: WorkerJob = { jobs, caseMs, beat, ...(seed !== undefined ? { seed } : {}) };
  // A worker thread does not inherit tsx's loader: it registers it, then loads worker.ts.
  const entry = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((t) => { t.register(); return import(${JSON.stringify(new URL('./worker.ts', import.meta.url).href)}); })`;
  const worker = new Worker(entry, {
    eval: true,
    workerData: data,
    resourceLimits: { maxOldGenerationSizeMb: heapMb },
  });
  let current: Outcome | undefined;
  let lastBeat = -1;
  let lastChange = performance.now();
  return new Promise((resolve) => {
    const rest = (): [number, number][] => jobs.filter(([i]) => !outcomes.some((o) => o.index === i));
    const end = (failure: string | undefined) => {
      clearInterval(watch);
      // A worker that died before its first property began: charge the failure to that property.
      if (!current && failure && rest().length === jobs.length) current = { index: jobs[0]![0], peakRssMb: rssMb() };
      if (current && failure) {
        current.failure = failure;
        outcomes.push(current);
        current = undefined;
      }
      resolve(rest());
    };
    const watch = setInterval(() => {
      if (current) current.peakRssMb = Math.max(current.peakRssMb, rssMb());
      const b = Atomics.load(beats, 0);
      if (b !== lastBeat) {
        lastBeat = b;
        lastChange = performance.now();
      } else if (current && performance.now() - lastChange > hangMs) {
        void worker.terminate();
        end(`hang: case ${b} of this property ran over ${hangMs} ms (replay with --only and --seed; fast-check skips to it with its path)`);
      }
    }, 100);
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'begin') {
        current = { index: m.index, peakRssMb: rssMb() };
        Atomics.store(beats, 0, 0);
        lastBeat = 0;
        lastChange = performance.now();
        process.stdout.write(`  ${PROPERTIES[m.index]!.decoder}: ${PROPERTIES[m.index]!.cases} ...\n`);
      } else if (current) {
        current.result = m.result;
        if (m.result.failure) current.failure = m.result.failure;
        current.peakRssMb = Math.max(current.peakRssMb, rssMb());
        outcomes.push(current);
        current = undefined;
      }
    });
    worker.on('error', (e) => end(`the worker died: ${(e as Error & { code?: string }).code ?? ''} ${e.message}`));
    worker.on('exit', () => end(undefined));
  });
}

const t0 = performance.now();
let queue = pending;
while (queue.length > 0) queue = await runWorker(queue);
const wallS = (performance.now() - t0) / 1000;

// Per decoder: cases, time, cases/s, slowest case, peak RSS while it ran.
const byDecoder = new Map<string, { cases: number; ms: number; slowest: number; rss: number; failed: number }>();
for (const o of outcomes) {
  const d = PROPERTIES[o.index]!.decoder;
  const row = byDecoder.get(d) ?? { cases: 0, ms: 0, slowest: 0, rss: 0, failed: 0 };
  row.cases += o.result?.cases ?? 0;
  row.ms += o.result?.ms ?? 0;
  row.slowest = Math.max(row.slowest, o.result?.slowestMs ?? 0);
  row.rss = Math.max(row.rss, o.peakRssMb);
  if (o.failure) row.failed++;
  byDecoder.set(d, row);
}
const pad = (s: string, w: number) => s.padEnd(w);
const num = (v: number, w: number) => String(Math.round(v)).padStart(w);
const width = Math.max(...[...byDecoder.keys()].map((k) => k.length), 8);
const lines = [`${pad('decoder', width)}    cases  seconds  cases/s  slowest-ms  peak-rss-MB`];
let cases = 0;
for (const [d, r] of byDecoder) {
  cases += r.cases;
  lines.push(
    `${pad(d, width)} ${num(r.cases, 8)} ${(r.ms / 1000).toFixed(1).padStart(8)} ${num(r.cases / (r.ms / 1000), 8)} ${r.slowest.toFixed(1).padStart(11)} ${num(r.rss, 12)}${r.failed ? '  FAILED' : ''}`,
  );
}
const peakRssMb = process.resourceUsage().maxRSS / 1024;
lines.push(`${pad('total', width)} ${num(cases, 8)} ${wallS.toFixed(1).padStart(8)} ${num(cases / wallS, 8)}`);
lines.push(
  `peak RSS ${peakRssMb.toFixed(0)} MB (bound ${maxRssMb} MB); worker heap bound ${heapMb} MB; case bound ${caseMs} ms; hang bound ${hangMs} ms`,
);
process.stdout.write(`${lines.join('\n')}\n`);

const failures = outcomes.filter((o) => o.failure);
for (const o of failures) process.stdout.write(`\nFAILED ${PROPERTIES[o.index]!.decoder} (${PROPERTIES[o.index]!.cases}):\n${o.failure}\n`);
const short = values.only === undefined && cases < total * 0.99;
if (short) process.stdout.write(`\nonly ${cases} of ${total} cases ran\n`);
if (peakRssMb > maxRssMb) process.stdout.write(`\npeak RSS ${peakRssMb.toFixed(0)} MB is over ${maxRssMb} MB\n`);
process.exitCode = failures.length > 0 || short || peakRssMb > maxRssMb ? 1 : 0;
