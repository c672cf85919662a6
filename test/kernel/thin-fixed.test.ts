// An existing pool refuses options it cannot take (never records or ignores them), and the smaller
// edges of mounting and shutting down: a refused mount makes no folder, a device unmounted by hand
// is deactivated by unmountDevice, and shutting down an inactive pool is a typed no-op.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { Driver } from '../../src/driver/driver.js';
import { sysUmount2 } from '../../src/ioctl/libc.js';
import { listLoops } from '../../src/loop/index.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { DeviceBusyError, PoolOptionConflictError } from '../../src/thin/errors.js';
import { isMounted } from '../../src/thin/mount.js';
import { dmsetup, newHome, requireKernelTier, SMALL, sweep } from './thin-support.js';
import { deviceName } from '../../src/dm/names.js';
import { bytes } from '../../src/structs/units.js';

requireKernelTier();

const without = (...keys: string[]) => SMALL.filter((o) => !keys.some((k) => o.startsWith(`${k}=`)));

describe('options an existing pool cannot take', () => {
  let dm: DeviceMapper;
  let home: string;
  beforeAll(async () => {
    dm = DeviceMapper.open({ udev: 'off' });
    await sweep();
    home = newHome('fixed');
    const set = await DeviceSet.open(home, SMALL);
    await set.addDevice('keep', '');
    await set.close(); // the pool stays active
  });
  afterAll(async () => {
    await sweep();
    dm.close();
    rmSync(home, { recursive: true, force: true });
  });

  test.each([
    [['dm.basesize=128M'], 'dm.basesize', '128M', '64M'],
    [['dm.loopmetadatasize=32M'], 'dm.loopmetadatasize', '32M', '16M'],
    [['dm.loopdatasize=1G'], 'dm.loopdatasize', '1G', '256M'],
    [['dm.blocksize=128K'], 'dm.blocksize', '128K', '64K'],
  ])('%j on an active pool: PoolOptionConflictError, the pool untouched', async (given, key, value, current) => {
    const keyOf = (o: string) => o.slice(0, o.indexOf('='));
    const before = { ls: dmsetup('ls'), table: dmsetup('table') };
    const err = await DeviceSet.open(home, [...without(...given.map(keyOf)), ...given]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PoolOptionConflictError);
    expect(err).toMatchObject({ key, code: 'EINVAL', current });
    expect((err as Error).message).toContain(`${key}="${value}": the pool already has ${current}`);
    expect({ ls: dmsetup('ls'), table: dmsetup('table') }).toEqual(before);
    // The lock was let go: the same home opens with its own options.
    const set = await DeviceSet.open(home, SMALL);
    expect(set.deviceRecords().find((r) => r.hash === '')?.sizeBytes).toBe(BigInt(64 * 2 ** 20));
    await set.close();
  });

  test('an inactive pool: the block size is read from its metadata superblock', async () => {
    const set = await DeviceSet.open(home, SMALL);
    await set.shutdown();
    const err = await DeviceSet.open(home, [...SMALL, 'dm.blocksize=128K']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PoolOptionConflictError);
    expect(dm.list().filter((d) => d.name.startsWith('dmtest-'))).toEqual([]);
    expect(listLoops().filter((l) => l.backingFile.startsWith(`${home}/`))).toEqual([]);
  });

  test('the same values, and a data size the pool has grown past, are accepted', async () => {
    const set = await DeviceSet.open(home, [...SMALL, 'dm.blocksize=64K']);
    await set.resizePool(bytes(512 * 2 ** 20));
    await set.close();
    const again = await DeviceSet.open(home, SMALL); // dm.loopdatasize=256M: what the pool was made with
    expect(again.status().data.totalBytes).toBe(512n * 2n ** 20n);
    await again.shutdown();
  });

  test('dm.fs differing from the base file system is refused', async () => {
    const h = newHome('fixed-fs');
    try {
      const opts = [...without('dm.basesize'), 'dm.basesize=300M'];
      const set = await DeviceSet.open(h, opts);
      await set.close();
      const err = await DeviceSet.open(h, [...opts, 'dm.fs=xfs']).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PoolOptionConflictError);
      expect((err as Error).message).toMatch(/dm\.fs="xfs": the pool already has ext4/);
      const ok = await DeviceSet.open(h, [...opts, 'dm.fs=ext4']);
      await ok.shutdown();
    } finally {
      rmSync(h, { recursive: true, force: true });
    }
  });
});

describe('mounts and shutdown at their edges', () => {
  let home: string;
  beforeAll(async () => {
    await sweep();
    home = newHome('edges');
  });
  afterAll(async () => {
    await sweep();
    rmSync(home, { recursive: true, force: true });
  });

  test('a refused mount makes no mount point (DeviceSet and Driver)', async () => {
    const d = await Driver.init(home, SMALL);
    try {
      await d.create(deviceName('x'));
      const first = join(home, 'first');
      mkdirSync(first);
      await d.deviceSet.mountDevice('x', first);
      const elsewhere = join(home, 'elsewhere', 'deep');
      await expect(d.deviceSet.mountDevice('x', elsewhere, '', { createMountPoint: true })).rejects.toBeInstanceOf(DeviceBusyError);
      expect(existsSync(join(home, 'elsewhere'))).toBe(false);
      await expect(d.get('x')).rejects.toBeInstanceOf(DeviceBusyError);
      expect(existsSync(join(home, 'mnt', 'x'))).toBe(false);
      await d.deviceSet.unmountDevice('x');
      // Made when the mount is tried: the layer's root is there.
      expect(existsSync(await d.get('x'))).toBe(true);
      await d.put('x');
    } finally {
      await d.cleanup();
    }
  });

  test('a device unmounted by hand: unmountDevice (in a later process) deactivates it', async () => {
    const set = await DeviceSet.open(home, SMALL);
    await set.addDevice('hand', '');
    const mp = join(home, 'hand');
    mkdirSync(mp);
    await set.mountDevice('hand', mp);
    await set.close(); // as the CLI: the mount outlives the process that made it
    sysUmount2(mp, 0); // umount(8) by hand
    expect(isMounted(mp)).toBe(false);
    const later = await DeviceSet.open(home, SMALL);
    expect(later.hasActivatedDevice('hand')).toBe(true);
    await later.unmountDevice('hand');
    expect(later.hasActivatedDevice('hand')).toBe(false);
    // Neither mounted nor active: that is a mistake worth saying.
    await expect(later.unmountDevice('hand')).rejects.toMatchObject({ name: 'NotMountedError', code: 'EINVAL' });
    await later.shutdown();
  });

  test('shutdownHome: an active pool goes down; a second call answers { active: false } and touches nothing', async () => {
    const set = await DeviceSet.open(home, SMALL);
    const mp = join(home, 'sh');
    mkdirSync(mp, { recursive: true });
    await set.mountDevice('hand', mp);
    const poolName = set.poolName;
    await set.close();
    const first = await DeviceSet.shutdownHome(home, SMALL);
    expect(first).toEqual({ active: true, unmounted: [{ hash: 'hand', path: mp }] });
    expect(dmsetup('ls')).not.toContain(poolName);
    const second = await DeviceSet.shutdownHome(home, SMALL);
    expect(second).toEqual({ active: false, poolName });
    expect(dmsetup('ls')).not.toContain(poolName);
    const missing = await DeviceSet.shutdownHome(join(home, 'nosuch'), SMALL);
    expect(missing.active).toBe(false);
    expect(existsSync(join(home, 'nosuch'))).toBe(false);
  });
});
