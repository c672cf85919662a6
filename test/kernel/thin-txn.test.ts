// The pool manager's transactions against the kernel's pool: a discard that must not run under a
// mounted device, a delete that destroyed data and then found the device busy, dm devices a crash
// left half-made, and a pool that turned read-only with an intent pending.
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { deviceName } from '../../src/dm/names.js';
import { isThinPoolTarget, type Target } from '../../src/dm/targets.js';
import { sysUmount2 } from '../../src/ioctl/libc.js';
import { sectors } from '../../src/structs/units.js';
import type { CrashPointName } from '../../src/thin/crash-points.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { DeviceBusyError, DeviceTableMismatchError, PoolStateError } from '../../src/thin/errors.js';
import { MetadataStore } from '../../src/thin/metadata-store.js';
import { isMounted, mount } from '../../src/thin/mount.js';
import { dmsetup, newHome, requireKernelTier, SMALL, sweep, thinIdsOf } from './thin-support.js';

requireKernelTier();

let dm: DeviceMapper;
const homes: string[] = [];
const mounts: string[] = [];
const fds: number[] = [];
beforeAll(async () => {
  dm = DeviceMapper.open({ udev: 'off' });
  await sweep();
});
afterEach(async () => {
  for (const fd of fds.splice(0)) closeSync(fd);
  for (const m of mounts.splice(0)) if (isMounted(m)) sysUmount2(m, 0);
  await sweep();
  for (const h of homes.splice(0)) rmSync(h, { recursive: true, force: true });
});
afterAll(() => dm.close());

/** A pool with snapshot "a" holding /hello; `hook` is where the test acts at a crash point. */
async function poolWithLayer(options: string[], hook: (p: CrashPointName) => void = () => {}) {
  const home = newHome('txn');
  homes.push(home);
  const set = await DeviceSet.open(home, [...SMALL, ...options], { hook: (p) => hook(p) });
  await set.addDevice('a', '');
  const mp = join(home, 'm', 'a');
  mkdirSync(mp, { recursive: true });
  mounts.push(mp);
  await set.mountDevice('a', mp);
  writeFileSync(join(mp, 'hello'), 'kept\n');
  await set.unmountDevice('a');
  return { home, set, mp };
}

describe('delete with dm.blkdiscard', () => {
  test('a device mounted after the busy check is found by the O_EXCL open: nothing is discarded', async () => {
    let onIntent = false;
    const elsewhere = newHome('txn-mnt');
    homes.push(elsewhere);
    mounts.push(elsewhere);
    const { set, mp } = await poolWithLayer(['dm.blkdiscard=true'], (p) => {
      // Another process mounts the device between the busy check and the discard.
      if (onIntent && p === 'delete:intent-written') mount(set.devicePath('a'), elsewhere, 'ext4', []);
    });
    const before = await set.getDeviceStatus('a');
    expect(before.mappedSectors).toBeGreaterThan(0n);
    await set.activateDevice('a');
    onIntent = true;
    await expect(set.deleteDevice('a')).rejects.toBeInstanceOf(DeviceBusyError);
    onIntent = false;
    sysUmount2(elsewhere, 0);
    expect(set.hasDevice('a')).toBe(true);
    expect((await set.getDeviceStatus('a')).mappedSectors).toBe(before.mappedSectors);
    await set.mountDevice('a', mp);
    expect(readFileSync(join(mp, 'hello'), 'utf8')).toBe('kept\n');
    await set.unmountDevice('a');
    await set.deleteDevice('a');
    expect(set.hasDevice('a')).toBe(false);
    await set.shutdown();
  });

  test('a device held open once its blocks are discarded stays a pending deletion, finished by the next open', async () => {
    let held = false;
    const { home, set } = await poolWithLayer(['dm.blkdiscard=true'], (p) => {
      if (held && p === 'delete:discarded') fds.push(openSync(set.devicePath('a'), 'r'));
    });
    const id = set.deviceRecords().find((d) => d.hash === 'a')!.deviceId;
    held = true;
    await set.deleteDevice('a');
    held = false;
    // Never shown as a device again (its blocks are zeros now), its thin id still in the pool.
    expect(set.hasDevice('a')).toBe(false);
    expect(set.list()).not.toContain('a');
    expect(set.deviceRecords().find((d) => d.hash === 'a')?.deleted).toBe(true);
    expect(thinIdsOf(set.poolName, dm)).toContain(id);
    expect(MetadataStore.open(join(home, 'metadata')).readIntent()).toBe(null);
    for (const fd of fds.splice(0)) closeSync(fd);
    await set.shutdown();
    const again = await DeviceSet.open(home, [...SMALL, 'dm.blkdiscard=true']);
    expect(again.deviceRecords().some((d) => d.hash === 'a')).toBe(false);
    expect(thinIdsOf(again.poolName, dm)).not.toContain(id);
    await again.shutdown();
  });
});

describe('activate and a dm device of the same name', () => {
  const halfMade: [string, (set: DeviceSet, name: string) => Promise<void>][] = [
    ['without a table (DEV_CREATE only)', async (_set, name) => void (await dm.create(deviceName(name)))],
    [
      'with its table loaded, not resumed',
      async (set, name) => {
        const rec = set.deviceRecords().find((d) => d.hash === 'a')!;
        const pool = dm.info({ name: set.poolName })!;
        await dm.create(deviceName(name));
        dm.loadTable({ name: deviceName(name) }, [
          {
            type: 'thin',
            startSector: sectors(0),
            lengthSectors: sectors(rec.sizeBytes / 512n),
            poolDevice: `${pool.dev.major}:${pool.dev.minor}`,
            thinId: rec.deviceId,
          },
        ]);
      },
    ],
    [
      'suspended',
      async (set, name) => {
        await set.activateDevice('a');
        await dm.suspend({ name: deviceName(name) });
      },
    ],
    [
      'with another table, not open',
      async (set, name) => {
        const rec = set.deviceRecords().find((d) => d.hash === 'a')!;
        await dm.create(deviceName(name), {
          table: [{ type: 'zero', startSector: sectors(0), lengthSectors: sectors(rec.sizeBytes / 512n) }],
        });
      },
    ],
  ];
  for (const [what, make] of halfMade) {
    test(`a device ${what} is repaired: mount works`, async () => {
      const { set, mp } = await poolWithLayer([]);
      const name = set.devicePath('a').split('/').pop()!;
      await make(set, name);
      const info = await set.activateDevice('a');
      expect(info.liveTable).toBe(true);
      expect(info.suspended).toBe(false);
      const rec = set.deviceRecords().find((d) => d.hash === 'a')!;
      // dmsetup as the oracle: the live table is our thin target.
      const pool = dm.info({ name: set.poolName })!;
      expect(dmsetup('table', name)).toBe(`0 ${rec.sizeBytes / 512n} thin ${pool.dev.major}:${pool.dev.minor} ${rec.deviceId}`);
      await set.mountDevice('a', mp);
      expect(readFileSync(join(mp, 'hello'), 'utf8')).toBe('kept\n');
      await set.unmountDevice('a');
      await set.deleteDevice('a');
      expect(dm.info({ name: deviceName(name) })).toBe(null);
      await set.shutdown();
    });
  }

  test('a device with another table that is held open is a typed error, and is left alone', async () => {
    const { set } = await poolWithLayer([]);
    const name = set.devicePath('a').split('/').pop()!;
    const rec = set.deviceRecords().find((d) => d.hash === 'a')!;
    await dm.create(deviceName(name), { table: [{ type: 'zero', startSector: sectors(0), lengthSectors: sectors(rec.sizeBytes / 512n) }] });
    fds.push(openSync(set.devicePath('a'), 'r'));
    await expect(set.activateDevice('a')).rejects.toBeInstanceOf(DeviceTableMismatchError);
    expect(dmsetup('table', name)).toMatch(/ zero$/);
    for (const fd of fds.splice(0)) closeSync(fd);
    expect((await set.activateDevice('a')).liveTable).toBe(true);
    expect(dmsetup('table', name)).toMatch(/ thin /);
    await set.shutdown();
  });
});

/** Reload the pool's table with or without the `read_only` feature. */
async function setPoolReadOnly(poolName: string, readOnly: boolean): Promise<void> {
  const ref = { name: deviceName(poolName) };
  const [tp] = dm.table(ref);
  if (!tp || !isThinPoolTarget(tp)) throw new Error(`${poolName} is not a thin-pool`);
  const features = tp.features.filter((f) => f !== 'read_only');
  const table: Target[] = [{ ...tp, features: readOnly ? [...features, 'read_only'] : features }];
  dm.loadTable(ref, table);
  await dm.suspend(ref);
  await dm.resume(ref);
}

describe('a read-only pool with an intent pending', () => {
  test('opens read-only: a layer mounts and reads, every change is refused, the intent waits for a writable open', async () => {
    const { home, set, mp } = await poolWithLayer([]);
    await set.addDevice('b', '');
    const b = set.deviceRecords().find((d) => d.hash === 'b')!;
    const poolName = set.poolName;
    const txid = set.transactionId;
    set.close();
    // A delete of "b" that crashed after its intent.
    const store = MetadataStore.open(join(home, 'metadata'));
    store.writeIntent({ op: 'delete', hash: 'b', thinId: b.deviceId, oldTransactionId: txid, newTransactionId: txid + 1n });
    await setPoolReadOnly(poolName, true);
    expect(dmsetup('status', poolName).split(' ')).toContain('ro');

    const ro = await DeviceSet.open(home, SMALL);
    expect(ro.reconciled.action).toBe('pending');
    expect(ro.hasDevice('a')).toBe(true);
    expect(ro.hasDevice('b')).toBe(false);
    await ro.mountDevice('a', mp);
    expect(readFileSync(join(mp, 'hello'), 'utf8')).toBe('kept\n');
    await ro.unmountDevice('a');
    const refused = await ro.deleteDevice('a').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PoolStateError);
    expect((refused as Error).message).toMatch(/\bro\b/);
    await expect(ro.addDevice('c', 'a')).rejects.toBeInstanceOf(PoolStateError);
    expect(store.readIntent()?.hash).toBe('b');
    expect(thinIdsOf(poolName, dm)).toContain(b.deviceId);
    ro.close();

    await setPoolReadOnly(poolName, false);
    const rw = await DeviceSet.open(home, SMALL);
    expect(rw.reconciled.action).toBe('rolled-forward');
    expect(rw.hasDevice('b')).toBe(false);
    expect(thinIdsOf(poolName, dm)).not.toContain(b.deviceId);
    expect(store.readIntent()).toBe(null);
    await rw.shutdown();
  });
});
