// errno names and messages, the error classes' messages, FaultInjectingTransport, glibc's makedev.
import { describe, expect, it } from 'vitest';
import {
  DmError,
  Errno,
  FaultInjectingTransport,
  SysError,
  errnoMessage,
  errnoName,
  errnoNumber,
  libcLoaded,
  makedev,
  splitdev,
  type IoctlArg,
  type IoctlCall,
  type IoctlResult,
  type Transport,
} from '../../src/ioctl/index.js';
import { encodeDev } from '../../src/structs/dev.js';

describe('errno', () => {
  it('names and describes the errnos of asm-generic/errno-base.h and errno.h', () => {
    expect(errnoName(16)).toBe('EBUSY');
    expect(errnoMessage(16)).toBe('Device or resource busy');
    expect(errnoName(6)).toBe('ENXIO');
    expect(errnoMessage(6)).toBe('No such device or address');
    expect(errnoName(61)).toBe('ENODATA');
    expect(errnoName(95)).toBe('EOPNOTSUPP');
    expect(errnoMessage(95)).toBe('Operation not supported');
    expect(errnoName(133)).toBe('EHWPOISON');
    expect(errnoName(1)).toBe('EPERM');
  });

  it('maps names (and aliases) back to numbers', () => {
    expect(errnoNumber('ENOTTY')).toBe(25);
    expect(errnoNumber('ENOTSUP')).toBe(95);
    expect(errnoNumber('EWOULDBLOCK')).toBe(11);
    expect(errnoNumber('ENOSUCH')).toBeUndefined();
  });

  it('keeps the Errno constants in step with the table', () => {
    for (const [name, n] of Object.entries(Errno)) expect(errnoName(n)).toBe(name);
  });

  it('formats unknown numbers without failing', () => {
    expect(errnoName(4000)).toBe('E4000');
    expect(errnoMessage(4000)).toBe('Unknown error 4000');
  });
});

describe('error classes', () => {
  it('SysError carries code, errno, syscall and path', () => {
    const e = new SysError('open', 2, '/dev/nope');
    expect(e).toBeInstanceOf(Error);
    expect(e.message).toBe('open /dev/nope: ENOENT (No such file or directory)');
    expect([e.code, e.errno, e.syscall, e.path]).toEqual(['ENOENT', 2, 'open', '/dev/nope']);
  });

  it('DmError reads like "DM_DEV_REMOVE lin0: EBUSY (Device or resource busy)"', () => {
    const e = new DmError('DM_DEV_REMOVE', 16, 'lin0');
    expect(e).toBeInstanceOf(SysError);
    expect(e.message).toBe('DM_DEV_REMOVE lin0: EBUSY (Device or resource busy)');
    expect([e.code, e.command, e.device]).toEqual(['EBUSY', 'DM_DEV_REMOVE', 'lin0']);
  });

  it('the error module does not load libc', () => {
    expect(libcLoaded()).toBe(false);
  });
});

describe('makedev', () => {
  it('equals huge_encode_dev below major 4096 and round-trips through splitdev', () => {
    for (const d of [
      { major: 7, minor: 0 },
      { major: 254, minor: 3 },
      { major: 10, minor: 236 },
      { major: 259, minor: 1048575 },
    ]) {
      expect(makedev(d)).toBe(encodeDev(d));
      expect(splitdev(makedev(d))).toEqual(d);
    }
  });

  it('puts the high bits of a large major where glibc does', () => {
    // major 0x12345 -> 0x345 in bits 8..19 and 0x12 in bits 44..; minor 0x678 -> 0x78 in 0..7, 0x6 in 20..
    expect(makedev({ major: 0x12345, minor: 0x678 })).toBe(0x0001_2000_0000_0000n | 0x60_0000n | 0x3_4500n | 0x78n);
    expect(splitdev(makedev({ major: 0x12345, minor: 0x678 }))).toEqual({ major: 0x12345, minor: 0x678 });
  });
});

/** Records calls and answers ret 0, writing 0xab into buffers. */
class Echo implements Transport {
  calls = 0;
  ioctl(_fd: number, _request: number, arg: IoctlArg): IoctlResult {
    this.calls++;
    if (typeof arg !== 'number') arg.fill(0xab);
    return { ret: 0, errno: 0 };
  }
  async ioctlAsync(fd: number, request: number, arg: IoctlArg): Promise<IoctlResult> {
    return this.ioctl(fd, request, arg);
  }
}

describe('FaultInjectingTransport', () => {
  it('fails the next matching calls without reaching the inner transport', () => {
    const inner = new Echo();
    const t = new FaultInjectingTransport(inner).failNext({ request: 0x4c0a }, 22, 2);
    expect(t.ioctl(3, 0x4c82, 0)).toEqual({ ret: 0, errno: 0 });
    expect(t.ioctl(3, 0x4c0a, new Uint8Array(4))).toEqual({ ret: -1, errno: 22 });
    expect(t.pendingFaults()).toBe(1);
    const buf = new Uint8Array(4);
    expect(t.ioctl(3, 0x4c0a, buf)).toEqual({ ret: -1, errno: 22 });
    expect(buf).toEqual(new Uint8Array(4)); // untouched
    expect(t.ioctl(3, 0x4c0a, buf)).toEqual({ ret: 0, errno: 0 });
    expect(buf[0]).toBe(0xab);
    expect(inner.calls).toBe(2);
    expect(t.calls).toEqual([0x4c82, 0x4c0a, 0x4c0a, 0x4c0a]);
    expect(t.count(0x4c0a)).toBe(3);
    expect(t.pendingFaults()).toBe(0);
  });

  it('fails the nth call overall, and faults async calls too', async () => {
    const t = new FaultInjectingTransport(new Echo()).failNext({ nth: 1 }, 16);
    expect((await t.ioctlAsync(3, 1, 0)).ret).toBe(0);
    expect(await t.ioctlAsync(3, 2, 0)).toEqual({ ret: -1, errno: 16 });
    expect((await t.ioctlAsync(3, 2, 0)).ret).toBe(0);
  });

  it('calls the hooks around every call; a throwing beforeCall stops the call (crash points)', () => {
    const inner = new Echo();
    const t = new FaultInjectingTransport(inner);
    const seen: string[] = [];
    t.beforeCall = (c: IoctlCall) => {
      seen.push(`before ${c.index} ${c.request}`);
      if (c.index === 2) throw new Error('crash at step 2');
    };
    t.afterCall = (c, r) => seen.push(`after ${c.index} ${r.ret}`);
    t.ioctl(3, 10, 0);
    t.ioctl(3, 11, 0);
    expect(() => t.ioctl(3, 12, 0)).toThrow('crash at step 2');
    expect(seen).toEqual(['before 0 10', 'after 0 0', 'before 1 11', 'after 1 0', 'before 2 12']);
    expect(inner.calls).toBe(2);
  });
});
