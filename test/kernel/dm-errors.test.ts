// Every error path against the real kernel: the kernel's errno as a typed DmError naming the
// command and the device, nothing left half-made, and bad input stopped before any ioctl.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import { InvalidArgumentError } from '../../src/dm/errors.js';
import { createThin, deleteThin, setTransactionId } from '../../src/dm/thin-messages.js';
import { DmError } from '../../src/ioctl/errors.js';
import { FaultInjectingTransport } from '../../src/ioctl/fault.js';
import { libcTransport } from '../../src/ioctl/libc.js';
import type { LoopDevice } from '../../src/loop/index.js';
import {
  LoopScratch,
  activateThin,
  caught,
  devString,
  dmName,
  kernelHooks,
  linearOver,
  makePool,
  openDm,
  oracleInfo,
  oracleLs,
  type TestPool,
} from './support/env.js';
import { sectors } from '../../src/structs/units.js';
import { thinId, type ThinId, deviceUuid, type DeviceName, type DeviceUuid, deviceName } from '../../src/dm/names.js';

kernelHooks();

/** The error is a DmError with `code`, from `command`, naming `device` in its message. */
function expectDmError(err: unknown, code: string, command: string, device: string): void {
  expect(err).toBeInstanceOf(DmError);
  const e = err as DmError;
  expect({ code: e.code, command: e.command }).toEqual({ code, command });
  expect(e.message).toContain(command);
  expect(e.message).toContain(device);
}

describe('error paths against the kernel', () => {
  let dm: DeviceMapper;
  let scratch: LoopScratch;
  let loop: LoopDevice;

  beforeAll(async () => {
    dm = openDm();
    scratch = new LoopScratch('errors');
    loop = await scratch.loop('a.img', 8 * 1024 * 1024);
  });
  afterAll(async () => {
    dm?.close();
    await scratch?.cleanup();
  });

  test('EBUSY: creating a name that exists (and the existing device is untouched)', async () => {
    const name = dmName('dup');
    const first = await dm.create(name, { table: linearOver(loop, 64n) });
    expectDmError(await caught(() => dm.create(name)), 'EBUSY', 'DM_DEV_CREATE', name);
    expectDmError(await caught(() => dm.create(name, { table: linearOver(loop, 8n) })), 'EBUSY', 'DM_DEV_CREATE', name);
    expect(dm.info({ name })).toMatchObject({ dev: first.dev, targetCount: 1 });
    expect(dm.table({ name })[0]).toMatchObject({ lengthSectors: sectors(64n) });
  });

  test('EBUSY: removing a pool that a thin device uses; the pool stays', async () => {
    const pool: TestPool = await makePool(dm, scratch, 'busy', { dataBytes: 16 * 1024 * 1024, metaBytes: 4 * 1024 * 1024 });
    createThin(dm, { name: pool.name }, thinId(1));
    await activateThin(dm, pool, 'busy-thin', 1, 2048n);
    expectDmError(await caught(() => dm.remove({ name: pool.name })), 'EBUSY', 'DM_DEV_REMOVE', pool.name);
    expect(dm.info({ name: pool.name })).not.toBeNull();
    expect(oracleInfo(pool.name)).not.toBeNull();
    // Dependents first, then it goes.
    await dm.remove({ name: dmName('busy-thin') });
    await dm.remove({ name: pool.name });
    expect(dm.info({ name: pool.name })).toBeNull();
  });

  test('ENXIO: a missing device; info is null, every other command names the command and the device', async () => {
    const name = dmName('missing');
    expect(dm.info({ name })).toBeNull();
    expect(dm.info({ uuid: deviceUuid(`${name}-uuid`) })).toBeNull();
    expectDmError(await caught(() => dm.remove({ name })), 'ENXIO', 'DM_DEV_REMOVE', name);
    expectDmError(await caught(() => dm.rename({ name }, dmName('missing-2'))), 'ENXIO', 'DM_DEV_RENAME', name);
    expectDmError(await caught(() => dm.message({ name }, 0n, 'create_thin 1')), 'ENXIO', 'DM_TARGET_MSG', name);
    expectDmError(await caught(() => dm.suspend({ name })), 'ENXIO', 'DM_DEV_SUSPEND', name);
    expectDmError(await caught(() => dm.resume({ name })), 'ENXIO', 'DM_DEV_SUSPEND', name);
    expectDmError(await caught(() => dm.table({ name })), 'ENXIO', 'DM_TABLE_STATUS', name);
    expectDmError(await caught(() => dm.status({ name })), 'ENXIO', 'DM_TABLE_STATUS', name);
    expectDmError(await caught(() => dm.deps({ name })), 'ENXIO', 'DM_TABLE_DEPS', name);
    expectDmError(await caught(() => dm.loadTable({ name }, linearOver(loop, 8n))), 'ENXIO', 'DM_TABLE_LOAD', name);
    expectDmError(await caught(() => dm.clearTable({ name })), 'ENXIO', 'DM_TABLE_CLEAR', name);
    expectDmError(await caught(() => dm.setUuid({ name }, deviceUuid('u'))), 'ENXIO', 'DM_DEV_RENAME', name);
    expectDmError(await caught(() => dm.waitEvent({ name }, 0)), 'ENXIO', 'DM_DEV_WAIT', name);
    expectDmError(await caught(() => dm.cancelDeferredRemove({ name })), 'ENXIO', 'DM_TARGET_MSG', name);
    expectDmError(
      await caught(() => dm.setGeometry({ name }, { cylinders: 1, heads: 1, sectors: 1, start: 0 })),
      'ENXIO',
      'DM_DEV_SET_GEOMETRY',
      name,
    );
    // By major:minor too: the message names the number.
    expectDmError(
      await caught(() => dm.remove({ dev: { major: loop.major, minor: 4000 } })),
      'ENXIO',
      'DM_DEV_REMOVE',
      `${loop.major}:4000`,
    );
  });

  test('EINVAL: an unknown target type; a create with it leaves no device behind', async () => {
    const name = dmName('badtarget');
    await dm.create(name);
    const bad = [{ type: 'no-such-target', startSector: sectors(0n), lengthSectors: sectors(8n), params: '' }];
    expectDmError(await caught(() => dm.loadTable({ name }, bad)), 'EINVAL', 'DM_TABLE_LOAD', name);
    expect(dm.info({ name })).toMatchObject({ inactiveTable: false, liveTable: false });
    const half = dmName('badtarget-create');
    expectDmError(await caught(() => dm.create(half, { table: bad })), 'EINVAL', 'DM_TABLE_LOAD', half);
    expect(dm.info({ name: half })).toBeNull();
    expect(oracleLs().has(half)).toBe(false);
  });

  test('EINVAL: a message linear does not understand', async () => {
    const name = dmName('lin-msg');
    await dm.create(name, { table: linearOver(loop, 64n) });
    expectDmError(await caught(() => dm.message({ name }, 0n, 'create_thin 1')), 'EINVAL', 'DM_TARGET_MSG', name);
  });

  test('EINVAL: set_transaction_id with the wrong old id', async () => {
    const pool = await makePool(dm, scratch, 'txid', { dataBytes: 16 * 1024 * 1024, metaBytes: 4 * 1024 * 1024 });
    expectDmError(await caught(() => setTransactionId(dm, { name: pool.name }, 5n, 6n)), 'EINVAL', 'DM_TARGET_MSG', pool.name);
    setTransactionId(dm, { name: pool.name }, 0n, 1n);
  });

  test('ENXIO/ENODEV: linear over a device that does not exist; the create leaves nothing', async () => {
    for (const device of ['/dev/dmtest-no-such-device', '240:77']) {
      const name = dmName(`nodev-${device.replace(/\W/g, '')}`);
      const err = await caught(() =>
        dm.create(name, {
          table: [{ type: 'linear', startSector: sectors(0n), lengthSectors: sectors(8n), device, offsetSectors: sectors(0n) }],
        }),
      );
      expect(err).toBeInstanceOf(DmError);
      expect(['ENXIO', 'ENODEV']).toContain((err as DmError).code);
      expect((err as DmError).command).toBe('DM_TABLE_LOAD');
      expect((err as Error).message).toContain(name);
      expect(dm.info({ name })).toBeNull();
    }
  });

  test('EEXIST: create_thin of an id the pool has; ENODATA: delete of an id it has not', async () => {
    const pool = await makePool(dm, scratch, 'ids', { dataBytes: 16 * 1024 * 1024, metaBytes: 4 * 1024 * 1024 });
    createThin(dm, { name: pool.name }, thinId(7));
    expectDmError(await caught(() => createThin(dm, { name: pool.name }, thinId(7))), 'EEXIST', 'DM_TARGET_MSG', pool.name);
    expectDmError(await caught(() => deleteThin(dm, { name: pool.name }, thinId(8))), 'ENODATA', 'DM_TARGET_MSG', pool.name);
    deleteThin(dm, { name: pool.name }, thinId(7));
    expectDmError(await caught(() => deleteThin(dm, { name: pool.name }, thinId(7))), 'ENODATA', 'DM_TARGET_MSG', pool.name);
  });

  test('bad names, uuids and thin ids never reach the kernel (zero ioctls)', async () => {
    const t = new FaultInjectingTransport(libcTransport);
    const counted = openDm({ transport: t });
    try {
      const before = t.calls.length;
      const long = `${dmName('')}${'x'.repeat(128)}`;
      const slash = `${dmName('a')}/b`;
      // Unchecked on purpose: the library must refuse what a JavaScript caller could pass.
      for (const bad of [long, slash, '', '.', '..', 'a\0b'] as DeviceName[]) {
        expect(await caught(() => counted.create(bad))).toBeInstanceOf(InvalidArgumentError);
        expect(await caught(() => counted.info({ name: bad }))).toBeInstanceOf(InvalidArgumentError);
        expect(await caught(() => counted.remove({ name: bad }))).toBeInstanceOf(InvalidArgumentError);
        expect(await caught(() => counted.rename({ name: dmName('x') }, bad))).toBeInstanceOf(InvalidArgumentError);
        expect(await caught(() => counted.message({ name: bad }, 0n, 'x'))).toBeInstanceOf(InvalidArgumentError);
      }
      expect(await caught(() => counted.create(dmName('u'), { uuid: 'u'.repeat(129) as DeviceUuid }))).toBeInstanceOf(InvalidArgumentError);
      expect(await caught(() => createThin(counted, { name: dmName('p') }, (2 ** 24) as ThinId))).toBeInstanceOf(InvalidArgumentError);
      expect(await caught(() => createThin(counted, { name: dmName('p') }, -1 as ThinId))).toBeInstanceOf(InvalidArgumentError);
      expect(
        await caught(() =>
          counted.loadTable({ name: dmName('x') }, [{ type: 'zero', startSector: sectors(8n), lengthSectors: sectors(8n) }]),
        ),
      ).toBeInstanceOf(InvalidArgumentError);
      expect(t.calls.length).toBe(before);
      // A 127-byte name is the kernel's limit and goes through.
      const max = deviceName(dmName('m').padEnd(127, 'm'));
      await counted.create(max);
      expect(t.calls.length).toBeGreaterThan(before);
      expect(oracleInfo(max)).toMatchObject({ name: max });
      await counted.remove({ name: max });
    } finally {
      counted.close();
    }
  });

  test('a table that fails in the kernel after create: our create removes the half-made device', async () => {
    // The kernel accepts DEV_CREATE, then refuses TABLE_LOAD (a linear beyond... a thin id the pool lacks).
    const pool = await makePool(dm, scratch, 'half', { dataBytes: 16 * 1024 * 1024, metaBytes: 4 * 1024 * 1024 });
    const name = dmName('half-thin');
    const err = await caught(() =>
      dm.create(name, {
        table: [
          { type: 'thin', startSector: sectors(0n), lengthSectors: sectors(8n), poolDevice: devString(pool.dev), thinId: thinId(99) },
        ],
      }),
    );
    expectDmError(err, 'ENODATA', 'DM_TABLE_LOAD', name);
    expect(dm.info({ name })).toBeNull();
    expect(oracleInfo(name)).toBeNull();
  });
});
