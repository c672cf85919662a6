// The pool's guards in a real kernel: a pool whose metadata the kernel will not change any more,
// made so on purpose three ways, and an xfs layer's ENOSPC retries.
//   - ro: the pool's table reloaded with dm-thin's `read_only` feature under an open device set;
//   - needs_check: the flag set in the superblock of an inactive pool (as dm-thin's abort_transaction
//     leaves it after a metadata error): the kernel will not switch that pool to write mode;
//   - Fail: the metadata device (a linear device of ours) swapped for an `error` table, so the
//     pool's next commit fails and so does the abort's re-read (dm-thin's metadata_operation_failed).
// Creating, snapshotting, deleting are refused with the typed errors, activation is refused (Fail)
// or read-only (ro, needs_check), status says so, and shutdown still works. dmsetup is the oracle.
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { deviceName } from '../../src/dm/names.js';
import { isThinPoolTarget, type Target } from '../../src/dm/targets.js';
import { attachLoop } from '../../src/loop/index.js';
import { blockChecksum, SUPERBLOCK_CSUM_XOR, THIN_METADATA_BLOCK_SIZE, THIN_SUPERBLOCK_LOCATION } from '../../src/structs/thin-metadata.js';
import { sectors } from '../../src/structs/units.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { INTENT_FILE } from '../../src/thin/metadata-store.js';
import { PoolReadOnlyError, PoolStateError } from '../../src/thin/errors.js';
import { findExecutable } from '../../src/thin/options.js';
import { linearOver, waitFor } from './support/env.js';
import { dmsetup, newHome, requireKernelTier, SMALL, sweep, thinIdsOf } from './thin-support.js';

requireKernelTier();

/** dm-thin-metadata.h: the superblock flag the kernel sets after a metadata error. */
const THIN_METADATA_NEEDS_CHECK_FLAG = 1 << 0;
/** thin_disk_superblock: __le32 csum, then __le32 flags. */
const SUPERBLOCK_FLAGS_OFFSET = 4;
const MiB = 1n << 20n;

/** Set or clear needs_check in an inactive pool's metadata file (thin_check --clear-needs-check-flag clears it). */
function setNeedsCheck(metadataFile: string, on: boolean): void {
  const fd = openSync(metadataFile, 'r+');
  try {
    const at = THIN_SUPERBLOCK_LOCATION * THIN_METADATA_BLOCK_SIZE;
    const block = Buffer.alloc(THIN_METADATA_BLOCK_SIZE);
    expect(readSync(fd, block, 0, block.length, at)).toBe(block.length);
    const flags = block.readUInt32LE(SUPERBLOCK_FLAGS_OFFSET);
    block.writeUInt32LE(on ? flags | THIN_METADATA_NEEDS_CHECK_FLAG : flags & ~THIN_METADATA_NEEDS_CHECK_FLAG, SUPERBLOCK_FLAGS_OFFSET);
    block.writeUInt32LE(blockChecksum(block, SUPERBLOCK_CSUM_XOR), 0);
    writeSync(fd, block, 0, block.length, at);
  } finally {
    closeSync(fd);
  }
}

describe('pool guards', () => {
  let dm: DeviceMapper;
  const homes: string[] = [];
  const sets: DeviceSet[] = [];
  const home = (tag: string) => {
    const h = newHome(tag);
    homes.push(h);
    return h;
  };
  const open = async (h: string, opts: string[]) => {
    const set = await DeviceSet.open(h, opts);
    sets.push(set);
    return set;
  };
  beforeAll(async () => {
    dm = DeviceMapper.open({ udev: 'off' });
    await sweep();
  });
  afterEach(async () => {
    for (const s of sets.splice(0)) await s.shutdown().catch(() => undefined);
    // Every dmtest-* device (the pools, the metadata device of the Fail test) and the loops of test files.
    await sweep();
    for (const h of homes.splice(0)) rmSync(h, { recursive: true, force: true });
  });
  afterAll(() => dm.close());

  test('ro (the read_only feature) under an open device set: create, snapshot and delete refused; devices activate read-only', async () => {
    const h = home('ro');
    const set = await open(h, SMALL);
    await set.addDevice('a', '');
    const a = set.deviceRecords().find((r) => r.hash === 'a')!;
    const txid = set.transactionId;
    const ref = { name: set.poolName };
    const [tp] = dm.table(ref);
    if (!tp || !isThinPoolTarget(tp)) throw new Error(`${set.poolName} is not a thin-pool`);
    dm.loadTable(ref, [{ ...tp, features: [...tp.features, 'read_only'] }]);
    await dm.resume(ref);
    expect(dmsetup('status', set.poolName).split(' ')).toContain('ro');

    expect(set.status()).toMatchObject({ state: 'ok', mode: 'ro', needsCheck: false });
    const create = await set.addDevice('b', '').catch((e: unknown) => e);
    expect(create).toBeInstanceOf(PoolStateError);
    expect((create as Error).message).toMatch(/read-only/);
    await expect(set.addDevice('c', 'a')).rejects.toBeInstanceOf(PoolStateError);
    const del = await set.deleteDevice('a').catch((e: unknown) => e);
    expect(del).toBeInstanceOf(PoolReadOnlyError);
    expect(del).toMatchObject({ mode: 'ro', code: 'EIO' });
    expect(set.hasDevice('a')).toBe(true);
    // A device activated now is read-only: the pool takes no new mapping.
    const info = await set.activateDevice('a');
    expect(info.readOnly).toBe(true);
    expect(dmsetup('info', set.naming.deviceName('a'))).toMatch(/^State:\s+ACTIVE \(READ-ONLY\)$/m);
    // Nothing changed in the pool or the metadata.
    expect(set.transactionId).toBe(txid);
    expect(thinIdsOf(set.poolName, dm)).toEqual([0, a.deviceId]);
    expect(
      set
        .deviceRecords()
        .map((r) => r.hash)
        .sort(),
    ).toEqual(['', 'a']);
    await set.shutdown();
    expect(dm.info({ name: set.poolName })).toBeNull();
  });

  test('needs_check (set in the superblock): the kernel keeps the pool read-only; changes refused, layers mount read-only; cleared, it is writable', async () => {
    const h = home('check');
    const set = await open(h, SMALL);
    await set.addDevice('a', '');
    const mp = join(h, 'mnt');
    mkdirSync(mp);
    await set.mountDevice('a', mp);
    writeFileSync(join(mp, 'hello'), 'kept\n');
    await set.unmountDevice('a');
    const metadataFile = set.status().metadataFile;
    await set.shutdown();

    setNeedsCheck(metadataFile, true);
    const flagged = await open(h, SMALL);
    expect(dmsetup('status', flagged.poolName).split(' ')).toEqual(expect.arrayContaining(['ro', 'needs_check']));
    expect(flagged.status()).toMatchObject({ state: 'ok', mode: 'ro', needsCheck: true });
    const create = await flagged.addDevice('b', '').catch((e: unknown) => e);
    expect(create).toBeInstanceOf(PoolStateError);
    expect((create as Error).message).toMatch(/needs_check/);
    await expect(flagged.addDevice('c', 'a')).rejects.toThrow(/needs_check/);
    const del = await flagged.deleteDevice('a').catch((e: unknown) => e);
    expect(del).toBeInstanceOf(PoolReadOnlyError);
    expect(del).toMatchObject({ mode: 'needs_check' });
    expect((await flagged.activateDevice('a')).readOnly).toBe(true);
    await flagged.mountDevice('a', mp);
    expect(readFileSync(join(mp, 'hello'), 'utf8')).toBe('kept\n');
    expect(() => writeFileSync(join(mp, 'new'), 'x')).toThrow(/EROFS/);
    await flagged.unmountDevice('a');
    await flagged.shutdown();
    expect(dm.info({ name: flagged.poolName })).toBeNull();

    // thin_check's --clear-needs-check-flag: the pool is writable again.
    setNeedsCheck(metadataFile, false);
    const fixed = await open(h, SMALL);
    expect(fixed.status()).toMatchObject({ mode: 'rw', needsCheck: false });
    await fixed.addDevice('b', 'a');
    expect(fixed.hasDevice('b')).toBe(true);
    await fixed.shutdown();
  });

  test.each(['shutdown', 'shutdownHome'] as const)(
    'Fail (the metadata device errors): create, snapshot, activate and delete refused, status says Fail, %s works',
    async (down) => {
      const h = home('fail');
      const dataFile = join(h, 'data');
      const metaFile = join(h, 'meta');
      const metaBytes = 16n * MiB;
      writeFileSync(dataFile, '');
      truncateSync(dataFile, Number(256n * MiB));
      writeFileSync(metaFile, '');
      truncateSync(metaFile, Number(metaBytes));
      // Detached by the sweep (files under a dmtest-* folder), the linear device too (a dmtest-* name).
      const data = await attachLoop(dataFile);
      const meta = await attachLoop(metaFile);
      const metaName = deviceName(`dmtest-guard-meta-${process.pid}`);
      const metaSectors = metaBytes / 512n;
      await dm.create(metaName, { table: linearOver(meta, metaSectors) });
      const opts = [
        ...SMALL.filter((o) => !o.startsWith('dm.loop')),
        `dm.datadev=${data.path}`,
        `dm.metadatadev=${join(dm.mapperDir, metaName)}`,
      ];
      const set = await open(h, opts);
      await set.addDevice('a', '');
      expect(set.status()).toMatchObject({ state: 'ok', mode: 'rw' });

      const errorTable: Target[] = [{ type: 'error', startSector: sectors(0n), lengthSectors: sectors(metaSectors) }];
      dm.loadTable({ name: metaName }, errorTable);
      await dm.resume({ name: metaName });
      // The status read commits (no DM_NOFLUSH_FLAG): the superblock write fails, the abort's
      // re-read fails, the pool goes to Fail ("Error" for the read in which that happens).
      await waitFor(() => set.status().state === 'Fail', 'the pool to fail');
      expect(dmsetup('status', set.poolName).split(' ')).toContain('Fail');

      const create = await set.addDevice('b', '').catch((e: unknown) => e);
      expect(create).toBeInstanceOf(PoolStateError);
      expect((create as Error).message).toMatch(/status is Fail/);
      await expect(set.addDevice('c', 'a')).rejects.toThrow(/status is Fail/);
      const act = await set.activateDevice('a').catch((e: unknown) => e);
      expect(act).toBeInstanceOf(PoolStateError);
      expect((act as Error).message).toMatch(/status is Fail: no thin device can be activated/);
      // Refused before anything was made.
      expect(dm.info({ name: set.naming.deviceName('a') })).toBeNull();
      const del = await set.deleteDevice('a').catch((e: unknown) => e);
      expect(del).toBeInstanceOf(PoolStateError);
      expect((del as Error).message).toMatch(/status is Fail/);
      expect(set.hasDevice('a')).toBe(true);
      expect(existsSync(join(h, 'metadata', INTENT_FILE))).toBe(false);

      if (down === 'shutdown') {
        expect((await set.shutdown()).unmounted).toEqual([]);
      } else {
        // Another process's view: the pool's transaction id cannot be read, open fails, and the
        // pool is taken down from the kernel's side.
        await set.close();
        expect(await DeviceSet.shutdownHome(h, opts)).toEqual({ active: true, unmounted: [] });
      }
      expect(dm.info({ name: set.poolName })).toBeNull();
      expect(dm.info({ name: set.naming.deviceName('') })).toBeNull();
      // Our metadata device is still ours to remove.
      await dm.remove({ name: metaName });
    },
  );

  test('dm.xfs_nospace_max_retries: written to the mounted layer’s /sys/fs/xfs/<dev>/error/metadata/ENOSPC/max_retries', async () => {
    expect(findExecutable('mkfs.xfs'), 'mkfs.xfs is not on PATH (xfsprogs; see docs/testing.md)').not.toBeNull();
    const h = home('xfs');
    // xfsprogs refuses file systems under 300 MiB; thin devices are sparse, so this costs little.
    const xfs = [...SMALL.filter((o) => !o.startsWith('dm.basesize')), 'dm.basesize=320M', 'dm.fs=xfs'];
    const mp = join(h, 'mnt');
    mkdirSync(mp);
    const retriesOf = (set: DeviceSet) => {
      const info = dm.info({ name: set.naming.deviceName('x') });
      if (!info) throw new Error('x is not active');
      return `/sys/fs/xfs/dm-${info.dev.minor}/error/metadata/ENOSPC/max_retries`;
    };
    const set = await open(h, xfs);
    await set.addDevice('x', '');
    await set.mountDevice('x', mp);
    const sysfile = retriesOf(set);
    expect(existsSync(sysfile), `${sysfile}: the guest's xfs has no error configuration in sysfs`).toBe(true);
    // The kernel's default: retry forever (-1).
    expect(readFileSync(sysfile, 'utf8').trim()).toBe('-1');
    await set.unmountDevice('x');
    expect(existsSync(sysfile)).toBe(false);
    await set.shutdown();

    const set2 = await open(h, [...xfs, 'dm.xfs_nospace_max_retries=0']);
    await set2.mountDevice('x', mp);
    const sysfile2 = retriesOf(set2);
    expect(readFileSync(sysfile2, 'utf8').trim()).toBe('0');
    // Only ENOSPC's: EIO's stays the default.
    expect(readFileSync(sysfile2.replace('/ENOSPC/', '/EIO/'), 'utf8').trim()).toBe('-1');
    await set2.unmountDevice('x');
    await set2.shutdown();
  });
});
