// Discard in a real kernel: thin devices are mounted with `discard` unless dm.mountopt=nodiscard,
// so a file deleted in a layer gives its blocks back to the pool (dmsetup status, the oracle) and,
// through the pool's discard passdown and the loop driver's hole punching, to the loop data file
// (its st_blocks). With nodiscard they stay until fstrim. dm.blkdiscard does the same for a whole
// device when it is deleted; dm.blkdiscard=false leaves the loop file as it was.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DeviceSet } from '../../src/thin/device-set.js';
import { dmsetup, newHome, requireKernelTier, SMALL, sweep, mountAt } from './thin-support.js';

requireKernelTier();

const MiB = 1024 * 1024;
/** The file written and deleted: 16 MiB, 256 of the pool's 64 KiB blocks. */
const FILE_BYTES = 16 * MiB;
/** What the file system's own writes (journal, bitmaps: copy-on-write of blocks the base shares) may move. */
const SLACK = 2 * MiB;
const BLOCK = 64 * 1024;

/** The pool's used data in bytes, from dmsetup status (<used>/<total> data blocks). */
function usedData(pool: string): number {
  const words = dmsetup('status', pool).split(' ');
  const [used] = (words[5] ?? '').split('/');
  return Number(used) * BLOCK;
}

/** Bytes the file occupies on its file system (st_blocks), holes not counted. */
const allocated = (file: string): number => statSync(file).blocks * 512;

function writeFile(path: string): void {
  const fd = openSync(path, 'w');
  try {
    for (let done = 0; done < FILE_BYTES; done += MiB) writeSync(fd, randomBytes(MiB));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** sync(1) until `ok(used)` or `ms` pass (a journal commit issues ext4's discards); the last reading. */
async function settle(pool: string, ok: (used: number) => boolean, ms = 5000): Promise<number> {
  const end = Date.now() + ms;
  for (;;) {
    execFileSync('sync');
    const used = usedData(pool);
    if (ok(used) || Date.now() > end) return used;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('discard', () => {
  let home: string;
  let set: DeviceSet;
  let dataFile: string;
  const mnt = (n: string): string => {
    const p = join(home, 'm', n);
    mkdirSync(p, { recursive: true });
    return p;
  };
  const reopen = async (extra: string[]): Promise<void> => {
    await set.close();
    set = await DeviceSet.open(home, [...SMALL, ...extra]);
  };

  beforeAll(async () => {
    await sweep();
    home = newHome('discard');
    set = await DeviceSet.open(home, SMALL);
    dataFile = join(home, 'devicemapper', 'data');
  });
  afterAll(async () => {
    await set?.shutdown().catch(() => undefined);
    await sweep();
    rmSync(home, { recursive: true, force: true });
  });

  test('the pool passes discards down to its loop data device', () => {
    // Without passdown nothing below could ever be punched out: the precondition of every test here.
    expect(dmsetup('status', set.poolName).split(' ')).toContain('discard_passdown');
    expect(readFileSync(`/sys/block/${dataLoopName(set.poolName)}/queue/discard_max_bytes`, 'utf8').trim()).not.toBe('0');
  });

  test('by default a layer is mounted with discard: a deleted file gives its blocks back to the pool and the loop file', async () => {
    await set.addDevice('a');
    const m = mnt('a');
    await set.mountDevice('a', m);
    expect(mountAt(m)).toMatchObject({ fsType: 'ext4' });
    expect(mountAt(m).superOptions).toContain('discard');

    writeFile(join(m, 'f'));
    execFileSync('sync');
    const used1 = usedData(set.poolName);
    const alloc1 = allocated(dataFile);
    const mapped1 = (await set.getDeviceStatus('a')).mappedSectors;

    unlinkSync(join(m, 'f'));
    const used2 = await settle(set.poolName, (u) => used1 - u >= FILE_BYTES - SLACK);
    expect(used1 - used2).toBeGreaterThanOrEqual(FILE_BYTES - SLACK);
    // Our status agrees with dmsetup's.
    expect(Number(set.status().data.usedBytes)).toBe(used2);
    const mapped2 = (await set.getDeviceStatus('a')).mappedSectors;
    expect(Number(mapped1 - mapped2) * 512).toBeGreaterThanOrEqual(FILE_BYTES - SLACK);
    // Sparse again: the pool passed the discards down, the loop driver punched holes in its file.
    expect(alloc1 - allocated(dataFile)).toBeGreaterThanOrEqual(FILE_BYTES - SLACK);
    await set.unmountDevice('a');
  });

  test('dm.mountopt=nodiscard: a deleted file keeps its blocks until fstrim', async () => {
    await reopen(['dm.mountopt=nodiscard']);
    const m = mnt('a');
    await set.mountDevice('a', m);
    expect(mountAt(m).superOptions).not.toContain('discard');

    writeFile(join(m, 'g'));
    execFileSync('sync');
    const used1 = usedData(set.poolName);
    const alloc1 = allocated(dataFile);
    unlinkSync(join(m, 'g'));
    // Three seconds of syncs: what discard would have returned by now (above: at the first sync).
    const used2 = await settle(set.poolName, () => false, 3000);
    expect(used2).toBeGreaterThanOrEqual(used1);
    expect(allocated(dataFile)).toBeGreaterThanOrEqual(alloc1);

    // The blocks were free in the file system all along: fstrim hands them back.
    execFileSync('fstrim', [m]);
    const used3 = await settle(set.poolName, (u) => used2 - u >= FILE_BYTES - SLACK);
    expect(used2 - used3).toBeGreaterThanOrEqual(FILE_BYTES - SLACK);
    expect(alloc1 - allocated(dataFile)).toBeGreaterThanOrEqual(FILE_BYTES - SLACK);
    await set.unmountDevice('a');
  });

  /** A new layer with a 16 MiB file, unmounted; the pool's and the loop file's bytes before deleting it. */
  async function layerWithFile(hash: string): Promise<{ used: number; alloc: number }> {
    await set.addDevice(hash);
    const m = mnt(hash);
    await set.mountDevice(hash, m);
    writeFile(join(m, 'f'));
    await set.unmountDevice(hash);
    execFileSync('sync');
    return { used: usedData(set.poolName), alloc: allocated(dataFile) };
  }

  test('deleting a device discards it first (dm.blkdiscard, on for loop files): the loop file is sparse again', async () => {
    expect(set.options.blkDiscard).toBe(true);
    const before = await layerWithFile('b');
    await set.deleteDevice('b');
    const used = await settle(set.poolName, (u) => before.used - u >= FILE_BYTES - SLACK);
    expect(before.used - used).toBeGreaterThanOrEqual(FILE_BYTES - SLACK);
    expect(before.alloc - allocated(dataFile)).toBeGreaterThanOrEqual(FILE_BYTES - SLACK);
  });

  test('dm.blkdiscard=false: the pool frees the blocks, the loop file keeps them', async () => {
    await reopen(['dm.mountopt=nodiscard', 'dm.blkdiscard=false']);
    expect(set.options.blkDiscard).toBe(false);
    const before = await layerWithFile('c');
    await set.deleteDevice('c');
    const used = await settle(set.poolName, (u) => before.used - u >= FILE_BYTES - SLACK);
    // Deleting a thin id frees its blocks in the pool's space map and sends nothing down.
    expect(before.used - used).toBeGreaterThanOrEqual(FILE_BYTES - SLACK);
    expect(allocated(dataFile)).toBeGreaterThanOrEqual(before.alloc);
  });
});

/** The loop device (sysfs name, `loop3`) under the pool's data device, from its table. */
function dataLoopName(pool: string): string {
  // thin-pool <metadata dev> <data dev> ...
  const [, , , metaDev, dataDev] = dmsetup('table', pool).split(' ');
  expect(metaDev).toMatch(/^\d+:\d+$/);
  return readFileSync(`/sys/dev/block/${dataDev}/uevent`, 'utf8').match(/^DEVNAME=(.+)$/m)![1]!;
}
