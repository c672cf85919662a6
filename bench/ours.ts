// Our library's side of P1, P2 and P4 runs in a child process that never forks. The bench process
// spawns the C programs, dmsetup and shells; each fork write-protects every page of the forking
// process, and in user-mode-linux each first write after it is a fault served by the host: our
// loops, timed in that process right after a spawn, took 2-3 faults and up to twice the time a
// cycle that they take in a process that does not fork (docs/bench.md). The C programs are timed
// in their own processes too, so both sides are measured alike.
import { fork, type ChildProcess } from 'node:child_process';
import type { OursJobs } from './ours-main.js';

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

export class OursProcess {
  private next = 0;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m: Reply) => {
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (m.ok) w?.resolve(m.result);
      else w?.reject(new Error(`bench worker: ${m.error}`));
    });
    child.on('exit', (code, signal) => {
      for (const w of this.waiting.values()) w.reject(new Error(`bench worker exited (${code ?? signal})`));
      this.waiting.clear();
    });
  }

  /**
   * Starts the worker (with this process's Node flags, e.g. tsx, and DEVMAPPER_BENCH_WORKER_FLAGS:
   * V8 flags for a diagnosis, never set by `npm run bench`) and waits until it is ready.
   */
  static async start(): Promise<OursProcess> {
    const extra = process.env.DEVMAPPER_BENCH_WORKER_FLAGS?.split(' ').filter((f) => f !== '') ?? [];
    const child = fork(new URL('./ours-main.ts', import.meta.url), [], {
      execArgv: [...process.execArgv, ...extra],
      serialization: 'advanced',
      stdio: 'inherit',
    });
    const p = new OursProcess(child);
    await p.call('ready', {});
    return p;
  }

  call<K extends keyof OursJobs>(job: K, args: Parameters<OursJobs[K]>[0]): Promise<Awaited<ReturnType<OursJobs[K]>>> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, job, args });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.disconnect();
    await exited;
  }
}
