// A new pool's dm.metadatadev in a real kernel: zeroed by the user (the first 4 KiB) it becomes
// the pool's metadata; anything else is refused with the dd command to run and not one byte
// written; a device holding a pool's superblock is adopted, never formatted again.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { attachLoop, detachLoop, type LoopDevice } from '../../src/loop/index.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { MetadataDeviceNotZeroedError } from '../../src/thin/metadata-device.js';
import { dmsetup, newHome, requireKernelTier, sweep, thinIdsOf } from './thin-support.js';

requireKernelTier();

const MiB = 1 << 20;
const THIN_SUPERBLOCK_MAGIC = 27022010n;

describe('dm.metadatadev of a new pool', () => {
  const h = newHome('mdev');
  let data: LoopDevice;
  let meta: LoopDevice;
  const metaFile = join(h, 'meta');
  const opts = () => [
    'dm.basesize=64M',
    'dm.prefix=dmtest',
    'dm.min_free_space=0%',
    `dm.datadev=${data.path}`,
    `dm.metadatadev=${meta.path}`,
  ];
  const ours = () =>
    dmsetup('ls')
      .split('\n')
      .filter((l) => l.startsWith('dmtest-'));
  /** The metadata device's bytes, read through its backing file (what dd and the kernel wrote). */
  const digest = () => createHash('sha256').update(readFileSync(metaFile)).digest('hex');

  beforeAll(async () => {
    for (const [name, size] of [
      ['data', 256 * MiB],
      ['meta', 16 * MiB],
    ] as const) {
      const f = join(h, name);
      writeFileSync(f, '');
      truncateSync(f, size);
    }
    data = await attachLoop(join(h, 'data'));
    meta = await attachLoop(metaFile);
  });
  afterAll(async () => {
    await sweep();
    for (const l of [data, meta]) if (l) await detachLoop(l).catch(() => undefined);
    rmSync(h, { recursive: true, force: true });
  });

  test('anything but zeros or a superblock: refused with the dd command, not one byte written, no home left', async () => {
    // Looks like data (a file system's first block), not like a pool.
    const garbage = Buffer.alloc(64 * 1024);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 131 + 7) & 0xff;
    writeFileSync(meta.path, garbage);
    const before = digest();
    const home = join(h, 'home-refused');
    let err: unknown;
    try {
      await DeviceSet.open(home, opts());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MetadataDeviceNotZeroedError);
    const command = `dd if=/dev/zero of=${meta.path} bs=4096 count=1`;
    expect(err).toMatchObject({ code: 'EINVAL', path: meta.path, command });
    expect((err as Error).message).toContain(command);
    expect(digest()).toBe(before);
    expect(ours()).toEqual([]);
    // The home it made is gone again (all or nothing), the lock included.
    expect(existsSync(home) ? readdirSync(home) : []).toEqual([]);

    // One non-zero byte at the end of the first 4 KiB is enough to refuse.
    const almost = Buffer.alloc(4096);
    almost[4095] = 1;
    writeFileSync(meta.path, almost);
    const before2 = digest();
    await expect(DeviceSet.open(home, opts())).rejects.toBeInstanceOf(MetadataDeviceNotZeroedError);
    expect(digest()).toBe(before2);
    rmSync(home, { recursive: true, force: true });
  });

  test('zeroed with the dd command it gave: the pool is made on it; reopened, then adopted by a new home', async () => {
    const garbage = Buffer.alloc(4096, 0xa5);
    writeFileSync(meta.path, garbage);
    const home = join(h, 'home');
    const err = (await DeviceSet.open(home, opts()).catch((e: unknown) => e)) as MetadataDeviceNotZeroedError;
    expect(err).toBeInstanceOf(MetadataDeviceNotZeroedError);
    execFileSync('sh', ['-c', err.command]);
    expect(
      readFileSync(metaFile)
        .subarray(0, 4096)
        .every((b) => b === 0),
    ).toBe(true);

    const set = await DeviceSet.open(home, opts());
    expect(dmsetup('table', set.poolName)).toContain(`thin-pool ${meta.major}:${meta.minor} ${data.major}:${data.minor}`);
    await set.addDevice('layer', '');
    const ids = thinIdsOf(set.poolName);
    await set.shutdown();
    // The kernel formatted it: a thin superblock now.
    expect(readFileSync(metaFile).readBigUInt64LE(32)).toBe(THIN_SUPERBLOCK_MAGIC);
    const formatted = digest();

    const again = await DeviceSet.open(home, opts());
    expect(again.hasDevice('layer')).toBe(true);
    expect(thinIdsOf(again.poolName)).toEqual(ids);
    await again.shutdown();

    // A new home (no pool state) over a device with a pool: adopted, its thin ids kept and reported.
    const adopted = await DeviceSet.open(join(h, 'home-adopt'), opts());
    expect(digest()).not.toBe(formatted); // the pool ran (a new base), but was never formatted again:
    const now = thinIdsOf(adopted.poolName);
    for (const id of ids) expect(now).toContain(id);
    expect(adopted.reconciled.unknownThinIds).toEqual(ids);
    await adopted.shutdown();
  });
});
