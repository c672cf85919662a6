// Detaching: LOOP_CLR_FD, but only on a device bound to the file the caller expects, checked by
// the backing file's st_dev/st_ino from LOOP_GET_STATUS64. The number alone is not enough: after a
// detach by someone else, the same /dev/loopN may already back another process's file.
import { LOOP_CLR_FD } from '../structs/loop.js';
import { O_RDONLY, SysError, libcTransport, log, logIoctl, sysClose, sysOpen, O_CLOEXEC, type Transport } from '../ioctl/index.js';
import { fileIdentity, getStatus64, loopDevice, releaseLoop, type LoopDevice, type LoopOptions, type LoopRef } from './device.js';

/** The device is bound to another file than the one the caller expected: not ours to detach. */
export class LoopNotOursError extends Error {
  override name = 'LoopNotOursError';
  readonly code = 'EPERM';
  constructor(
    readonly device: string,
    reason: string,
  ) {
    super(`refusing to detach ${device}: ${reason}`);
  }
}

export interface DetachOptions extends LoopOptions {
  /** Detach only if the device is bound to this file (same st_dev and st_ino). */
  expectBackingFile?: string;
  /** Detach whatever the device is bound to (for an operator's explicit `loop detach /dev/loopN`). */
  force?: boolean;
}

/** LOOP_CLR_FD on an open fd. The kernel detaches at once, or on the last close if others hold it open. */
export function clrFd(t: Transport, fd: number, dev: LoopDevice): void {
  const r = t.ioctl(fd, LOOP_CLR_FD, 0);
  logIoctl('LOOP_CLR_FD', dev.path, r);
  if (r.ret === -1) throw new SysError('LOOP_CLR_FD', r.errno, dev.path, `LOOP_CLR_FD ${dev.path}`);
}

/**
 * Detaches a loop device we bound: one from attachLoop/findLoopByFile (its `backing` identity is
 * checked), or any with `expectBackingFile`; a bare path or number needs `force`. Closes the fd
 * that attachLoop kept, if any.
 */
export async function detachLoop(ref: LoopRef, opts: DetachOptions = {}): Promise<void> {
  const t = opts.transport ?? libcTransport;
  const dev = loopDevice(ref);
  const expected = opts.expectBackingFile
    ? { ...fileIdentity(opts.expectBackingFile), label: opts.expectBackingFile }
    : dev.backing
      ? { ...dev.backing, label: `dev ${dev.backing.dev} inode ${dev.backing.inode}` }
      : undefined;
  if (!expected && !opts.force) {
    throw new LoopNotOursError(dev.path, 'no backing file to check it against (give expectBackingFile, or force)');
  }
  const fd = dev.fd ?? sysOpen(dev.path, O_RDONLY | O_CLOEXEC);
  try {
    if (expected) {
      const info = getStatus64(t, fd, dev);
      if (info.lo_device !== expected.dev || info.lo_inode !== expected.inode) {
        throw new LoopNotOursError(
          dev.path,
          `it is bound to ${info.lo_file_name || '(no name)'} (dev ${info.lo_device} inode ${info.lo_inode}), not to ${expected.label}`,
        );
      }
    }
    clrFd(t, fd, dev);
    log.debug('loop detached', { device: dev.path });
  } finally {
    // A kept fd (attach with autoclear/keepOpen) came from `ref`: release it there.
    if (typeof ref === 'object' && ref.fd !== undefined) releaseLoop(ref);
    else sysClose(fd);
  }
}
