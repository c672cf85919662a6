// Block-device queries and operations by ioctl: size, sector sizes, discard, buffer flush.
import { BLKDISCARD, BLKFLSBUF, BLKGETSIZE64, BLKPBSZGET, BLKSSZGET, decodeU32, decodeU64, encodeRange } from '../structs/blk.js';
import { type Bytes, bytes } from '../structs/units.js';
import { Errno, O_CLOEXEC, O_EXCL, O_RDONLY, O_WRONLY, SysError, libcTransport, logIoctl, sysClose, sysOpen } from '../ioctl/index.js';
import type { IoctlArg, Transport } from '../ioctl/index.js';

/** A device path (opened and closed around the call) or an fd the caller keeps. */
export type PathOrFd = string | number;

export interface BlkOptions {
  transport?: Transport;
}

function describe(target: PathOrFd): string {
  return typeof target === 'number' ? `fd ${target}` : target;
}

function withFd<T>(target: PathOrFd, flags: number, fn: (fd: number) => T): T {
  if (typeof target === 'number') return fn(target);
  const fd = sysOpen(target, flags | O_CLOEXEC);
  try {
    return fn(fd);
  } finally {
    sysClose(fd);
  }
}

function ioctl(t: Transport, fd: number, request: number, name: string, target: PathOrFd, arg: IoctlArg): void {
  const r = t.ioctl(fd, request, arg);
  logIoctl(name, typeof target === 'string' ? target : undefined, r);
  if (r.ret === -1) throw new SysError(name, r.errno, typeof target === 'string' ? target : undefined, `${name} ${describe(target)}`);
}

/** BLKGETSIZE64: the device's size in bytes. */
export function blockDeviceSizeBytes(target: PathOrFd, opts: BlkOptions = {}): Bytes {
  const out = new Uint8Array(8);
  withFd(target, O_RDONLY, (fd) => ioctl(opts.transport ?? libcTransport, fd, BLKGETSIZE64, 'BLKGETSIZE64', target, out));
  return bytes(decodeU64(out));
}

/** BLKSSZGET: the logical sector size, the unit of addressing (512 or 4096). */
export function logicalSectorSizeBytes(target: PathOrFd, opts: BlkOptions = {}): number {
  const out = new Uint8Array(4);
  withFd(target, O_RDONLY, (fd) => ioctl(opts.transport ?? libcTransport, fd, BLKSSZGET, 'BLKSSZGET', target, out));
  return decodeU32(out);
}

/** BLKPBSZGET: the physical block size, the unit the device writes atomically. */
export function physicalSectorSizeBytes(target: PathOrFd, opts: BlkOptions = {}): number {
  const out = new Uint8Array(4);
  withFd(target, O_RDONLY, (fd) => ioctl(opts.transport ?? libcTransport, fd, BLKPBSZGET, 'BLKPBSZGET', target, out));
  return decodeU32(out);
}

export interface DiscardOptions extends BlkOptions {
  /**
   * Open the path with O_EXCL: on a block device that fails with EBUSY while it is mounted or
   * claimed (a dm table, another exclusive opener), before a single block is discarded. Without it
   * the kernel discards under a mounted file system.
   */
  exclusive?: boolean;
}

/**
 * BLKDISCARD of [startBytes, startBytes + lengthBytes): the device may drop the data (a loop device
 * punches a hole in its file). Checked first against the logical sector size and the device's
 * size, so that a bad range says why rather than a bare EINVAL. Needs the device open for writing.
 */
export function discard(target: PathOrFd, startBytes: bigint, lengthBytes: bigint, opts: DiscardOptions = {}): void {
  const t = opts.transport ?? libcTransport;
  withFd(target, O_WRONLY | (opts.exclusive ? O_EXCL : 0), (fd) => {
    const sector = BigInt(logicalSectorSizeBytes(fd, opts));
    const size = blockDeviceSizeBytes(fd, opts);
    const bad = (why: string): SysError =>
      new SysError('BLKDISCARD', Errno.EINVAL, undefined, `BLKDISCARD ${describe(target)} [${startBytes}, +${lengthBytes}): ${why}`);
    if (startBytes < 0n || lengthBytes < 0n) throw bad('negative');
    if (startBytes % sector !== 0n || lengthBytes % sector !== 0n) {
      throw bad(`not aligned to the logical sector size ${sector}`);
    }
    if (startBytes + lengthBytes > size) throw bad(`beyond the end of the device (${size} bytes)`);
    if (lengthBytes === 0n) return;
    ioctl(t, fd, BLKDISCARD, 'BLKDISCARD', target, encodeRange(startBytes, lengthBytes));
  });
}

/** BLKFLSBUF: write back and drop the device's buffer cache (needs CAP_SYS_ADMIN). */
export function flushBuffers(target: PathOrFd, opts: BlkOptions = {}): void {
  withFd(target, O_RDONLY, (fd) => ioctl(opts.transport ?? libcTransport, fd, BLKFLSBUF, 'BLKFLSBUF', target, 0));
}
