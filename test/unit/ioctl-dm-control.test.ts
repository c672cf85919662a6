// DmControl against golden replies: the request bytes it sends, the buffer protocol, errno mapping,
// the version check and opening the control node, all without a kernel.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dmRecord, dmRecordsOf, type GoldenBufRecord } from '../support/golden.js';
import { patched, writeFields } from '../support/buffers.js';
import { encodeDev } from '../../src/structs/dev.js';
import { DM_IOCTL_OFFSETS, DM_IOCTL_SIZE, DmFlag, decodeDmIoctl, dmRequest, DmCmd } from '../../src/structs/dm-ioctl.js';
import {
  DmControl,
  DmError,
  DmVersionError,
  NoDeviceMapperError,
  S_IFCHR,
  type DmControlSys,
  type IoctlArg,
  type IoctlResult,
  type Transport,
} from '../../src/ioctl/index.js';

/** A copy of a captured buffer, resized to `size` bytes (padding with zeros). */
function bytes(buf: Uint8Array, size = buf.length): Buffer {
  const out = Buffer.alloc(size);
  out.set(buf.subarray(0, size));
  return out;
}

/** A scripted failure (no buffer change), for errno tests. */
interface Failure {
  req: number;
  ret: -1;
  errno: number;
}
type Step = GoldenBufRecord | Failure;

const EXISTS = DmFlag.DM_EXISTS_FLAG;

/** Byte equality with the first differing offset in the failure (deep equality of 128 KiB is slow). */
function expectBytes(actual: Uint8Array | undefined, expected: Uint8Array): void {
  expect(actual?.length).toBe(expected.length);
  const a = Buffer.from(actual ?? []);
  const at = a.findIndex((byte, i) => byte !== expected[i]);
  expect(at, `first difference at byte ${at}`).toBe(-1);
}
const FD = 42;

/**
 * Replays golden records in order: checks the request number, records what we sent, and leaves in
 * our buffer what the kernel left in libdevmapper's (the capture's `after`).
 */
class ReplayTransport implements Transport {
  readonly sent: Buffer[] = [];
  private next = 0;
  constructor(private readonly script: Step[]) {}

  ioctl(fd: number, request: number, arg: IoctlArg): IoctlResult {
    expect(fd).toBe(FD);
    const rec = this.script[this.next++];
    if (!rec) throw new Error(`unexpected ioctl 0x${request.toString(16)}: script ended`);
    expect(request.toString(16)).toBe(rec.req.toString(16));
    if (typeof arg === 'number') throw new Error('dm ioctls take a buffer');
    const buf = Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength);
    this.sent.push(Buffer.from(buf));
    if (!('kind' in rec) || rec.ret === -1) return { ret: -1, errno: rec.errno };
    // What the kernel wrote must fit our (possibly smaller) buffer: zeros beyond it.
    expect(rec.after.subarray(buf.length).every((b) => b === 0)).toBe(true);
    buf.fill(0);
    buf.set(rec.after.subarray(0, buf.length));
    // Where the kernel left data_size as the caller sent it (DM_VERSION), it echoes ours.
    // (Read raw: an echoed data_size is larger than our buffer, which decodeDmIoctl refuses.)
    if (buf.readUInt32LE(DM_IOCTL_OFFSETS.data_size) === rec.size) writeFields(buf, 'dm_ioctl', { data_size: arg.byteLength });
    return { ret: rec.ret, errno: 0 };
  }

  async ioctlAsync(fd: number, request: number, arg: IoctlArg): Promise<IoctlResult> {
    await Promise.resolve();
    return this.ioctl(fd, request, arg);
  }

  get remaining(): number {
    return this.script.length - this.next;
  }
}

const VERSION_RECORD = dmRecord('version', 'DM_VERSION'); // 4.0.0 -> 4.47.0

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dm-control-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A control node that "exists" (a regular file) and fake open/close/mknod. */
function fakeSys(): DmControlSys & { opened: string[]; closed: number[]; nodes: [string, number, string][] } {
  const s = {
    opened: [] as string[],
    closed: [] as number[],
    nodes: [] as [string, number, string][],
    open(path: string): number {
      s.opened.push(path);
      return FD;
    },
    close(fd: number): void {
      s.closed.push(fd);
    },
    mknod(path: string, mode: number, dev: { major: number; minor: number }): void {
      writeFileSync(path, '', { mode: mode & 0o7777 }); // stands in for the node: ENOENT without its folder, mode less umask, as mknod
      s.nodes.push([path, mode, `${dev.major}:${dev.minor}`]);
    },
  };
  return s;
}

function openWith(script: Step[], maxBufferSize?: number): { dm: DmControl; t: ReplayTransport; sys: ReturnType<typeof fakeSys> } {
  const controlPath = join(dir, 'mapper', 'control');
  mkdirSync(join(dir, 'mapper'));
  writeFileSync(controlPath, '');
  const t = new ReplayTransport([VERSION_RECORD, ...script]);
  const sys = fakeSys();
  const dm = DmControl.open({
    transport: t,
    controlPath,
    miscClassDir: join(dir, 'no-sys'),
    procMiscPath: join(dir, 'no-proc-misc'),
    sys,
    ...(maxBufferSize ? { maxBufferSize } : {}),
  });
  return { dm, t, sys };
}

describe('DmControl.open', () => {
  it("sends DM_VERSION 4.0.0 without libdevmapper's DM_EXISTS_FLAG and keeps the driver version", () => {
    const { dm, t } = openWith([]);
    expect(dm.driverVersion).toEqual([4, 47, 0]);
    expect(dm.fd).toBe(FD);
    const sent = t.sent[0] as Buffer;
    // Same bytes as libdevmapper's DM_VERSION except flags: it sends 0x4, its private bit.
    const captured = bytes(VERSION_RECORD.before, DM_IOCTL_SIZE);
    expect(decodeDmIoctl(VERSION_RECORD.before).flags).toBe(EXISTS);
    // DM_VERSION writes no payload: we send header-sized buffers.
    const golden = patched(captured, 'dm_ioctl', { flags: 0, data_size: DM_IOCTL_SIZE });
    expect(sent.subarray(0, DM_IOCTL_SIZE)).toEqual(golden);
    expect(sent.length).toBe(DM_IOCTL_SIZE);
  });

  it('refuses a driver whose interface major is not 4, and closes the fd', () => {
    const after = patched(VERSION_RECORD.after, 'dm_ioctl', { version: [5, 47, 0] });
    const v5: GoldenBufRecord = { ...VERSION_RECORD, after };
    const controlPath = join(dir, 'control');
    writeFileSync(controlPath, '');
    const sys = fakeSys();
    const open = () =>
      DmControl.open({
        transport: new ReplayTransport([v5]),
        controlPath,
        miscClassDir: join(dir, 'none'),
        procMiscPath: join(dir, 'none'),
        sys,
      });
    expect(open).toThrow(DmVersionError);
    expect(open).toThrow(/interface 5\.47\.0/);
    expect(sys.closed).toEqual([FD, FD]);
  });

  it('says the kernel has no device-mapper when neither the node nor sysfs nor /proc/misc knows it', () => {
    writeFileSync(join(dir, 'misc'), ' 57 loop-control\n229 fuse\n');
    const sys = fakeSys();
    let err: unknown;
    try {
      DmControl.open({
        controlPath: join(dir, 'mapper', 'control'),
        miscClassDir: join(dir, 'class-misc'),
        procMiscPath: join(dir, 'misc'),
        sys,
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NoDeviceMapperError);
    expect((err as Error).message).toBe(
      `this kernel has no device-mapper: no ${join(dir, 'mapper', 'control')}, no device-mapper in ${join(dir, 'class-misc')} or ${join(dir, 'misc')}` +
        " (load the dm-mod module, or run inside the project's guest kernel)",
    );
    expect(sys.opened).toEqual([]);
    expect(sys.nodes).toEqual([]);
  });

  it('creates the missing control node from sysfs (mkdir -p, char 0600)', () => {
    mkdirSync(join(dir, 'class-misc', 'device-mapper'), { recursive: true });
    writeFileSync(join(dir, 'class-misc', 'device-mapper', 'dev'), '10:236\n');
    const controlPath = join(dir, 'dev', 'mapper', 'control');
    const sys = fakeSys();
    const dm = DmControl.open({
      transport: new ReplayTransport([VERSION_RECORD]),
      controlPath,
      miscClassDir: join(dir, 'class-misc'),
      procMiscPath: join(dir, 'none'),
      sys,
    });
    expect(sys.nodes).toEqual([[controlPath, S_IFCHR | 0o600, '10:236']]);
    expect(statSync(controlPath).mode & 0o777).toBe(0o600);
    expect(sys.opened).toEqual([controlPath]);
    dm.close();
    dm.close();
    expect(sys.closed).toEqual([FD]);
  });

  it('creates it from /proc/misc (misc major 10) when sysfs has no entry', () => {
    writeFileSync(join(dir, 'misc'), ' 57 loop-control\n236 device-mapper\n229 fuse\n');
    const controlPath = join(dir, 'mapper', 'control');
    const sys = fakeSys();
    DmControl.open({
      transport: new ReplayTransport([VERSION_RECORD]),
      controlPath,
      miscClassDir: join(dir, 'class-misc'),
      procMiscPath: join(dir, 'misc'),
      sys,
    });
    expect(sys.nodes).toEqual([[controlPath, S_IFCHR | 0o600, '10:236']]);
  });
});

describe('DmControl.run', () => {
  it('grows the buffer on DM_BUFFER_FULL_FLAG 16K -> 32K -> 64K -> 128K and remembers what the reply needed (dmsetup table big0)', () => {
    const calls = dmRecordsOf('tableBig0').slice(1); // after DM_VERSION: four DM_TABLE_STATUS
    expect(calls.map((c) => c.size)).toEqual([16384, 32768, 65536, 131072]);
    const last = calls[3] as GoldenBufRecord;
    const { dm, t } = openWith([...calls, last]);
    const reply = dm.run('DM_TABLE_STATUS', { name: 'big0', flags: DmFlag.DM_STATUS_TABLE_FLAG });
    expect(t.sent.slice(1).map((b) => b.length)).toEqual([16384, 32768, 65536, 131072]);
    // Every attempt is libdevmapper's request but for its private DM_EXISTS_FLAG.
    for (const [i, rec] of calls.entries()) {
      const golden = patched(rec.before, 'dm_ioctl', { flags: decodeDmIoctl(rec.before).flags & ~EXISTS });
      expectBytes(t.sent[i + 1], golden);
    }
    expect(reply.header.target_count).toBe(2000);
    expect(reply.header.flags & DmFlag.DM_BUFFER_FULL_FLAG).toBe(0);
    expect(reply.header.data_size).toBe(104305);
    expect(reply.payload.length).toBe(104305 - DM_IOCTL_SIZE);
    expectBytes(reply.payload, bytes(last.after, 104305).subarray(DM_IOCTL_SIZE));

    // The next call starts at the reply's data_size plus 1/16, 8-aligned: not the 128 KiB that held it.
    dm.run('DM_TABLE_STATUS', { name: 'big0', flags: DmFlag.DM_STATUS_TABLE_FLAG });
    expect(t.sent[5]?.length).toBe((104305 + (104305 >> 4) + 7) & ~7);
    expect(t.remaining).toBe(0);
  });

  it('remembers sizes per command: another command still starts at 16 KiB', () => {
    const table = dmRecordsOf('tableBig0').slice(1);
    const deps = dmRecord('depsLin0', 'DM_TABLE_DEPS');
    const { dm, t } = openWith([...table, deps]);
    dm.run('DM_TABLE_STATUS', { name: 'big0', flags: DmFlag.DM_STATUS_TABLE_FLAG });
    const reply = dm.run('DM_TABLE_DEPS', { name: 'lin0' });
    expect(t.sent[5]?.length).toBe(16384);
    expect(reply.payload.length).toBe(328 - DM_IOCTL_SIZE);
  });

  it('maps errno to DmError with code, command and device (dmsetup info nonexistent: ENXIO)', () => {
    const status = dmRecord('infoMissing', 'DM_DEV_STATUS');
    expect(status.errno).toBe(6);
    const { dm } = openWith([status]);
    let err: unknown;
    try {
      dm.run('DM_DEV_STATUS', { name: 'nosuchdev' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DmError);
    const e = err as DmError;
    expect(e.code).toBe('ENXIO');
    expect(e.errno).toBe(6);
    expect(e.command).toBe('DM_DEV_STATUS');
    expect(e.device).toBe('nosuchdev');
    expect(e.message).toBe('DM_DEV_STATUS nosuchdev: ENXIO (No such device or address)');
  });

  it("names the device by uuid, then major:minor, then the caller's label", () => {
    const fail: Failure = { req: dmRequest(DmCmd.DM_DEV_REMOVE), ret: -1, errno: 16 };
    const { dm } = openWith([fail, fail, fail, fail]);
    expect(() => dm.run('DM_DEV_REMOVE', { uuid: 'LVM-abc' })).toThrow('DM_DEV_REMOVE LVM-abc: EBUSY (Device or resource busy)');
    expect(() => dm.run('DM_DEV_REMOVE', { dev: encodeDev({ major: 254, minor: 300 }) })).toThrow('DM_DEV_REMOVE 254:300: EBUSY');
    expect(() => dm.run('DM_DEV_REMOVE', { label: 'pool' })).toThrow('DM_DEV_REMOVE pool: EBUSY');
    expect(() => dm.run('DM_DEV_REMOVE', {})).toThrow(/^DM_DEV_REMOVE: EBUSY/);
  });

  it('sends a header-sized buffer for commands without output, same fields as libdevmapper (dmsetup suspend lin0)', () => {
    const suspend = dmRecord('suspendLin0', 'DM_DEV_SUSPEND');
    const { dm, t } = openWith([suspend]);
    const reply = dm.run('DM_DEV_SUSPEND', { name: 'lin0', flags: DmFlag.DM_SUSPEND_FLAG });
    const golden = patched(bytes(suspend.before, DM_IOCTL_SIZE), 'dm_ioctl', {
      flags: DmFlag.DM_SUSPEND_FLAG, // libdevmapper: 0x6 (with DM_EXISTS_FLAG)
      data_size: DM_IOCTL_SIZE, // libdevmapper: 16384, a deliberate difference
    });
    expect(t.sent[1]).toEqual(golden);
    // The kernel answers data_size = offsetof(struct dm_ioctl, data) = 305: no payload.
    expect(reply.header.data_size).toBe(305);
    expect(reply.header.flags & DmFlag.DM_SUSPEND_FLAG).toBeTruthy();
    expect(reply.header.dev).toBe(0xfe00n);
    expect(reply.payload.length).toBe(0);
  });

  it('puts a large input payload in a buffer of header + payload (TABLE_LOAD of dmsetup create big0)', () => {
    const load = dmRecord('createBig0', 'DM_TABLE_LOAD');
    const h = decodeDmIoctl(load.before);
    const { dm, t } = openWith([load]);
    dm.run('DM_TABLE_LOAD', {
      dev: h.dev,
      flags: DmFlag.DM_PERSISTENT_DEV_FLAG,
      target_count: h.target_count,
      payload: load.before.subarray(DM_IOCTL_SIZE),
    });
    expectBytes(t.sent[1], patched(load.before, 'dm_ioctl', { flags: DmFlag.DM_PERSISTENT_DEV_FLAG }));
  });

  it('runAsync goes through ioctlAsync with the same protocol', async () => {
    const calls = dmRecordsOf('tableBig0').slice(1);
    const { dm, t } = openWith(calls);
    let asyncCalls = 0;
    const inner = t.ioctlAsync.bind(t);
    t.ioctlAsync = (fd, req, arg) => {
      asyncCalls++;
      return inner(fd, req, arg);
    };
    const reply = await dm.runAsync('DM_TABLE_STATUS', { name: 'big0', flags: DmFlag.DM_STATUS_TABLE_FLAG });
    expect(asyncCalls).toBe(4);
    expect(reply.header.data_size).toBe(104305);
  });

  it('gives up with ENOBUFS when a reply never fits', () => {
    const full = dmRecord('tableBig0', 'DM_TABLE_STATUS');
    const { dm, t } = openWith([full, full, full], 65536);
    expect(() => dm.run('DM_TABLE_STATUS', { name: 'big0' })).toThrow('DM_TABLE_STATUS big0: ENOBUFS (No buffer space available)');
    expect(t.sent.slice(1).map((b) => b.length)).toEqual([16384, 32768, 65536]);
  });

  it('refuses to run after close', () => {
    const { dm } = openWith([]);
    dm.close();
    expect(() => dm.run('DM_DEV_STATUS', { name: 'x' })).toThrow(/EBADF/);
  });
});
