// Folders that survive a power loss: a new folder is durable only once its parent is fsynced,
// and a rename or unlink only once its folder is.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { errnoOf } from './errors.js';

/** fsync(2) of a folder: makes the entries added, renamed or removed in it durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
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
