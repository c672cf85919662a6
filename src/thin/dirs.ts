// Folders that survive a power loss: a new folder is durable only once its parent is fsynced,
// and a rename or unlink only once its folder is.
import { closeSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
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
 * mkdir(2) is tried first, its parents only on ENOENT: a folder whose parent exists (a mount
 * point, a layer's rootfs) costs one mkdir; one that exists, one EEXIST (made by someone else
 * meanwhile counts the same: not ours).
 */
export function makeDirs(path: string, mode = 0o700): string[] {
  const p = resolve(path);
  const made: string[] = [];
  let r = mkdirOnce(p, mode);
  if (r instanceof Error) {
    const parent = dirname(p);
    if (parent === p) throw r;
    made.push(...makeDirs(parent, mode));
    r = mkdirOnce(p, mode);
    // The parent exists now: ENOENT again is a parent that refuses children (procfs).
    if (r instanceof Error) throw r;
  }
  if (r === 'made') {
    made.push(p);
    fsyncDir(dirname(p));
  }
  return made;
}

/** mkdir(2): 'made', 'exists' (EEXIST), or the ENOENT error (a parent is missing); others are thrown. */
function mkdirOnce(path: string, mode: number): 'made' | 'exists' | Error {
  try {
    mkdirSync(path, { mode });
    return 'made';
  } catch (e) {
    const code = errnoOf(e);
    if (code === 'EEXIST') return 'exists';
    if (code === 'ENOENT') return e as Error;
    throw e;
  }
}
