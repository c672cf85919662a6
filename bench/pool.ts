// The bench's own thin pool on two sparse loop files, with thin id 0 as the origin (an ext4 file
// system when asked, for the dmsetup+mount layer loop; never written during the timed runs).
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DeviceMapper } from '../src/dm/device-mapper.js';
import { createThin } from '../src/dm/thin-messages.js';
import { attachLoop, detachLoop, type LoopDevice } from '../src/loop/index.js';
import { sectors } from '../src/structs/units.js';
import { thinId, type DeviceName, deviceName } from '../src/dm/names.js';

/** Size of every snapshot device the cycles make (the C programs use the same). */
export const SNAP_SECTORS = 2097152n;
/** The origin's size: what the ext4 base has. */
export const BASE_SECTORS = 131072n;
const MiB = 1024 * 1024;

export interface BenchPool {
  name: DeviceName;
  /** "maj:min" of the pool device, as thin tables name it. */
  dev: string;
  originId: number;
  dir: string;
  loops: LoopDevice[];
}

function sparse(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, bytes);
  } finally {
    closeSync(fd);
  }
}

export async function createPool(dm: DeviceMapper, name: DeviceName, opts: { mkfs: boolean }): Promise<BenchPool> {
  const dir = mkdtempSync(join(tmpdir(), 'dm-bench-'));
  sparse(join(dir, 'data'), 512 * MiB);
  sparse(join(dir, 'metadata'), 32 * MiB);
  const data = await attachLoop(join(dir, 'data'));
  const meta = await attachLoop(join(dir, 'metadata'));
  const info = await dm.create(name, {
    table: [
      {
        type: 'thin-pool',
        startSector: sectors(0n),
        lengthSectors: sectors(BigInt(512 * MiB) / 512n),
        metadataDevice: `${meta.major}:${meta.minor}`,
        dataDevice: `${data.major}:${data.minor}`,
        dataBlockSizeSectors: 128,
        lowWaterMarkBlocks: 0n,
        features: ['skip_block_zeroing'],
      },
    ],
  });
  const pool: BenchPool = { name, dev: `${info.dev.major}:${info.dev.minor}`, originId: 0, dir, loops: [data, meta] };
  createThin(dm, { name }, thinId(pool.originId));
  if (opts.mkfs) {
    const base = deviceName(`${name}-base`);
    await dm.create(base, { table: [thinTarget(pool, pool.originId, BASE_SECTORS)] });
    execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard,lazy_itable_init=1,lazy_journal_init=1', join(dm.mapperDir, base)], {
      stdio: 'inherit',
    });
    await dm.remove({ name: base });
  }
  return pool;
}

export function thinTarget(pool: Pick<BenchPool, 'dev'>, id: number, lengthSectors = SNAP_SECTORS) {
  return {
    type: 'thin' as const,
    startSector: sectors(0n),
    lengthSectors: sectors(lengthSectors),
    poolDevice: pool.dev,
    thinId: thinId(id),
  };
}

export async function destroyPool(dm: DeviceMapper, pool: BenchPool): Promise<void> {
  await dm.remove({ name: pool.name }, { retry: true });
  for (const l of pool.loops) await detachLoop(l);
  rmSync(pool.dir, { recursive: true, force: true });
}
