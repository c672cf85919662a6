// Loop devices on this host's kernel: attach, detach, find, capacity, options, the LOOP_CONFIGURE
// fallback and the free-device race (by fault injection), refusing to detach what is not ours.
import { closeSync, openSync, readFileSync, readSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  LOOP_CLR_FD,
  LOOP_CONFIGURE,
  LOOP_CTL_GET_FREE,
  LOOP_SET_BLOCK_SIZE,
  LOOP_SET_DIRECT_IO,
  LOOP_SET_FD,
  LOOP_SET_STATUS64,
  LoFlag,
} from '../../src/structs/loop.js';
import { Errno, FaultInjectingTransport, SysError, libcTransport } from '../../src/ioctl/index.js';
import {
  attachLoop,
  detachLoop,
  findLoopByFile,
  listLoops,
  LoopNotOursError,
  loopStatus,
  releaseLoop,
  setLoopCapacity,
  type LoopDevice,
} from '../../src/loop/index.js';
import { blockDeviceSizeBytes, logicalSectorSizeBytes } from '../../src/blk/index.js';
import { Scratch, isBound, isTmpfs, requireHostTier, waitFor } from './support.js';

requireHostTier();

const MiB = 1024 * 1024;

describe('loop devices (host)', () => {
  let s: Scratch;
  beforeEach(() => {
    s = new Scratch();
  });
  afterEach(async () => {
    await s.cleanup();
  });

  it('attaches, finds by file (dev/inode), reports status, and detaches', async () => {
    const file = s.file('a.img', 8 * MiB);
    const dev = await attachLoop(file);
    expect(dev.path).toBe(`/dev/loop${dev.number}`);
    expect(dev.major).toBe(7);
    expect(statSync(dev.path).rdev).toBe(statSync(dev.path).rdev); // node exists
    expect(statSync(dev.path).isBlockDevice()).toBe(true);
    expect(isBound(dev.number)).toBe(true);
    expect(readFileSync(`/sys/block/loop${dev.number}/loop/backing_file`, 'utf8').trim()).toBe(file);

    const st = statSync(file, { bigint: true });
    const info = loopStatus(dev);
    expect(info.lo_device).toBe(st.dev);
    expect(info.lo_inode).toBe(st.ino);
    expect(info.lo_file_name).toBe(file);
    expect(info.lo_number).toBe(dev.number);
    expect(info.lo_flags & LoFlag.LO_FLAGS_READ_ONLY).toBe(0);
    expect(dev.backing).toEqual({ dev: st.dev, inode: st.ino });
    expect(blockDeviceSizeBytes(dev.path)).toBe(BigInt(8 * MiB));

    const found = await findLoopByFile(file);
    expect(found.map((d) => d.number)).toEqual([dev.number]);
    expect(listLoops().some((l) => l.number === dev.number && l.backingFile === file)).toBe(true);

    await detachLoop(dev);
    await waitFor(() => !isBound(dev.number), 'detach');
    expect(await findLoopByFile(file)).toEqual([]);
    // A second detach of the same device: it is not bound any more.
    await expect(detachLoop(dev)).rejects.toMatchObject({ code: 'ENXIO' });
  });

  it('finds a file by inode even when another file has the same name elsewhere', async () => {
    const a = s.file('same.img', MiB);
    const devA = await attachLoop(a);
    const other = new Scratch();
    try {
      const b = other.file('same.img', MiB);
      const devB = await attachLoop(b);
      expect((await findLoopByFile(a)).map((d) => d.number)).toEqual([devA.number]);
      expect((await findLoopByFile(b)).map((d) => d.number)).toEqual([devB.number]);
    } finally {
      await other.cleanup();
    }
  });

  it('grows with the file after LOOP_SET_CAPACITY', async () => {
    const file = s.file('grow.img', 4 * MiB);
    const dev = await attachLoop(file);
    truncateSync(file, 12 * MiB);
    expect(blockDeviceSizeBytes(dev.path)).toBe(BigInt(4 * MiB));
    setLoopCapacity(dev);
    expect(blockDeviceSizeBytes(dev.path)).toBe(BigInt(12 * MiB));
  });

  it('attaches read-only', async () => {
    const file = s.file('ro.img', MiB);
    const dev = await attachLoop(file, { readOnly: true });
    expect(loopStatus(dev).lo_flags & LoFlag.LO_FLAGS_READ_ONLY).toBeTruthy();
    expect(readFileSync(`/sys/block/loop${dev.number}/ro`, 'utf8').trim()).toBe('1');
    // Depending on the kernel, opening for write or the write itself is refused.
    let err: unknown;
    let fd: number | undefined;
    try {
      fd = openSync(dev.path, 'r+');
      writeSync(fd, Buffer.alloc(512), 0, 512, 0);
    } catch (e) {
      err = e;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    expect((err as NodeJS.ErrnoException | undefined)?.code).toMatch(/^(EROFS|EACCES|EPERM)$/);
  });

  it('maps a window of the file with offset and size limit', async () => {
    const file = s.file('window.img', 4 * MiB);
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.from('window-start'), 0, 12, 65536);
    closeSync(fd);
    const dev = await attachLoop(file, { offsetBytes: 65536n, sizeLimitBytes: BigInt(MiB) });
    const info = loopStatus(dev);
    expect(info.lo_offset).toBe(65536n);
    expect(info.lo_sizelimit).toBe(BigInt(MiB));
    expect(blockDeviceSizeBytes(dev.path)).toBe(BigInt(MiB));
    const buf = Buffer.alloc(12);
    const dfd = openSync(dev.path, 'r');
    try {
      readSync(dfd, buf, 0, 12, 0);
    } finally {
      closeSync(dfd);
    }
    expect(buf.toString()).toBe('window-start');
  });

  it('sets a 4096-byte logical block size', async () => {
    const dev = await attachLoop(s.file('bs.img', 4 * MiB), { blockSizeBytes: 4096 });
    expect(logicalSectorSizeBytes(dev.path)).toBe(4096);
  });

  it('rejects a block size that is not a power of two before touching the kernel', async () => {
    const t = new FaultInjectingTransport(libcTransport);
    await expect(attachLoop(s.file('bad.img', MiB), { blockSizeBytes: 1000, transport: t })).rejects.toThrow(/blockSizeBytes 1000/);
    expect(t.calls).toEqual([]);
  });

  it('autoclear: the device lives while the kept fd (or another opener) holds it', async () => {
    const file = s.file('auto.img', MiB);
    const dev = s.keep(await attachLoop(file, { autoclear: true }));
    expect(dev.fd).toBeTypeOf('number');
    expect(loopStatus(dev).lo_flags & LoFlag.LO_FLAGS_AUTOCLEAR).toBeTruthy();
    expect(isBound(dev.number)).toBe(true);
    releaseLoop(dev);
    expect(dev.fd).toBeUndefined();
    await waitFor(() => !isBound(dev.number), 'autoclear on last close');
  });

  it('direct I/O: set by LOOP_CONFIGURE, or by LOOP_SET_DIRECT_IO in the fallback', async () => {
    expect(isTmpfs(s.dir)).toBe(false); // the host tier needs a real file system under TMPDIR
    const dev = await attachLoop(s.file('dio.img', MiB), { directIo: true });
    expect(loopStatus(dev).lo_flags & LoFlag.LO_FLAGS_DIRECT_IO).toBeTruthy();
    const t = new FaultInjectingTransport(libcTransport).failNext({ request: LOOP_CONFIGURE }, Errno.EINVAL);
    const old = await attachLoop(s.file('dio-old.img', MiB), { directIo: true, transport: t });
    expect(t.count(LOOP_SET_DIRECT_IO)).toBe(1);
    expect(loopStatus(old).lo_flags & LoFlag.LO_FLAGS_DIRECT_IO).toBeTruthy();
  });

  it('direct I/O refused (EINVAL, as tmpfs before 6.6): a clear error and nothing left bound', async () => {
    const file = s.file('dio-refused.img', MiB);
    // The fallback path leaves direct I/O to LOOP_SET_DIRECT_IO, which answers EINVAL here.
    const t = new FaultInjectingTransport(libcTransport)
      .failNext({ request: LOOP_CONFIGURE }, Errno.EINVAL)
      .failNext({ request: LOOP_SET_DIRECT_IO }, Errno.EINVAL);
    const err = await attachLoop(file, { directIo: true, transport: t }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SysError);
    expect(err).toMatchObject({ code: 'EINVAL', syscall: 'LOOP_SET_DIRECT_IO' });
    expect((err as Error).message).toMatch(/direct I\/O on .* refused \(its file system may lack O_DIRECT, as tmpfs does/);
    expect(t.count(LOOP_CLR_FD)).toBe(1);
    await waitFor(() => s.loops().length === 0, 'the undone bind');
  });

  it('direct I/O on tmpfs: this kernel either does it or says EINVAL clearly', async () => {
    if (!isTmpfs('/dev/shm')) return;
    const file = `/dev/shm/devmapper-dio-${process.pid}.img`;
    writeFileSync(file, Buffer.alloc(MiB));
    try {
      const result = await attachLoop(file, { directIo: true }).catch((e: unknown) => e);
      if (result instanceof Error) {
        expect(result).toMatchObject({ code: 'EINVAL', syscall: 'LOOP_SET_DIRECT_IO' });
        expect(await findLoopByFile(file)).toEqual([]);
      } else {
        expect(loopStatus(result as LoopDevice).lo_flags & LoFlag.LO_FLAGS_DIRECT_IO).toBeTruthy();
      }
    } finally {
      for (const d of await findLoopByFile(file)) await detachLoop(d);
      rmSync(file, { force: true });
    }
  });

  it('refuses to detach a device bound to another file, or one given bare', async () => {
    const a = s.file('mine.img', MiB);
    const b = s.file('theirs.img', MiB);
    const dev = await attachLoop(b);
    const err = await detachLoop(dev.path, { expectBackingFile: a }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LoopNotOursError);
    expect((err as Error).message).toMatch(new RegExp(`refusing to detach ${dev.path}: it is bound to ${b}`));
    await expect(detachLoop(dev.number)).rejects.toThrow(/no backing file to check it against/);
    expect(isBound(dev.number)).toBe(true);
    await detachLoop(dev.path, { expectBackingFile: b });
    await waitFor(() => !isBound(dev.number), 'detach');
  });

  it('falls back to LOOP_SET_FD + LOOP_SET_STATUS64 when LOOP_CONFIGURE is unknown (EINVAL, ENOTTY)', async () => {
    for (const errno of [Errno.EINVAL, Errno.ENOTTY]) {
      const file = s.file(`old-${errno}.img`, 4 * MiB);
      const t = new FaultInjectingTransport(libcTransport).failNext({ request: LOOP_CONFIGURE }, errno);
      const dev = await attachLoop(file, {
        transport: t,
        offsetBytes: 4096n,
        sizeLimitBytes: BigInt(2 * MiB),
        blockSizeBytes: 4096,
        partscan: true,
      });
      expect(t.calls).toEqual([LOOP_CTL_GET_FREE, LOOP_CONFIGURE, LOOP_SET_FD, LOOP_SET_STATUS64, LOOP_SET_BLOCK_SIZE]);
      const info = loopStatus(dev);
      expect(info.lo_offset).toBe(4096n);
      expect(info.lo_sizelimit).toBe(BigInt(2 * MiB));
      expect(info.lo_file_name).toBe(file);
      expect(info.lo_flags & LoFlag.LO_FLAGS_PARTSCAN).toBeTruthy();
      expect(logicalSectorSizeBytes(dev.path)).toBe(4096);
      expect(blockDeviceSizeBytes(dev.path)).toBe(BigInt(2 * MiB));
      await detachLoop(dev);
    }
  });

  it('the fallback takes read-only from the fds and autoclear from LOOP_SET_STATUS64', async () => {
    const t = new FaultInjectingTransport(libcTransport).failNext({ request: LOOP_CONFIGURE }, Errno.EINVAL);
    const dev = s.keep(await attachLoop(s.file('old-ro.img', MiB), { transport: t, readOnly: true, autoclear: true }));
    const flags = loopStatus(dev).lo_flags;
    expect(flags & LoFlag.LO_FLAGS_READ_ONLY).toBeTruthy();
    expect(flags & LoFlag.LO_FLAGS_AUTOCLEAR).toBeTruthy();
  });

  it('undoes the bind when configuring after LOOP_SET_FD fails', async () => {
    const file = s.file('undo.img', MiB);
    const t = new FaultInjectingTransport(libcTransport)
      .failNext({ request: LOOP_CONFIGURE }, Errno.EINVAL)
      .failNext({ request: LOOP_SET_BLOCK_SIZE }, Errno.EINVAL);
    await expect(attachLoop(file, { transport: t, blockSizeBytes: 4096 })).rejects.toMatchObject({
      code: 'EINVAL',
      syscall: 'LOOP_SET_BLOCK_SIZE',
    });
    expect(t.count(LOOP_CLR_FD)).toBe(1);
    await waitFor(() => s.loops().length === 0, 'the undone bind');
  });

  it('retries with another free device when the bind loses the race (EBUSY)', async () => {
    const file = s.file('race.img', MiB);
    const t = new FaultInjectingTransport(libcTransport).failNext({ request: LOOP_CONFIGURE }, Errno.EBUSY);
    const dev = await attachLoop(file, { transport: t });
    expect(t.calls).toEqual([LOOP_CTL_GET_FREE, LOOP_CONFIGURE, LOOP_CTL_GET_FREE, LOOP_CONFIGURE]);
    expect((await findLoopByFile(file)).map((d) => d.number)).toEqual([dev.number]);

    // The same race in the fallback path (LOOP_SET_FD says EBUSY).
    const file2 = s.file('race2.img', MiB);
    const t2 = new FaultInjectingTransport(libcTransport)
      .failNext({ request: LOOP_CONFIGURE }, Errno.EINVAL, 2)
      .failNext({ request: LOOP_SET_FD }, Errno.EBUSY);
    await attachLoop(file2, { transport: t2 });
    expect(t2.calls).toEqual([
      LOOP_CTL_GET_FREE,
      LOOP_CONFIGURE,
      LOOP_SET_FD,
      LOOP_CTL_GET_FREE,
      LOOP_CONFIGURE,
      LOOP_SET_FD,
      LOOP_SET_STATUS64,
    ]);
  });

  it('gives up after maxAttempts lost races, binding nothing', async () => {
    const file = s.file('lost.img', MiB);
    const t = new FaultInjectingTransport(libcTransport).failNext({ request: LOOP_CONFIGURE }, Errno.EBUSY, 3);
    await expect(attachLoop(file, { transport: t, maxAttempts: 3 })).rejects.toMatchObject({ code: 'EBUSY' });
    expect(t.count(LOOP_CTL_GET_FREE)).toBe(3);
    expect(await findLoopByFile(file)).toEqual([]);
  });
});
