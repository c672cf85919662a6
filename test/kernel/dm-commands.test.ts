// Every DM command against the real kernel, each checked against dmsetup (an independent oracle,
// libdevmapper's own code) for the same device; and devices made by one read back through the other.
import { closeSync, openSync, statSync, writeSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import type { DeviceInfo } from '../../src/dm/info.js';
import { InvalidArgumentError } from '../../src/dm/errors.js';
import { formatTableLine, type Target } from '../../src/dm/targets.js';
import { DmError } from '../../src/ioctl/errors.js';
import { FaultInjectingTransport } from '../../src/ioctl/fault.js';
import { O_CLOEXEC, O_RDONLY, libcTransport, makedev, sysClose, sysOpen } from '../../src/ioctl/libc.js';
import type { LoopDevice } from '../../src/loop/index.js';
import { DmCmd, dmRequest } from '../../src/structs/dm-ioctl.js';
import {
  LoopScratch,
  caught,
  devString,
  dmName,
  dmsetup,
  dmsetupOk,
  kernelHooks,
  linearOver,
  openDm,
  oracleInfo,
  oracleInfoAll,
  oracleLines,
  oracleLs,
  waitFor,
  TEST_PREFIX,
  type OracleInfo,
} from './support/env.js';
import { sectors } from '../../src/structs/units.js';
import { type DeviceName, deviceName, deviceUuid } from '../../src/dm/names.js';

kernelHooks();

/** Our DeviceInfo in dmsetup's `info -c` terms. */
function asOracle(i: DeviceInfo): OracleInfo {
  const attr = `${i.liveTable ? 'L' : '-'}${i.inactiveTable ? 'I' : '-'}${i.suspended ? 's' : '-'}${i.readOnly ? 'r' : 'w'}`;
  return {
    name: i.name,
    major: i.dev.major,
    minor: i.dev.minor,
    attr,
    open: i.openCount,
    segments: i.targetCount,
    events: i.eventNr,
    uuid: i.uuid,
  };
}

/** dmsetup info's attr, cut to the four letters we model (live, inactive, suspended, ro/rw). */
function oracle(name: string): OracleInfo | null {
  const o = oracleInfo(name);
  return o && { ...o, attr: o.attr.slice(0, 4) };
}

function mustInfo(dm: DeviceMapper, name: DeviceName): DeviceInfo {
  const i = dm.info({ name });
  if (!i) throw new Error(`no device ${name}`);
  return i;
}

function tableLines(targets: Target[]): string[] {
  return targets.map(formatTableLine);
}

/** `dmsetup deps` "N dependencies\t: (7, 0) (7, 1)" as "maj:min" strings. */
function oracleDeps(name: string): string[] {
  const out = dmsetupOk(['deps', name]);
  const m = /^(\d+) dependencies\s*:\s*(.*)$/m.exec(out);
  if (!m) throw new Error(`unexpected dmsetup deps output ${JSON.stringify(out)}`);
  const devs = [...m[2]!.matchAll(/\((\d+), (\d+)\)/g)].map((x) => `${x[1]}:${x[2]}`);
  expect(devs.length).toBe(Number(m[1]));
  return devs;
}

/** A counting transport around the real one: how many ioctls of each command went to the kernel. */
function counting(): { dm: DeviceMapper; t: FaultInjectingTransport } {
  const t = new FaultInjectingTransport(libcTransport);
  return { dm: openDm({ transport: t }), t };
}

/** Races `p` against a timeout that first runs `release` (to unblock a kernel wait) and then fails. */
async function within<T>(p: Promise<T>, ms: number, what: string, release: () => Promise<void> | void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void Promise.resolve(release()).finally(() => reject(new Error(`timed out after ${ms} ms: ${what}`)));
    }, ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('DM commands against the kernel, checked with dmsetup', () => {
  let dm: DeviceMapper;
  let scratch: LoopScratch;
  let loopA: LoopDevice;
  let loopB: LoopDevice;

  beforeAll(async () => {
    dm = openDm();
    scratch = new LoopScratch('commands');
    loopA = await scratch.loop('a.img', 16 * 1024 * 1024);
    loopB = await scratch.loop('b.img', 16 * 1024 * 1024);
  });
  afterAll(async () => {
    dm?.close();
    await scratch?.cleanup();
  });

  test('version is the driver line of dmsetup version', () => {
    const m = /^Driver version:\s+(\S+)$/m.exec(dmsetupOk(['version']));
    expect(m).not.toBeNull();
    expect(dm.version().join('.')).toBe(m![1]);
    expect(dm.driverVersion.join('.')).toBe(m![1]);
  });

  test('listVersions is dmsetup targets, in the same order; targetVersion agrees', () => {
    // targetVersion('thin') loads dm-thin-pool if needed; do it first so both lists see the same set.
    expect(dm.targetVersion('thin')).not.toBeNull();
    const ours = dm.listVersions().map((t) => `${t.name} v${t.version.join('.')}`);
    const theirs = dmsetupOk(['targets'])
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.trim().replace(/\s+/, ' '));
    expect(ours).toEqual(theirs);
    for (const t of dm.listVersions()) expect(dm.targetVersion(t.name)).toEqual(t.version);
    for (const type of ['linear', 'zero', 'error', 'thin-pool']) expect(ours.some((l) => l.startsWith(`${type} v`))).toBe(true);
    expect(dm.targetVersion('no-such-target')).toBeNull();
  });

  test('create: linear over a loop device, with a uuid, read-only; node made; dmsetup sees the same', async () => {
    const name = dmName('ro');
    const uuid = deviceUuid(`${TEST_PREFIX}uuid-${process.pid}-ro`);
    const created = await dm.create(name, { uuid, readOnly: true, table: linearOver(loopA, 2048n, 8n) });
    expect(created).toMatchObject({ name, uuid, readOnly: true, liveTable: true, inactiveTable: false, suspended: false, targetCount: 1 });
    expect(oracle(name)).toEqual({ ...asOracle(created), attr: 'L--r' });
    expect(asOracle(mustInfo(dm, name))).toEqual(oracle(name));
    const st = statSync(`/dev/mapper/${name}`);
    expect(st.isBlockDevice()).toBe(true);
    expect(BigInt(st.rdev)).toBe(makedev(created.dev));
    expect(oracleLines('table', name)).toEqual([`0 2048 linear ${devString(loopA)} 8`]);
    // Read-only for real: a write to it fails (6.1 refuses the write, not the open).
    const fd = openSync(`/dev/mapper/${name}`, 'r+');
    try {
      expect(() => writeSync(fd, Buffer.alloc(512))).toThrow(/EPERM|EROFS|EACCES/);
    } finally {
      closeSync(fd);
    }
  });

  test('create without a table (dmsetup create --notable): no live table, no node', async () => {
    const name = dmName('notable');
    const created = await dm.create(name);
    expect(created).toMatchObject({ name, uuid: '', liveTable: false, inactiveTable: false, targetCount: 0, openCount: 0 });
    expect(oracle(name)).toEqual({ ...asOracle(created), attr: '---w' });
    expect(() => statSync(`/dev/mapper/${name}`)).toThrow(/ENOENT/);
    const viaDmsetup = dmName('notable-ds');
    dmsetupOk(['create', '--notable', viaDmsetup]);
    expect(asOracle(mustInfo(dm, viaDmsetup))).toEqual(oracle(viaDmsetup));
  });

  test('info: every field equals dmsetup info -c, by name, by uuid and by major:minor', async () => {
    const name = dmName('info');
    const uuid = deviceUuid(`${TEST_PREFIX}uuid-${process.pid}-info`);
    const created = await dm.create(name, { uuid, table: linearOver(loopA, 1024n) });
    const o = oracle(name);
    expect(o).toMatchObject({ name, uuid, attr: 'L--w', segments: 1, open: 0 });
    expect(asOracle(mustInfo(dm, name))).toEqual(o);
    expect(asOracle(dm.info({ uuid })!)).toEqual(o);
    expect(asOracle(dm.info({ dev: created.dev })!)).toEqual(o);
    // `dmsetup info NAME` (the long form) agrees as well.
    const long = dmsetupOk(['info', name]);
    expect(long).toMatch(new RegExp(`^Major, minor:\\s+${created.dev.major}, ${created.dev.minor}$`, 'm'));
    expect(long).toMatch(/^State:\s+ACTIVE$/m);
    expect(long).toMatch(/^Tables present:\s+LIVE$/m);
    expect(long).toMatch(new RegExp(`^UUID: ${uuid}$`, 'm'));
    // Open count follows an opener.
    const fd = openSync(`/dev/mapper/${name}`, 'r');
    try {
      expect(mustInfo(dm, name).openCount).toBe(1);
      expect(oracle(name)!.open).toBe(1);
    } finally {
      closeSync(fd);
    }
    expect(dm.info({ name: dmName('never-made') })).toBeNull();
  });

  test('list, with uuids and event numbers, equals dmsetup ls and dmsetup info -c', async () => {
    const names = [dmName('ls-a'), dmName('ls-b'), dmName('ls-c')];
    await dm.create(names[0]!, { uuid: deviceUuid(`${TEST_PREFIX}${process.pid}-ls-a`), table: linearOver(loopA, 8n) });
    await dm.create(names[1]!, { table: [{ type: 'zero', startSector: sectors(0n), lengthSectors: sectors(8n) }] });
    await dm.create(names[2]!);
    await dm.rename({ name: names[1]! }, deviceName(`${names[1]!}x`)); // event 1 on the renamed one
    names[1] = deviceName(`${names[1]!}x`);
    const ours = dm.list({ uuids: true }).filter((d) => d.name.startsWith(TEST_PREFIX));
    const ls = oracleLs();
    const infos = new Map(oracleInfoAll().map((o) => [o.name, o]));
    expect(new Set(ours.map((d) => d.name))).toEqual(new Set([...ls.keys()].filter((n) => n.startsWith(TEST_PREFIX))));
    for (const d of ours) {
      expect(devString(d.dev)).toBe(ls.get(d.name));
      const o = infos.get(d.name)!;
      expect(d.eventNr).toBe(o.events);
      expect(d.uuid ?? '').toBe(o.uuid);
    }
    expect(ours.find((d) => d.name === names[1])!.eventNr).toBe(1);
    expect(ours.find((d) => d.name === names[0])!.uuid).toBe(`${TEST_PREFIX}${process.pid}-ls-a`);
    // Without the uuid flag: names and devs only (as dmsetup ls asks).
    for (const d of dm.list().filter((x) => x.name.startsWith(TEST_PREFIX))) expect(d.uuid).toBeUndefined();
  });

  test('loadTable fills the inactive table (dmsetup table --inactive); clearTable drops it', async () => {
    const name = dmName('load');
    await dm.create(name, { table: linearOver(loopA, 100n) });
    const next: Target[] = [
      { type: 'zero', startSector: sectors(0n), lengthSectors: sectors(50n) },
      { type: 'linear', startSector: sectors(50n), lengthSectors: sectors(100n), device: devString(loopB), offsetSectors: sectors(16n) },
    ];
    const loaded = dm.loadTable({ name }, next);
    expect(loaded.inactiveTable).toBe(true);
    expect(loaded.liveTable).toBe(true);
    expect(oracle(name)!.attr).toBe('LI-w');
    expect(asOracle(mustInfo(dm, name))).toEqual(oracle(name));
    expect(tableLines(dm.table({ name }, { inactive: true }))).toEqual(oracleLines('table', name, ['--inactive']));
    expect(tableLines(dm.table({ name }, { inactive: true }))).toEqual(tableLines(next));
    expect(tableLines(dm.table({ name }))).toEqual(oracleLines('table', name));
    expect(dm.status({ name }, { inactive: true }).map((s) => s.type)).toEqual(['zero', 'linear']);
    const cleared = dm.clearTable({ name });
    expect(cleared.inactiveTable).toBe(false);
    expect(oracle(name)!.attr).toBe('L--w');
    expect(dmsetupOk(['table', '--inactive', name]).trim()).toBe('');
    // Load again and resume: the inactive one goes live.
    dm.loadTable({ name }, next);
    const resumed = await dm.resume({ name });
    expect(resumed).toMatchObject({ liveTable: true, inactiveTable: false, suspended: false });
    expect(oracleLines('table', name)).toEqual(tableLines(next));
  });

  test('suspend (plain, noflush, skip-lockfs) and resume: SUSPENDED seen by dmsetup', async () => {
    const name = dmName('susp');
    await dm.create(name, { table: linearOver(loopA, 100n) });
    for (const opts of [{}, { noFlush: true }, { skipLockfs: true }, { noFlush: true, skipLockfs: true }]) {
      const s = await dm.suspend({ name }, opts);
      expect(s.suspended).toBe(true);
      expect(oracle(name)!.attr).toBe('L-sw');
      expect(dmsetupOk(['info', name])).toMatch(/^State:\s+SUSPENDED$/m);
      expect(asOracle(mustInfo(dm, name))).toEqual(oracle(name));
      const r = await dm.resume({ name }, opts.noFlush ? { noFlush: true } : {});
      expect(r.suspended).toBe(false);
      expect(oracle(name)!.attr).toBe('L--w');
    }
  });

  test('table and status of a mixed table equal dmsetup table / status', async () => {
    const name = dmName('mixed');
    const targets: Target[] = [
      { type: 'linear', startSector: sectors(0n), lengthSectors: sectors(64n), device: devString(loopA), offsetSectors: sectors(0n) },
      { type: 'zero', startSector: sectors(64n), lengthSectors: sectors(32n) },
      { type: 'error', startSector: sectors(96n), lengthSectors: sectors(8n) },
      { type: 'linear', startSector: sectors(104n), lengthSectors: sectors(200n), device: devString(loopB), offsetSectors: sectors(1000n) },
    ];
    await dm.create(name, { table: targets });
    expect(tableLines(dm.table({ name }))).toEqual(oracleLines('table', name));
    expect(dm.table({ name })).toEqual(targets);
    const st = dm.status({ name }).map((s) => `${s.startSector} ${s.lengthSectors} ${s.type}${s.params ? ` ${s.params}` : ''}`);
    expect(st).toEqual(oracleLines('status', name));
    const stNoflush = dm
      .status({ name }, { noFlush: true })
      .map((s) => `${s.startSector} ${s.lengthSectors} ${s.type}${s.params ? ` ${s.params}` : ''}`);
    expect(stNoflush).toEqual(oracleLines('status', name, ['--noflush']));
  });

  test('deps equals dmsetup deps (two loop devices; a stacked device depends on the dm device)', async () => {
    const name = dmName('deps');
    const created = await dm.create(name, {
      table: [
        { type: 'linear', startSector: sectors(0n), lengthSectors: sectors(64n), device: devString(loopA), offsetSectors: sectors(0n) },
        { type: 'linear', startSector: sectors(64n), lengthSectors: sectors(64n), device: devString(loopB), offsetSectors: sectors(0n) },
      ],
    });
    expect(dm.deps({ name }).map(devString).sort()).toEqual(oracleDeps(name).sort());
    expect(dm.deps({ name }).map(devString).sort()).toEqual([devString(loopA), devString(loopB)].sort());
    const top = dmName('deps-top');
    await dm.create(top, { table: linearOver(created.dev, 32n) });
    expect(dm.deps({ name: top }).map(devString)).toEqual(oracleDeps(top));
    expect(dm.deps({ name: top })).toEqual([created.dev]);
    expect(mustInfo(dm, name).openCount).toBe(1);
    const zero = dmName('deps-zero');
    await dm.create(zero, { table: [{ type: 'zero', startSector: sectors(0n), lengthSectors: sectors(8n) }] });
    expect(dm.deps({ name: zero })).toEqual([]);
    expect(oracleDeps(zero)).toEqual([]);
  });

  test('rename moves the /dev/mapper node; dmsetup sees the new name only', async () => {
    const name = dmName('ren-old');
    const to = dmName('ren-new');
    const created = await dm.create(name, { table: linearOver(loopA, 64n) });
    const renamed = await dm.rename({ name }, to);
    expect(renamed.name).toBe(to);
    expect(oracle(name)).toBeNull();
    expect(oracle(to)).toMatchObject({ major: created.dev.major, minor: created.dev.minor, events: 1 });
    expect(asOracle(mustInfo(dm, to))).toEqual(oracle(to));
    expect(() => statSync(`/dev/mapper/${name}`)).toThrow(/ENOENT/);
    expect(statSync(`/dev/mapper/${to}`).isBlockDevice()).toBe(true);
    expect(oracleLs().get(to)).toBe(devString(created.dev));
  });

  test('setUuid gives a uuid to a device that has none (dmsetup info shows it); a second one is refused', async () => {
    const name = dmName('uuid');
    await dm.create(name, { table: linearOver(loopA, 64n) });
    const uuid = deviceUuid(`${TEST_PREFIX}uuid-${process.pid}-set`);
    expect(dm.setUuid({ name }, uuid).uuid).toBe(uuid);
    expect(oracle(name)!.uuid).toBe(uuid);
    expect(dmsetupOk(['info', name])).toMatch(new RegExp(`^UUID: ${uuid}$`, 'm'));
    expect(dm.info({ uuid })!.name).toBe(name);
    // The kernel lets a uuid be set only once.
    const err = await caught(() => dm.setUuid({ name }, deviceUuid(`${uuid}-2`)));
    expect(err).toBeInstanceOf(DmError);
    expect((err as DmError).code).toBe('EINVAL');
  });

  test('waitEvent returns when the event number moves (a rename), at once when it already has', async () => {
    const name = dmName('wait');
    await dm.create(name, { table: linearOver(loopA, 64n) });
    const before = mustInfo(dm, name).eventNr;
    let done = false;
    const waiting = dm.waitEvent({ name }, before).then((i) => {
      done = true;
      return i;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(done).toBe(false); // still blocked in the kernel
    const to = dmName('wait2');
    const release = async () => {
      await dm.rename({ name: to }, dmName('wait3')).catch(() => undefined);
    };
    await dm.rename({ name }, to);
    const woke = await within(waiting, 10_000, 'DM_DEV_WAIT after a rename', release);
    expect(woke.eventNr).toBe(before + 1);
    expect(oracle(to)!.events).toBe(before + 1);
    // Already different: returns at once.
    const now = await within(dm.waitEvent({ name: to }, before), 5000, 'DM_DEV_WAIT with a stale event number', release);
    expect(now.eventNr).toBe(before + 1);
  });

  test('armPoll: one DM_DEV_ARM_POLL ioctl, accepted by the kernel', () => {
    const { dm: counted, t } = counting();
    try {
      counted.armPoll();
      expect(t.count(dmRequest(DmCmd.DM_DEV_ARM_POLL))).toBe(1);
    } finally {
      counted.close();
    }
  });

  test('setGeometry: read back with HDIO_GETGEO; out-of-range values never reach the kernel; start beyond C*H*S is the kernel’s EINVAL', async () => {
    const name = dmName('geo');
    await dm.create(name, { table: linearOver(loopA, 2048n) });
    dm.setGeometry({ name }, { cylinders: 20, heads: 4, sectors: 16, start: 8 });
    // HDIO_GETGEO (linux/hdreg.h 0x0301): struct hd_geometry { u8 heads; u8 sectors; u16 cylinders; unsigned long start; }.
    const HDIO_GETGEO = 0x0301;
    const buf = new Uint8Array(16);
    const fd = sysOpen(`/dev/mapper/${name}`, O_RDONLY | O_CLOEXEC);
    try {
      expect(libcTransport.ioctl(fd, HDIO_GETGEO, buf).ret).toBe(0);
    } finally {
      sysClose(fd);
    }
    const v = new DataView(buf.buffer);
    expect({
      heads: v.getUint8(0),
      sectors: v.getUint8(1),
      cylinders: v.getUint16(2, true),
      start: Number(v.getBigUint64(8, true)),
    }).toEqual({
      heads: 4,
      sectors: 16,
      cylinders: 20,
      start: 8,
    });

    const { dm: counted, t } = counting();
    try {
      const before = t.calls.length;
      for (const g of [
        { cylinders: 65536, heads: 1, sectors: 1, start: 0 },
        { cylinders: 1, heads: 256, sectors: 1, start: 0 },
        { cylinders: 1, heads: 1, sectors: -1, start: 0 },
        { cylinders: 1.5, heads: 1, sectors: 1, start: 0 },
      ]) {
        expect(() => counted.setGeometry({ name }, g)).toThrow(InvalidArgumentError);
      }
      expect(t.calls.length).toBe(before);
      const err = await caught(() => counted.setGeometry({ name }, { cylinders: 1, heads: 1, sectors: 1, start: 2 }));
      expect(err).toBeInstanceOf(DmError);
      expect(err).toMatchObject({ code: 'EINVAL', command: 'DM_DEV_SET_GEOMETRY' });
      expect((err as Error).message).toContain(name);
    } finally {
      counted.close();
    }
  });

  test('remove drops the device and its node', async () => {
    const name = dmName('rm');
    await dm.create(name, { table: linearOver(loopA, 64n) });
    expect(statSync(`/dev/mapper/${name}`).isBlockDevice()).toBe(true);
    await dm.remove({ name });
    expect(dm.info({ name })).toBeNull();
    expect(oracle(name)).toBeNull();
    expect(() => statSync(`/dev/mapper/${name}`)).toThrow(/ENOENT/);
  });

  test('removeAll removes every device (only when every device present is a test device)', async () => {
    const foreign = dm.list().filter((d) => !d.name.startsWith(TEST_PREFIX));
    if (foreign.length > 0) {
      throw new Error(
        `refusing to run DM_REMOVE_ALL: this kernel has devices that are not the tests' (${foreign.map((d) => d.name).join(', ')})`,
      );
    }
    const names = [dmName('all-1'), dmName('all-2'), dmName('all-3')];
    await dm.create(names[0]!, { table: linearOver(loopA, 64n) });
    await dm.create(names[1]!, { table: [{ type: 'zero', startSector: sectors(0n), lengthSectors: sectors(64n) }] });
    await dm.create(names[2]!);
    dm.removeAll();
    expect(dm.list()).toEqual([]);
    expect(oracleLs().size).toBe(0);
    for (const n of names) expect(() => statSync(`/dev/mapper/${n}`)).toThrow(/ENOENT/);
  });

  test('deferred remove of an open device: pending while open (info and dmsetup say so), gone on close', async () => {
    const name = dmName('defer');
    await dm.create(name, { table: linearOver(loopA, 64n) });
    const fd = openSync(`/dev/mapper/${name}`, 'r');
    let closed = false;
    try {
      const busy = await caught(() => dm.remove({ name }));
      expect(busy).toMatchObject({ code: 'EBUSY', command: 'DM_DEV_REMOVE' });
      await dm.remove({ name }, { deferred: true });
      const i = mustInfo(dm, name);
      expect(i.deferredRemove).toBe(true);
      expect(i.openCount).toBe(1);
      expect(dmsetupOk(['info', name])).toMatch(/^State:\s+ACTIVE \(DEFERRED REMOVE\)$/m);
      closeSync(fd);
      closed = true;
      await waitFor(() => dm.info({ name }) === null, 'the deferred remove to happen on last close');
      expect(oracle(name)).toBeNull();
      // The node of a device that went on its own: mknodes brings /dev/mapper in line.
      dm.mknodes();
      expect(() => statSync(`/dev/mapper/${name}`)).toThrow(/ENOENT/);
    } finally {
      if (!closed) closeSync(fd);
    }
  });

  test('cancelDeferredRemove keeps an open device that was scheduled for removal', async () => {
    const name = dmName('cancel');
    await dm.create(name, { table: linearOver(loopA, 64n) });
    const fd = openSync(`/dev/mapper/${name}`, 'r');
    try {
      await dm.remove({ name }, { deferred: true });
      expect(mustInfo(dm, name).deferredRemove).toBe(true);
      dm.cancelDeferredRemove({ name });
      expect(mustInfo(dm, name).deferredRemove).toBe(false);
      expect(dmsetupOk(['info', name])).toMatch(/^State:\s+ACTIVE$/m);
    } finally {
      closeSync(fd);
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(mustInfo(dm, name).openCount).toBe(0);
    expect(oracle(name)).not.toBeNull();
  });

  test('remove with retry succeeds once a brief opener closes', async () => {
    const name = dmName('retry');
    await dm.create(name, { table: linearOver(loopA, 64n) });
    const fd = openSync(`/dev/mapper/${name}`, 'r');
    const closer = setTimeout(() => closeSync(fd), 150);
    try {
      await dm.remove({ name }, { retry: true });
    } catch (err) {
      clearTimeout(closer);
      closeSync(fd);
      throw err;
    }
    expect(dm.info({ name })).toBeNull();
    expect(oracle(name)).toBeNull();
  });

  test('devices made by dmsetup read back right through our library', async () => {
    const name = dmName('by-dmsetup');
    const uuid = deviceUuid(`${TEST_PREFIX}${process.pid}-by-dmsetup`);
    const table = `0 100 linear ${devString(loopA)} 4\n100 50 zero\n150 10 linear ${devString(loopB)} 0\n`;
    dmsetupOk(['create', name, '-u', uuid], { input: table });
    const i = mustInfo(dm, name);
    expect(asOracle(i)).toEqual(oracle(name));
    expect(i).toMatchObject({ uuid, targetCount: 3, liveTable: true });
    expect(tableLines(dm.table({ name }))).toEqual(oracleLines('table', name));
    expect(dm.status({ name }).map((s) => `${s.startSector} ${s.lengthSectors} ${s.type}`)).toEqual(oracleLines('status', name));
    expect(dm.deps({ name }).map(devString).sort()).toEqual(oracleDeps(name).sort());
    // A dmsetup-loaded inactive table and a dmsetup suspend, read through ours.
    dmsetupOk(['load', name, '--table', '0 160 zero']);
    dmsetupOk(['suspend', name]);
    expect(mustInfo(dm, name)).toMatchObject({ suspended: true, inactiveTable: true });
    expect(tableLines(dm.table({ name }, { inactive: true }))).toEqual(['0 160 zero']);
    dmsetupOk(['resume', name]);
    expect(tableLines(dm.table({ name }))).toEqual(['0 160 zero']);
    // And ours removes what dmsetup made (node included: dmsetup made it, without udev).
    await dm.remove({ name });
    expect(oracle(name)).toBeNull();
    expect(() => statSync(`/dev/mapper/${name}`)).toThrow(/ENOENT/);
  });

  test('devices made by our library read back right through dmsetup, which can suspend, reload and remove them', async () => {
    const name = dmName('by-ours');
    const uuid = deviceUuid(`${TEST_PREFIX}${process.pid}-by-ours`);
    const created = await dm.create(name, { uuid, table: linearOver(loopB, 512n, 32n) });
    expect(oracle(name)).toEqual(asOracle(created));
    expect(oracleLines('table', name)).toEqual([`0 512 linear ${devString(loopB)} 32`]);
    expect(oracleLs().get(name)).toBe(devString(created.dev));
    dmsetupOk(['suspend', name]);
    expect(mustInfo(dm, name).suspended).toBe(true);
    dmsetupOk(['reload', name, '--table', '0 512 zero']);
    dmsetupOk(['resume', name]);
    expect(tableLines(dm.table({ name }))).toEqual(['0 512 zero']);
    dmsetupOk(['remove', name]);
    expect(dm.info({ name })).toBeNull();
    expect(dmsetup(['info', name]).status).not.toBe(0);
  });
});
