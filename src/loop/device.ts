// A loop device by number: its node, its status, its capacity; and the list of bound ones from
// sysfs. Listing reads sysfs only: opening a device that has LO_FLAGS_AUTOCLEAR and no other opener
// detaches it when the fd closes, so nothing here opens a device it was not asked about.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { decodeLoopInfo64, LOOP_GET_STATUS64, LOOP_INFO64_SIZE, LOOP_SET_CAPACITY, type LoopInfo64 } from '../structs/loop.js';
import {
  Errno,
  O_CLOEXEC,
  O_RDONLY,
  SysError,
  ensureNode,
  libcTransport,
  logIoctl,
  sysClose,
  sysOpen,
  type Transport,
} from '../ioctl/index.js';

export const SYS_BLOCK_DIR = '/sys/block';
export const DEV_DIR = '/dev';

export interface LoopDevice {
  /** /dev/loopN */
  path: string;
  number: number;
  major: number;
  minor: number;
  /** The backing file's st_dev and st_ino when known (attach, find): what detach checks. */
  backing?: { dev: bigint; inode: bigint };
  /** An fd kept open on the device (attach with autoclear or keepOpen); close it with releaseLoop. */
  fd?: number;
}

export interface LoopOptions {
  transport?: Transport;
}

/** A loop device given as a LoopDevice, a path `/dev/loopN`, or a number. */
export type LoopRef = LoopDevice | string | number;

function numberOf(ref: LoopRef): number {
  if (typeof ref === 'number') return ref;
  if (typeof ref !== 'string') return ref.number;
  const m = /^\/dev\/loop(\d+)$/.exec(ref);
  if (!m) throw new SysError('loop', Errno.EINVAL, ref, `${ref} is not a /dev/loopN path`);
  return Number(m[1]);
}

/**
 * The loop device `n` as the kernel registered it (/sys/block/loopN/dev), with its node in /dev
 * made if devtmpfs or udev did not (minimal hosts).
 */
export function loopDevice(ref: LoopRef): LoopDevice {
  const n = numberOf(ref);
  const name = `loop${n}`;
  let text: string;
  try {
    text = readFileSync(`${SYS_BLOCK_DIR}/${name}/dev`, 'utf8');
  } catch {
    throw new SysError('loop', Errno.ENXIO, `/dev/${name}`, `/dev/${name}: no such loop device in ${SYS_BLOCK_DIR}`);
  }
  const m = /^(\d+):(\d+)\s*$/.exec(text);
  if (!m)
    throw new SysError('loop', Errno.EIO, `${SYS_BLOCK_DIR}/${name}/dev`, `${SYS_BLOCK_DIR}/${name}/dev reads ${JSON.stringify(text)}`);
  const dev: LoopDevice = { path: `${DEV_DIR}/${name}`, number: n, major: Number(m[1]), minor: Number(m[2]) };
  ensureNode(dev.path, { type: 'block', major: dev.major, minor: dev.minor, mode: 0o660 });
  if (typeof ref === 'object') {
    if (ref.backing) dev.backing = ref.backing;
    if (ref.fd !== undefined) dev.fd = ref.fd;
  }
  return dev;
}

/** Runs `fn` with the device open (O_RDONLY suffices for every loop ioctl but binding). */
export function withLoopFd<T>(dev: LoopDevice, flags: number, fn: (fd: number) => T): T {
  const fd = sysOpen(dev.path, flags | O_CLOEXEC);
  try {
    return fn(fd);
  } finally {
    sysClose(fd);
  }
}

/** LOOP_GET_STATUS64 on an open fd; ENXIO when the device is not bound. */
export function getStatus64(t: Transport, fd: number, dev: LoopDevice): LoopInfo64 {
  const buf = new Uint8Array(LOOP_INFO64_SIZE);
  const r = t.ioctl(fd, LOOP_GET_STATUS64, buf);
  logIoctl('LOOP_GET_STATUS64', dev.path, r);
  if (r.ret === -1) throw new SysError('LOOP_GET_STATUS64', r.errno, dev.path, `LOOP_GET_STATUS64 ${dev.path}`);
  return decodeLoopInfo64(buf);
}

/** The device's loop_info64: backing file dev/inode, offset, size limit, flags, name. */
export function loopStatus(ref: LoopRef, opts: LoopOptions = {}): LoopInfo64 {
  const dev = loopDevice(ref);
  return withLoopFd(dev, O_RDONLY, (fd) => getStatus64(opts.transport ?? libcTransport, fd, dev));
}

/** LOOP_SET_CAPACITY: re-read the backing file's size (after it grew), so the device grows too. */
export function setLoopCapacity(ref: LoopRef, opts: LoopOptions = {}): void {
  const dev = loopDevice(ref);
  withLoopFd(dev, O_RDONLY, (fd) => {
    const r = (opts.transport ?? libcTransport).ioctl(fd, LOOP_SET_CAPACITY, 0);
    logIoctl('LOOP_SET_CAPACITY', dev.path, r);
    if (r.ret === -1) throw new SysError('LOOP_SET_CAPACITY', r.errno, dev.path, `LOOP_SET_CAPACITY ${dev.path}`);
  });
}

/** Closes the fd that attachLoop kept open (with autoclear, the device detaches if nothing else holds it). */
export function releaseLoop(dev: LoopDevice): void {
  if (dev.fd === undefined) return;
  const fd = dev.fd;
  delete dev.fd;
  sysClose(fd);
}

export interface BoundLoop extends LoopDevice {
  /** The backing file's path as the kernel prints it now (it follows renames; " (deleted)" if unlinked). */
  backingFile: string;
}

/** Bound loop devices, from sysfs alone (loopN/loop/ exists only while bound), by number. */
export function listLoops(): BoundLoop[] {
  const out: BoundLoop[] = [];
  for (const name of readdirSync(SYS_BLOCK_DIR)) {
    const m = /^loop(\d+)$/.exec(name);
    if (!m) continue;
    let backingFile: string;
    try {
      backingFile = readFileSync(`${SYS_BLOCK_DIR}/${name}/loop/backing_file`, 'utf8').replace(/\n$/, '');
    } catch {
      continue; // not bound, or unbound meanwhile
    }
    try {
      out.push({ ...loopDevice(Number(m[1])), backingFile });
    } catch {
      // removed meanwhile (LOOP_CTL_REMOVE)
    }
  }
  return out.sort((a, b) => a.number - b.number);
}

/** st_dev/st_ino of a file as loop_info64 reports them (both the kernel's new_encode_dev form). */
export function fileIdentity(path: string): { dev: bigint; inode: bigint } {
  const st = statSync(path, { bigint: true });
  return { dev: st.dev, inode: st.ino };
}
