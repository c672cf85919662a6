// The one seam between the library and the kernel: ioctl(2) on an open file descriptor.
// The real implementation is in libc.ts; tests wrap it (fault injection) or replay captures.

/** What an ioctl returned: `ret` as the kernel gave it, `errno` set only when ret === -1. */
export interface IoctlResult {
  ret: number;
  errno: number;
}

/** An integer argument (LOOP_CLR_FD, LOOP_SET_FD...) or a buffer the kernel reads and writes. */
export type IoctlArg = number | Uint8Array;

export interface Transport {
  /** Blocking ioctl(2): cheap commands (everything but waits, flushing suspends, removes). */
  ioctl(fd: number, request: number, arg: IoctlArg): IoctlResult;
  /** The same call on a worker thread, so that a long wait does not block the event loop. */
  ioctlAsync(fd: number, request: number, arg: IoctlArg): Promise<IoctlResult>;
}
