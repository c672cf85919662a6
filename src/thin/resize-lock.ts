// One resize of a pool at a time, machine-wide: an exclusive flock(2) on
// /run/devmapper/<pool name>.resize.lock. Keyed by the pool's dm name, not by its home, because a
// process that resizes from the kernel's view alone (`pool monitor` beside the process holding the
// home) knows the pool's name and nothing else. The kernel drops the lock when its holder dies.
import { closeSync, constants as fsConstants, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DeviceName } from '../dm/names.js';
import { LOCK_EX, LOCK_NB, sysFlock } from '../ioctl/libc.js';
import { errnoOf } from './errors.js';

/** Where the resize locks live: a tmpfs on every systemd host, so no lock outlives a reboot. */
export const RESIZE_LOCK_DIR = '/run/devmapper';

/** How long a resize waits for another one of the same pool before giving up. */
const WAIT_MS = 60_000;
/** Polled with LOCK_NB: a blocking flock(2) would stall the whole event loop of a daemon. */
const POLL_MS = 20;

/** Another resize of the same pool held the lock for longer than we waited. */
export class ResizeLockedError extends Error {
  override readonly name = 'ResizeLockedError';
  readonly code = 'EWOULDBLOCK';
  constructor(
    readonly poolName: DeviceName,
    readonly lockPath: string,
    /** The holder's pid as its record says (0: unknown). */
    readonly holderPid: number,
  ) {
    super(`pool ${poolName}: another resize${holderPid ? ` (process ${holderPid})` : ''} still holds ${lockPath}`);
  }
}

export function resizeLockPath(poolName: DeviceName, dir = RESIZE_LOCK_DIR): string {
  return join(dir, `${poolName}.resize.lock`);
}

/** Runs `fn` holding the pool's resize lock (waiting up to WAIT_MS for it); PoolLockedError past that. */
export async function withResizeLock<T>(poolName: DeviceName, fn: () => Promise<T>, dir = RESIZE_LOCK_DIR): Promise<T> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = resizeLockPath(poolName, dir);
  // O_NOFOLLOW: a symlink planted in its place is refused, never followed. Node adds O_CLOEXEC.
  const fd = openSync(path, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW, 0o600);
  try {
    for (let waited = 0; ; waited += POLL_MS) {
      try {
        sysFlock(fd, LOCK_EX | LOCK_NB);
        break;
      } catch (e) {
        if (errnoOf(e) !== 'EAGAIN') throw e;
        if (waited >= WAIT_MS) throw new ResizeLockedError(poolName, path, holderOf(path));
        await sleep(POLL_MS);
      }
    }
    // Only for whoever looks at the file: the lock is the flock, never this content.
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
    return await fn();
  } finally {
    closeSync(fd); // the last fd of the description: the kernel drops the flock
  }
}

function holderOf(path: string): number {
  try {
    return Number(/^(\d+)\n$/.exec(readFileSync(path, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}
