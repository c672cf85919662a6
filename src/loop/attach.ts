// Binding a file to a free loop device: LOOP_CTL_GET_FREE, then LOOP_CONFIGURE (one call that sets
// fd, status and block size), or on kernels before 5.8 LOOP_SET_FD + LOOP_SET_STATUS64 +
// LOOP_SET_BLOCK_SIZE. Another process can take the free device between GET_FREE and the bind;
// the bind then fails with EBUSY and we ask for another.
import { realpathSync } from 'node:fs';
import {
  LOOP_CONFIGURE,
  LOOP_CTL_GET_FREE,
  LOOP_SET_BLOCK_SIZE,
  LOOP_SET_DIRECT_IO,
  LOOP_SET_FD,
  LOOP_SET_STATUS64,
  LOOP_SET_STATUS_SETTABLE_FLAGS,
  LoFlag,
  encodeLoopConfig,
  encodeLoopInfo64,
  truncateLoFileName,
  type LoopInfo64,
} from '../structs/loop.js';
import {
  Errno,
  O_CLOEXEC,
  O_RDONLY,
  O_RDWR,
  SysError,
  libcTransport,
  log,
  logIoctl,
  sysClose,
  sysOpen,
  type IoctlArg,
  type Transport,
} from '../ioctl/index.js';
import { fileIdentity, getStatus64, loopDevice, type LoopDevice, type LoopOptions } from './device.js';
import { clrFd } from './detach.js';

export const LOOP_CONTROL_PATH = '/dev/loop-control';

export interface AttachOptions extends LoopOptions {
  readOnly?: boolean;
  /**
   * Detach on the last close. The device then lives only while someone holds it open, so
   * attachLoop keeps its fd open in the result (`fd`): close it with releaseLoop once the device's
   * user (a dm table, a mount) holds it.
   */
  autoclear?: boolean;
  /** Bypass the page cache for the backing file; fails on file systems without O_DIRECT (tmpfs). */
  directIo?: boolean;
  /** Logical block size: a power of two from 512 (the default) to the page size. */
  blockSizeBytes?: number;
  offsetBytes?: bigint;
  /** 0 or absent: up to the end of the file. */
  sizeLimitBytes?: bigint;
  partscan?: boolean;
  /** Keep the device's fd open in the result even without autoclear. */
  keepOpen?: boolean;
  /** How many free devices to try when other processes keep taking them (default 32). */
  maxAttempts?: number;
}

function check(r: { ret: number; errno: number }, call: string, dev: LoopDevice, file: string): number {
  if (r.ret === -1) throw new SysError(call, r.errno, dev.path, `${call} ${dev.path} (${file})`);
  return r.ret;
}

function validate(opts: AttachOptions): void {
  const bs = opts.blockSizeBytes;
  if (bs !== undefined && bs !== 0 && (!Number.isInteger(bs) || bs < 512 || (bs & (bs - 1)) !== 0)) {
    throw new SysError('LOOP_CONFIGURE', Errno.EINVAL, undefined, `blockSizeBytes ${bs} is not a power of two >= 512`);
  }
  for (const key of ['offsetBytes', 'sizeLimitBytes'] as const) {
    const v = opts[key];
    if (v !== undefined && v < 0n) throw new SysError('LOOP_CONFIGURE', Errno.EINVAL, undefined, `${key} ${v} is negative`);
  }
}

/** Attaches `file` to a free loop device and returns it (with the backing file's identity). */
export async function attachLoop(file: string, opts: AttachOptions = {}): Promise<LoopDevice> {
  validate(opts);
  const t = opts.transport ?? libcTransport;
  const path = realpathSync(file);
  const mode = opts.readOnly ? O_RDONLY : O_RDWR;
  const maxAttempts = opts.maxAttempts ?? 32;
  const fileFd = sysOpen(path, mode | O_CLOEXEC);
  try {
    const backing = fileIdentity(path);
    const ctl = sysOpen(LOOP_CONTROL_PATH, O_RDWR | O_CLOEXEC);
    try {
      for (let attempt = 1; ; attempt++) {
        const free = t.ioctl(ctl, LOOP_CTL_GET_FREE, 0);
        logIoctl('LOOP_CTL_GET_FREE', LOOP_CONTROL_PATH, free);
        if (free.ret === -1) throw new SysError('LOOP_CTL_GET_FREE', free.errno, LOOP_CONTROL_PATH);
        const dev = loopDevice(free.ret);
        const loopFd = sysOpen(dev.path, mode | O_CLOEXEC);
        let keep = false;
        try {
          if (bind(t, loopFd, fileFd, dev, path, opts)) {
            try {
              if (opts.directIo) enableDirectIo(t, loopFd, dev, path);
            } catch (err) {
              clrFd(t, loopFd, dev); // we bound it: undo
              throw err;
            }
            dev.backing = backing;
            log.debug('loop attached', {
              device: dev.path,
              file: path,
              read_only: opts.readOnly === true,
              autoclear: opts.autoclear === true,
            });
            if (opts.autoclear || opts.keepOpen) {
              dev.fd = loopFd;
              keep = true;
            }
            return dev;
          }
        } finally {
          if (!keep) sysClose(loopFd);
        }
        if (attempt >= maxAttempts) {
          throw new SysError(
            'LOOP_CONFIGURE',
            Errno.EBUSY,
            path,
            `attach ${path}: other processes took all of ${attempt} free loop devices offered`,
          );
        }
        // Lost the race for this device: yield, then ask for another.
        log.debug('loop device taken by another process: retrying', { device: dev.path, file: path, attempt });
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      sysClose(ctl);
    }
  } finally {
    sysClose(fileFd);
  }
}

/** Binds and configures; false when the device was taken meanwhile (EBUSY). */
function bind(t: Transport, loopFd: number, fileFd: number, dev: LoopDevice, path: string, opts: AttachOptions): boolean {
  let flags = 0;
  if (opts.readOnly) flags |= LoFlag.LO_FLAGS_READ_ONLY;
  if (opts.autoclear) flags |= LoFlag.LO_FLAGS_AUTOCLEAR;
  if (opts.partscan) flags |= LoFlag.LO_FLAGS_PARTSCAN;
  if (opts.directIo) flags |= LoFlag.LO_FLAGS_DIRECT_IO;
  const info: Partial<LoopInfo64> = {
    lo_flags: flags,
    lo_offset: opts.offsetBytes ?? 0n,
    lo_sizelimit: opts.sizeLimitBytes ?? 0n,
    lo_file_name: truncateLoFileName(path),
  };
  const config = encodeLoopConfig({ fd: fileFd, block_size: opts.blockSizeBytes ?? 0, info });
  const r = t.ioctl(loopFd, LOOP_CONFIGURE, config);
  logIoctl('LOOP_CONFIGURE', dev.path, r);
  if (r.ret !== -1) return true;
  if (r.errno === Errno.EBUSY) return false;
  // Kernels before 5.8 do not know LOOP_CONFIGURE (EINVAL from the loop driver, ENOTTY elsewhere).
  if (r.errno !== Errno.EINVAL && r.errno !== Errno.ENOTTY) check(r, 'LOOP_CONFIGURE', dev, path);

  const set = t.ioctl(loopFd, LOOP_SET_FD, fileFd);
  logIoctl('LOOP_SET_FD', dev.path, set);
  if (set.ret === -1 && set.errno === Errno.EBUSY) return false;
  check(set, 'LOOP_SET_FD', dev, path);
  try {
    // LOOP_SET_STATUS64 may set only autoclear and partscan; read-only came from the fds' modes,
    // direct I/O is set after.
    const status = encodeLoopInfo64({ ...info, lo_flags: flags & LOOP_SET_STATUS_SETTABLE_FLAGS });
    call(t, loopFd, LOOP_SET_STATUS64, status, 'LOOP_SET_STATUS64', dev, path);
    if (opts.blockSizeBytes) call(t, loopFd, LOOP_SET_BLOCK_SIZE, opts.blockSizeBytes, 'LOOP_SET_BLOCK_SIZE', dev, path);
  } catch (err) {
    clrFd(t, loopFd, dev);
    throw err;
  }
  return true;
}

function call(t: Transport, fd: number, request: number, arg: IoctlArg, name: string, dev: LoopDevice, path: string): void {
  const r = t.ioctl(fd, request, arg);
  logIoctl(name, dev.path, r);
  check(r, name, dev, path);
}

/**
 * The kernel drops LO_FLAGS_DIRECT_IO silently when the backing file cannot do it; ask explicitly,
 * so that the caller learns it (EINVAL on tmpfs) instead of running buffered unawares.
 */
function enableDirectIo(t: Transport, loopFd: number, dev: LoopDevice, path: string): void {
  if (getStatus64(t, loopFd, dev).lo_flags & LoFlag.LO_FLAGS_DIRECT_IO) return;
  const r = t.ioctl(loopFd, LOOP_SET_DIRECT_IO, 1);
  logIoctl('LOOP_SET_DIRECT_IO', dev.path, r);
  if (r.ret === -1) {
    throw new SysError(
      'LOOP_SET_DIRECT_IO',
      r.errno,
      dev.path,
      `LOOP_SET_DIRECT_IO ${dev.path}: direct I/O on ${path} refused (its file system may lack O_DIRECT, as tmpfs does, or the offset/block size is not aligned)`,
    );
  }
}
