// One process per home folder: an exclusive flock(2) on <home>/lock, held for the DeviceSet's
// lifetime. The kernel drops it when the process dies however it dies, so there is no stale lock to
// detect or break. The file also records "<pid> <start time>" of the holder, only so that a refused
// process can say who holds the home; the lock itself is the flock, never the file's content.
// Before it is taken, the home must be safe to act in (checkHomeFolders), and the lock file is
// opened without following a symlink and truncated only once it is known to be our own plain file.
import {
  closeSync,
  constants as fsConstants,
  fstatSync,
  ftruncateSync,
  openSync,
  readFileSync,
  readSync,
  type Stats,
  statSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN, sysFlock } from '../ioctl/libc.js';
import { errnoOf, PoolLockedError, UnsafeHomeError } from './errors.js';

/**
 * How long a refused acquire waits for the holder's record to name a live process: the holder
 * writes it just after taking the lock, and HomeLock.holder() probes with a brief shared lock.
 */
const SETTLE_MS = 500;
const SETTLE_STEP_MS = 10;

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

/** The whole file from offset 0 (positional: the fd's offset is never moved, so rereads work). */
function readRecord(fd: number): string {
  const buf = Buffer.alloc(Math.min(fstatSync(fd).size, 64));
  return buf.subarray(0, readSync(fd, buf, 0, buf.length, 0)).toString('utf8');
}

/** The recorded holder, if the record names a live process (same pid and start time). */
function liveHolder(fd: number): Holder | null {
  const m = /^(\d+) ?(\d*)\n?$/.exec(readRecord(fd));
  if (!m) return null;
  const h = { pid: Number(m[1]), start: m[2] ?? '' };
  try {
    process.kill(h.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return null;
  }
  const start = startTimeOf(h.pid);
  return start === null || h.start === '' || start === h.start ? h : null;
}

/** flock with LOCK_NB: true if taken, false if someone else holds a conflicting lock. */
function tryFlock(fd: number, operation: number): boolean {
  try {
    sysFlock(fd, operation | LOCK_NB);
    return true;
  } catch (e) {
    if ((e as { code?: string }).code === 'EAGAIN') return false;
    throw e;
  }
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

const octal = (mode: number): string => `0${(mode & 0o7777).toString(8)}`;

/** Our uid; a platform without one (no getuid) has no owners to check. */
const ourUid = (): number | undefined => process.geteuid?.();

/**
 * Refuse to act in a home another user could tamper with, as Docker and containerd check their
 * roots: `home`, `home/devicemapper` and `home/metadata` (those that exist; the symlinks followed)
 * must each be a directory owned by our effective uid with neither the group nor the others write
 * bit (mode & 0o022). Whoever can write there could swap the loop files, the metadata or the lock.
 */
export function checkHomeFolders(home: string): void {
  const uid = ourUid();
  for (const path of [home, join(home, 'devicemapper'), join(home, 'metadata')]) {
    let st: Stats;
    try {
      st = statSync(path);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT' && path !== home) continue;
      throw e;
    }
    if (!st.isDirectory()) throw new UnsafeHomeError(path, 'EINVAL', 'not a directory');
    if (uid !== undefined && st.uid !== uid)
      throw new UnsafeHomeError(path, 'EPERM', `owned by uid ${st.uid}, not by us (uid ${uid}); the pool's home must be ours`);
    if ((st.mode & 0o022) !== 0)
      throw new UnsafeHomeError(path, 'EPERM', `mode ${octal(st.mode)} lets group or others write to it; chmod go-w ${path}`);
  }
}

/** The lock file must be our own plain file: not a fifo or device, not hard-linked to another name. */
function checkLockFile(path: string, fd: number): void {
  const st = fstatSync(fd);
  const uid = ourUid();
  if (!st.isFile()) throw new UnsafeHomeError(path, 'EINVAL', 'the lock is not a regular file');
  if (st.nlink !== 1) throw new UnsafeHomeError(path, 'EINVAL', `the lock file has ${st.nlink} links; it must have one`);
  if (uid !== undefined && st.uid !== uid) throw new UnsafeHomeError(path, 'EPERM', `the lock file is owned by uid ${st.uid}, not by us`);
}

/** open(2) the lock file with O_NOFOLLOW (and O_NONBLOCK: a fifo in its place must not hang us). */
function openLockFile(path: string, flags: number, mode?: number): number {
  try {
    return openSync(path, flags | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK, mode);
  } catch (e) {
    if (errnoOf(e) === 'ELOOP') throw new UnsafeHomeError(path, 'ELOOP', 'the lock is a symlink; it must be a plain file');
    throw e;
  }
}

export class HomeLock {
  private fd: number | null;
  private constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
  }

  /**
   * Take the lock or throw PoolLockedError naming the holder. A second acquire in the same process
   * is refused too: each acquire opens its own file description, and flock locks belong to those.
   */
  static acquire(path: string): HomeLock {
    // Node opens with O_CLOEXEC: mkfs and other children never inherit (and so never keep) the lock.
    const fd = openLockFile(path, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o600);
    try {
      checkLockFile(path, fd);
      let holder: Holder | null = null;
      for (let waited = 0; ; waited += SETTLE_STEP_MS) {
        if (tryFlock(fd, LOCK_EX)) {
          const content = `${process.pid} ${startTimeOf(process.pid) ?? ''}\n`;
          ftruncateSync(fd, 0);
          writeSync(fd, content, 0);
          return new HomeLock(path, fd);
        }
        holder = liveHolder(fd);
        // Held, but the record is not (yet) a live process: the holder is between flock and
        // write, or a holder() probe holds it for a moment. Look again shortly.
        if (holder !== null || waited >= SETTLE_MS) break;
        sleepMs(SETTLE_STEP_MS);
      }
      throw new PoolLockedError(path, holder?.pid ?? 0);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /**
   * The pid of the process holding the lock at `path`, or null if nobody does. Probes with a
   * momentary shared lock (an acquire racing with it waits it out, see SETTLE_MS).
   */
  static holder(path: string): number | null {
    let fd: number;
    try {
      fd = openLockFile(path, fsConstants.O_RDONLY);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    try {
      checkLockFile(path, fd);
      if (tryFlock(fd, LOCK_SH)) {
        sysFlock(fd, LOCK_UN);
        return null;
      }
      return liveHolder(fd)?.pid ?? 0;
    } finally {
      closeSync(fd);
    }
  }

  release(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    try {
      // Still locked: clear the record so nobody reads our pid after we are gone. The file stays;
      // unlinking it would let a waiter lock the old inode while a newcomer creates a new one.
      ftruncateSync(fd, 0);
    } finally {
      closeSync(fd); // the last fd of the description: the kernel drops the flock
    }
  }
}
