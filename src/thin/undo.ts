// All-or-nothing set-up: each step that makes something (a folder, a file, a dm device, a thin id)
// records how to take it away again; on failure they run in reverse order, so what a failed
// `open` made is gone and what was there before is untouched.
import { rmdirSync, unlinkSync } from 'node:fs';
import { errnoOf } from './errors.js';

interface Step {
  what: string;
  undo: () => unknown;
}

export class Undo {
  private readonly steps: Step[] = [];

  /** Record how to take back `what` (a short description for the error when that fails too). */
  push(what: string, undo: () => unknown): void {
    this.steps.push({ what, undo });
  }

  /** Forget every step: what was made is kept. */
  commit(): void {
    this.steps.length = 0;
  }

  /** Take everything back, newest first; returns what could not be taken back and why. */
  async run(): Promise<string[]> {
    const failed: string[] = [];
    for (const s of this.steps.splice(0).reverse()) {
      try {
        await s.undo();
      } catch (e) {
        failed.push(`${s.what}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    return failed;
  }

  /** Run and attach what stayed to `err` (as `leftBehind`, and in its message), then return it. */
  async unwind(err: unknown): Promise<unknown> {
    const failed = await this.run();
    if (failed.length > 0 && err instanceof Error) {
      Object.assign(err, { leftBehind: failed });
      err.message += ` (and could not remove: ${failed.join('; ')})`;
    }
    return err;
  }

  /** An empty folder we made: rmdir (never recursive: anything in it is not ours to delete). */
  dir(path: string): void {
    this.push(`folder ${path}`, () => rmdirSync(path));
  }

  /** A file we made. */
  file(path: string): void {
    this.push(`file ${path}`, () => {
      try {
        unlinkSync(path);
      } catch (e) {
        if (errnoOf(e) !== 'ENOENT') throw e;
      }
    });
  }
}
