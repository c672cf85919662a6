// One process per home folder. Node has no flock(2) and only src/ioctl may bind libc, so the lock
// is a pid file created atomically: the content is written to a private temp file first and then
// hard-linked to the lock path (link(2) fails with EEXIST if the lock exists), so a lock file is
// never seen half-written. A lock whose holder is gone (no such pid, or the pid was reused: its
// start time in /proc/<pid>/stat differs) is stale and is broken by renaming it away; only one
// breaker can rename a given file, and the breaker checks that what it renamed is what it judged
// stale.
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { PoolLockedError } from './errors.js';

interface Holder {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot); '' where /proc is missing. */
  start: string;
}

function startTimeOf(pid: number): string | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // comm (field 2) may hold spaces and parens: count fields after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return rest[19] ?? '';
}

function alive(h: Holder): boolean {
  try {
    process.kill(h.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const start = startTimeOf(h.pid);
  return start === null || h.start === '' || start === h.start;
}

function parse(text: string): Holder | null {
  const m = /^(\d+) ?(\d*)\n?$/.exec(text);
  if (!m) return null;
  return { pid: Number(m[1]), start: m[2] ?? '' };
}

function readHolder(path: string): { text: string; holder: Holder | null } | null {
  try {
    const text = readFileSync(path, 'utf8');
    return { text, holder: parse(text) };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

export class HomeLock {
  private released = false;
  private constructor(
    readonly path: string,
    private readonly content: string,
  ) {}

  /** Take the lock or throw PoolLockedError naming the live holder. */
  static acquire(path: string): HomeLock {
    const content = `${process.pid} ${startTimeOf(process.pid) ?? ''}\n`;
    const tmp = `${path}.${process.pid}-${randomBytes(4).toString('hex')}`;
    writeFileSync(tmp, content, { flag: 'wx', mode: 0o600 });
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          linkSync(tmp, path);
          return new HomeLock(path, content);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        }
        const seen = readHolder(path);
        if (seen === null) continue; // released meanwhile
        if (seen.holder && alive(seen.holder)) throw new PoolLockedError(path, seen.holder.pid);
        breakStale(path, seen.text);
      }
      const seen = readHolder(path);
      throw new PoolLockedError(path, seen?.holder?.pid ?? 0);
    } finally {
      unlinkSync(tmp);
    }
  }

  /** The holder recorded in a lock file, if any and alive. */
  static holder(path: string): number | null {
    const seen = readHolder(path);
    return seen?.holder && alive(seen.holder) ? seen.holder.pid : null;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    const seen = readHolder(this.path);
    if (seen?.text === this.content) unlinkSync(this.path);
  }
}

function breakStale(path: string, staleText: string): void {
  const aside = `${path}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    renameSync(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // another breaker won
    throw e;
  }
  const moved = readFileSync(aside, 'utf8');
  if (moved !== staleText) {
    // A fresh lock replaced the stale one between our read and rename: put it back.
    try {
      linkSync(aside, path);
    } catch {
      // a third process holds the path now; the fresh holder keeps a lock file it no longer owns
    }
  }
  unlinkSync(aside);
}
