// All-or-nothing set-up: each step that makes something (a folder, a file, a dm device, a thin id)
// records how to take it away again; on failure they run in reverse order, so what a failed
// `open` made is gone and what was there before is untouched.
import { existsSync, mkdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { errnoOf } from './errors.js';
import { fsyncDir } from './metadata-store.js';

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

/**
 * mkdir -p that returns the folders it made (outermost first) and fails with the errno. Node's
 * recursive mkdirSync spins forever where a parent exists but refuses children with ENOENT (procfs).
 * The parent of each folder made is fsynced: a folder is durable only once its entry is.
 */
export function makeDirs(path: string, mode = 0o700): string[] {
  const missing: string[] = [];
  for (let p = resolve(path); !existsSync(p); p = dirname(p)) missing.unshift(p);
  const made: string[] = [];
  for (const p of missing) {
    try {
      mkdirSync(p, { mode });
      made.push(p);
      fsyncDir(dirname(p));
    } catch (e) {
      if (errnoOf(e) !== 'EEXIST') throw e; // made by someone else meanwhile: not ours
    }
  }
  return made;
}
