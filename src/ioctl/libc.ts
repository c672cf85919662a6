// The project's only binding of native code: libc's open/close/ioctl/mknod/unlink/mount/umount2/fsync/
// flock/poll/eventfd through koffi. Loaded on first use (synchronously, via require) so that commands that never touch
// the kernel do not load the native module.
import { createRequire } from 'node:module';
import type * as KoffiModule from 'koffi';
import type { DevT } from '../structs/dev.js';
import { Errno } from './errno.js';
import { SysError } from './errors.js';
import type { IoctlArg, IoctlResult, Transport } from './transport.js';

type Koffi = typeof KoffiModule;
type KoffiFunction = ReturnType<KoffiModule.LibraryHandle['func']>;

interface Libc {
  koffi: Koffi;
  open: KoffiFunction;
  close: KoffiFunction;
  /** ioctl(fd, request, unsigned long): integer arguments (LOOP_SET_FD, LOOP_SET_DIRECT_IO...). */
  ioctlInt: KoffiFunction;
  /** ioctl(fd, request, void *): koffi passes the Buffer's own memory, so the kernel's writes land in it. */
  ioctlPtr: KoffiFunction;
  mknod: KoffiFunction;
  /** mknod(2) and unlink(2) of a path already encoded, NUL-terminated (a CPath): no string marshalling. */
  mknodC: KoffiFunction;
  unlinkC: KoffiFunction;
  mount: KoffiFunction;
  umount2: KoffiFunction;
  fsync: KoffiFunction;
  flock: KoffiFunction;
  /** clock_gettime(clockid_t, struct timespec *): time_t and long are both `long` on glibc's Linux ABIs. */
  clockGettime: KoffiFunction;
  /** poll(struct pollfd *, nfds_t, int): the array is a Buffer of POLLFD_SIZE records. */
  poll: KoffiFunction;
  eventfd: KoffiFunction;
  read: KoffiFunction;
  write: KoffiFunction;
}

let libc: Libc | undefined;

function load(): Libc {
  if (libc) return libc;
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const lib = koffi.load('libc.so.6');
  koffi.struct('timespec', { tv_sec: 'long', tv_nsec: 'long' });
  // ioctl and open are variadic in C; on every Linux ABI we run on, integer and pointer arguments of
  // a variadic call travel exactly like fixed ones, and koffi cannot call variadics asynchronously.
  libc = {
    koffi,
    open: lib.func('int open(const char *path, int flags, uint32_t mode)'),
    close: lib.func('int close(int fd)'),
    ioctlInt: lib.func('int ioctl(int fd, unsigned long request, unsigned long arg)'),
    ioctlPtr: lib.func('int ioctl(int fd, unsigned long request, void *arg)'),
    mknod: lib.func('int mknod(const char *path, uint32_t mode, uint64_t dev)'),
    mknodC: lib.func('int mknod(void *path, uint32_t mode, uint64_t dev)'),
    unlinkC: lib.func('int unlink(void *path)'),
    mount: lib.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)'),
    umount2: lib.func('int umount2(const char *target, int flags)'),
    fsync: lib.func('int fsync(int fd)'),
    flock: lib.func('int flock(int fd, int operation)'),
    clockGettime: lib.func('int clock_gettime(int clk_id, _Out_ timespec *tp)'),
    poll: lib.func('int poll(void *fds, unsigned long nfds, int timeout)'),
    eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
    read: lib.func('long read(int fd, void *buf, unsigned long count)'),
    write: lib.func('long write(int fd, void *buf, unsigned long count)'),
  };
  return libc;
}

/** True once libc has been bound (tests check that pure commands never load it). */
export function libcLoaded(): boolean {
  return libc !== undefined;
}

// ---- ioctl -------------------------------------------------------------------------------------

/** The result of every ioctl that returned 0, shared: the hot path allocates none. */
const SUCCESS: IoctlResult = Object.freeze({ ret: 0, errno: 0 });

function ioctlSync(fd: number, request: number, arg: IoctlArg): IoctlResult {
  const l = libc ?? load();
  const ret = (typeof arg === 'number' ? l.ioctlInt(fd, request, arg) : l.ioctlPtr(fd, request, arg)) as number;
  if (ret === 0) return SUCCESS;
  // errno is read before anything else can run a system call on this thread.
  return ret === -1 ? { ret, errno: l.koffi.errno() } : { ret, errno: 0 };
}

function ioctlAsync(fd: number, request: number, arg: IoctlArg): Promise<IoctlResult> {
  const l = load();
  const fn = typeof arg === 'number' ? l.ioctlInt : l.ioctlPtr;
  return new Promise((resolve, reject) => {
    // koffi sets the worker's errno on this thread only for the duration of the callback.
    fn.async(fd, request, arg, (err: unknown, ret: number) => {
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(ret === -1 ? { ret, errno: l.koffi.errno() } : { ret, errno: 0 });
    });
  });
}

/** The kernel, through libc. The buffer passed is the one the kernel reads and writes. */
export const libcTransport: Transport = { ioctl: ioctlSync, ioctlAsync };

// ---- constants (names and values of the kernel's uapi headers) -----------------------------------

/** include/uapi/asm-generic/fcntl.h (x86, arm64, riscv; not alpha/sparc/parisc/mips). */
export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NONBLOCK = 0o4000;
export const O_DIRECT = 0o40000;
export const O_LARGEFILE = 0o100000;
export const O_CLOEXEC = 0o2000000;

/** flock(2) operations: include/uapi/asm-generic/fcntl.h (the same on every architecture). */
export const LOCK_SH = 1;
export const LOCK_EX = 2;
/** Or'd with LOCK_SH / LOCK_EX: fail with EWOULDBLOCK (EAGAIN) instead of waiting. */
export const LOCK_NB = 4;
export const LOCK_UN = 8;

/** include/uapi/linux/stat.h */
export const S_IFMT = 0o170000;
export const S_IFBLK = 0o060000;
export const S_IFCHR = 0o020000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;

/** include/uapi/linux/mount.h */
export const MS_RDONLY = 1;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MS_NOEXEC = 8;
export const MS_SYNCHRONOUS = 16;
export const MS_REMOUNT = 32;
export const MS_NOATIME = 1024;
export const MS_NODIRATIME = 2048;
export const MS_BIND = 4096;
export const MS_REC = 16384;
export const MS_SILENT = 32768;
export const MS_PRIVATE = 1 << 18;
export const MS_RELATIME = 1 << 21;
export const MS_LAZYTIME = 1 << 25;

/** umount2() flags (include/linux/fs.h, glibc's sys/mount.h). */
export const MNT_FORCE = 1;
export const MNT_DETACH = 2;
export const MNT_EXPIRE = 4;
export const UMOUNT_NOFOLLOW = 8;

/** include/uapi/asm-generic/poll.h: struct pollfd's events/revents bits. */
export const POLLIN = 0x0001;
export const POLLERR = 0x0008;
export const POLLHUP = 0x0010;
export const POLLNVAL = 0x0020;
/** struct pollfd { int fd; short events; short revents; } */
export const POLLFD_SIZE = 8;

/** include/uapi/linux/eventfd.h: the O_ flags of the same values. */
export const EFD_CLOEXEC = O_CLOEXEC;
export const EFD_NONBLOCK = O_NONBLOCK;

/** <linux/time.h>: the settable system-wide wall clock. */
export const CLOCK_REALTIME = 0;

// ---- wrappers that throw SysError ---------------------------------------------------------------

function check(ret: number, syscall: string, path?: string): number {
  if (ret === -1) throw new SysError(syscall, load().koffi.errno(), path);
  return ret;
}

/** open(2). Returns the fd. */
export function sysOpen(path: string, flags: number, mode = 0): number {
  const l = load();
  return check(l.open(path, flags, mode) as number, 'open', path);
}

export function sysClose(fd: number): void {
  check(load().close(fd) as number, 'close');
}

export function sysFsync(fd: number): void {
  check(load().fsync(fd) as number, 'fsync');
}

/**
 * flock(2): an advisory lock on the open file description behind `fd`. The kernel drops it when the
 * last fd of that description closes, which includes the process dying. A held lock with LOCK_NB
 * throws SysError code 'EAGAIN' (EWOULDBLOCK on Linux).
 */
export function sysFlock(fd: number, operation: number): void {
  check(load().flock(fd, operation) as number, 'flock');
}

/**
 * glibc's makedev(): the 64-bit dev_t of mknod(2)/stat(2). For majors below 4096 it equals the
 * kernel's huge_encode_dev (src/structs/dev.ts); it differs above, where glibc puts the major's
 * high bits in bits 44..63.
 */
export function makedev({ major, minor }: DevT): bigint {
  const maj = BigInt(major >>> 0);
  const min = BigInt(minor >>> 0);
  return ((maj & 0xfffn) << 8n) | ((maj & ~0xfffn) << 32n) | (min & 0xffn) | ((min & ~0xffn) << 12n);
}

/** glibc's major()/minor() of a 64-bit dev_t, as Node's fs.Stats gives in `rdev`/`dev`. */
export function splitdev(dev: bigint | number): DevT {
  const d = BigInt(dev);
  return {
    major: Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n)),
    minor: Number((d & 0xffn) | ((d >> 12n) & 0xffffff00n)),
  };
}

/**
 * makedev() as a Number where it is exact (majors below 4096, minors below 2^20: every number the
 * kernel's dm and loop drivers hand out), else the bigint: koffi takes either for a uint64_t, and
 * the Number needs no bigint arithmetic.
 */
function makedevArg(dev: DevT): number | bigint {
  const { major, minor } = dev;
  if (major >>> 0 === major && major < 0x1000 && minor >>> 0 === minor && minor < 0x100000) {
    return (major << 8) + (minor & 0xff) + (minor & 0xfff00) * 0x1000;
  }
  return makedev(dev);
}

/** mknod(2): `mode` carries the type (S_IFBLK / S_IFCHR) and the permission bits. */
export function sysMknod(path: string, mode: number, dev: DevT): void {
  check(load().mknod(path, mode, makedevArg(dev)) as number, 'mknod', path);
}

/**
 * A path encoded once as the C string libc takes (UTF-8, NUL-terminated), for calls repeated on
 * the same path: koffi passes its memory as it is, where a JavaScript string is encoded anew on
 * every call.
 */
export interface CPath {
  readonly path: string;
  readonly bytes: Uint8Array;
}

/** `syscall` names the call the path is for, in the error a path with a NUL byte gets (EINVAL). */
export function cPath(path: string, syscall: string): CPath {
  if (path.includes('\0')) throw new SysError(syscall, Errno.EINVAL, path, `${syscall}: the path ${JSON.stringify(path)} holds a NUL byte`);
  const bytes = new Uint8Array(Buffer.byteLength(path, 'utf8') + 1);
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).write(path, 0, 'utf8');
  return { path, bytes };
}

/** mknod(2) of a CPath. */
export function sysMknodC(path: CPath, mode: number, dev: DevT): void {
  const l = libc ?? load();
  if ((l.mknodC(path.bytes, mode, makedevArg(dev)) as number) === -1) throw new SysError('mknod', l.koffi.errno(), path.path);
}

/** unlink(2) of a CPath. */
export function sysUnlinkC(path: CPath): void {
  const l = libc ?? load();
  if ((l.unlinkC(path.bytes) as number) === -1) throw new SysError('unlink', l.koffi.errno(), path.path);
}

/** mount(2). `data` is the filesystem's option string, or null. */
export function sysMount(source: string, target: string, fstype: string | null, flags: number, data: string | null): void {
  check(load().mount(source, target, fstype, flags, data) as number, 'mount', target);
}

/** umount2(2). */
export function sysUmount2(target: string, flags = 0): void {
  check(load().umount2(target, flags) as number, 'umount2', target);
}

/**
 * clock_gettime(CLOCK_REALTIME) in nanoseconds since the epoch, to the clock's full resolution
 * (Date.now() rounds to milliseconds; process.hrtime is not wall-clock time).
 */
export function clockRealtimeNs(): bigint {
  const ts: { tv_sec?: number | bigint; tv_nsec?: number | bigint } = {};
  check(load().clockGettime(CLOCK_REALTIME, ts) as number, 'clock_gettime');
  return BigInt(ts.tv_sec ?? 0) * 1_000_000_000n + BigInt(ts.tv_nsec ?? 0);
}

// ---- poll(2) and eventfd(2) ----------------------------------------------------------------------

export interface PollFd {
  fd: number;
  /** POLLIN...: what to wait for. */
  events: number;
}

/**
 * poll(2) on a worker thread: resolves with each fd's revents once one is ready, or all zeros after
 * `timeoutMs` (-1: no timeout). The event loop runs meanwhile. EINTR (a signal landed on the worker)
 * answers as a timeout: the caller looks again either way.
 */
export function sysPollAsync(fds: readonly PollFd[], timeoutMs: number): Promise<number[]> {
  const l = load();
  const buf = Buffer.alloc(fds.length * POLLFD_SIZE);
  fds.forEach((p, i) => {
    buf.writeInt32LE(p.fd, i * POLLFD_SIZE);
    buf.writeInt16LE(p.events, i * POLLFD_SIZE + 4);
  });
  const timeout = timeoutMs < 0 ? -1 : Math.min(Math.ceil(timeoutMs), 0x7fffffff);
  return new Promise((resolve, reject) => {
    l.poll.async(buf, fds.length, timeout, (err: unknown, ret: number) => {
      if (err) return reject(err instanceof Error ? err : new Error(String(err)));
      if (ret === -1) {
        const errno = l.koffi.errno();
        if (errno === Errno.EINTR) return resolve(fds.map(() => 0));
        return reject(new SysError('poll', errno));
      }
      resolve(fds.map((_, i) => buf.readUInt16LE(i * POLLFD_SIZE + 6)));
    });
  });
}

/** eventfd(2): a counter fd that another thread's poll() sees readable once it is written. */
export function sysEventfd(flags = EFD_CLOEXEC | EFD_NONBLOCK): number {
  return check(load().eventfd(0, flags) as number, 'eventfd');
}

/** Adds 1 to an eventfd's counter: wakes every poll() on it. */
export function eventfdSignal(fd: number): void {
  const one = Buffer.alloc(8);
  one.writeBigUInt64LE(1n);
  check(load().write(fd, one, 8) as number, 'write');
}
