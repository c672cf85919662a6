// The koffi binding against this host's kernel: buffers come back with the kernel's writes (sync,
// async, subarrays), errno is the call's own, wrappers throw SysError, ensureNode makes real nodes.
// Also measures the cost of one ioctl through koffi.
import { lstatSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BLKGETSIZE64 } from '../../src/structs/blk.js';
import { LOOP_CTL_GET_FREE, LOOP_GET_STATUS64, LOOP_INFO64_SIZE } from '../../src/structs/loop.js';
import {
  MNT_DETACH,
  MS_NODEV,
  MS_NOSUID,
  O_CLOEXEC,
  O_RDONLY,
  O_RDWR,
  SysError,
  ensureNode,
  libcTransport,
  makedev,
  splitdev,
  sysClose,
  sysMount,
  sysOpen,
  sysUmount2,
} from '../../src/ioctl/index.js';
import { attachLoop } from '../../src/loop/index.js';
import { Scratch, requireHostTier } from './support.js';

requireHostTier();

describe('libc binding (host)', () => {
  let s: Scratch;
  beforeEach(() => {
    s = new Scratch();
  });
  afterEach(async () => {
    await s.cleanup();
  });

  it('the kernel writes into the Buffer, a Uint8Array and a subarray at an offset', async () => {
    const dev = await attachLoop(s.file('rt.img', 3 * 1024 * 1024));
    const fd = sysOpen(dev.path, O_RDONLY | O_CLOEXEC);
    try {
      const b = Buffer.alloc(8, 0xff);
      expect(libcTransport.ioctl(fd, BLKGETSIZE64, b)).toEqual({ ret: 0, errno: 0 });
      expect(b.readBigUInt64LE(0)).toBe(3n * 1024n * 1024n);
      const big = new Uint8Array(24).fill(0xee);
      const mid = big.subarray(8, 16);
      libcTransport.ioctl(fd, BLKGETSIZE64, mid);
      expect(Buffer.from(big.subarray(8, 16)).readBigUInt64LE(0)).toBe(3n * 1024n * 1024n);
      expect([...big.subarray(0, 8), ...big.subarray(16)].every((x) => x === 0xee)).toBe(true);

      const a = new Uint8Array(8);
      expect(await libcTransport.ioctlAsync(fd, BLKGETSIZE64, a)).toEqual({ ret: 0, errno: 0 });
      expect(Buffer.from(a).readBigUInt64LE(0)).toBe(3n * 1024n * 1024n);
    } finally {
      sysClose(fd);
    }
  });

  it('reports the errno of the call itself, sync and async (ENXIO on an unbound device)', async () => {
    const ctl = sysOpen('/dev/loop-control', O_RDWR | O_CLOEXEC);
    const n = libcTransport.ioctl(ctl, LOOP_CTL_GET_FREE, 0).ret;
    sysClose(ctl);
    expect(n).toBeGreaterThanOrEqual(0);
    const fd = sysOpen(`/dev/loop${n}`, O_RDONLY | O_CLOEXEC);
    try {
      const buf = new Uint8Array(LOOP_INFO64_SIZE);
      expect(libcTransport.ioctl(fd, LOOP_GET_STATUS64, buf)).toEqual({ ret: -1, errno: 6 });
      const results = await Promise.all([
        libcTransport.ioctlAsync(fd, LOOP_GET_STATUS64, buf),
        libcTransport.ioctlAsync(-1, LOOP_GET_STATUS64, buf),
      ]);
      expect(results).toEqual([
        { ret: -1, errno: 6 },
        { ret: -1, errno: 9 },
      ]);
    } finally {
      sysClose(fd);
    }
  });

  it('wrappers throw SysError with code and path', () => {
    let err: unknown;
    try {
      sysOpen('/nonexistent/devmapper', O_RDONLY);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SysError);
    expect(err).toMatchObject({ code: 'ENOENT', syscall: 'open', path: '/nonexistent/devmapper' });
    expect(() => sysClose(-1)).toThrow(/^close: EBADF/);
  });

  it('ensureNode makes, keeps and replaces real device nodes (mkdir -p, exact mode)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'devmapper-nodes-'));
    try {
      const path = join(dir, 'mapper', 'lin0');
      const old = process.umask(0o077);
      try {
        expect(ensureNode(path, { type: 'block', major: 7, minor: 200, mode: 0o660 })).toBe('created');
      } finally {
        process.umask(old);
      }
      let st = lstatSync(path, { bigint: true });
      expect(st.isBlockDevice()).toBe(true);
      expect(st.rdev).toBe(makedev({ major: 7, minor: 200 }));
      expect(splitdev(st.rdev)).toEqual({ major: 7, minor: 200 });
      expect(Number(st.mode) & 0o777).toBe(0o660);
      expect(ensureNode(path, { type: 'block', major: 7, minor: 200, mode: 0o660 })).toBe('exists');
      expect(ensureNode(path, { type: 'block', major: 254, minor: 3, mode: 0o660 })).toBe('replaced');
      st = lstatSync(path, { bigint: true });
      expect(splitdev(st.rdev)).toEqual({ major: 254, minor: 3 });
      expect(ensureNode(path, { type: 'char', major: 254, minor: 3, mode: 0o600 })).toBe('replaced');
      expect(lstatSync(path).isCharacterDevice()).toBe(true);
      const file = join(dir, 'file');
      writeFileSync(file, 'x');
      expect(ensureNode(file, { type: 'block', major: 7, minor: 1, mode: 0o600 })).toBe('replaced');
      expect(() => ensureNode(dir, { type: 'block', major: 7, minor: 1, mode: 0o600 })).toThrow(/a directory is there/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('mounts and unmounts with mount(2)/umount2(2), errors as SysError', () => {
    const dir = mkdtempSync(join(tmpdir(), 'devmapper-mnt-'));
    try {
      sysMount('none', dir, 'tmpfs', MS_NOSUID | MS_NODEV, 'size=1m,mode=0700');
      try {
        writeFileSync(join(dir, 'x'), 'y');
        expect(statfsSync(dir).type).toBe(0x01021994); // TMPFS_MAGIC
        expect(Number(lstatSync(dir).mode) & 0o777).toBe(0o700);
      } finally {
        sysUmount2(dir, MNT_DETACH);
      }
      expect(statfsSync(dir).type).not.toBe(0x01021994);
      expect(() => sysUmount2(dir)).toThrow(/^umount2 .*: EINVAL/);
      expect(() => sysMount('none', join(dir, 'missing'), 'tmpfs', 0, null)).toThrow(/ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs 100k LOOP_GET_STATUS64 through koffi on a bound device (the time per call is logged, not judged)', async () => {
    const dev = await attachLoop(s.file('bench.img', 1024 * 1024));
    const fd = sysOpen(dev.path, O_RDONLY | O_CLOEXEC);
    try {
      const buf = new Uint8Array(LOOP_INFO64_SIZE);
      const N = 100_000;
      for (let i = 0; i < 1000; i++) libcTransport.ioctl(fd, LOOP_GET_STATUS64, buf);
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < N; i++) libcTransport.ioctl(fd, LOOP_GET_STATUS64, buf);
      const perCallNs = Number(process.hrtime.bigint() - t0) / N;
      console.log(`LOOP_GET_STATUS64 through libcTransport: ${perCallNs.toFixed(0)} ns/call`);
      expect(Buffer.from(buf).readBigUInt64LE(8)).toBe(dev.backing?.inode);
    } finally {
      sysClose(fd);
    }
  });
});
