// Growing a pool: its data, its metadata or both, on loop files or block devices. Loop files are
// grown (and fsynced) and their loop devices told (LOOP_SET_CAPACITY); a block device must have
// grown already. Then one table is loaded into the pool's inactive slot and swapped in by suspend
// + resume: dm-thin's preresume takes the new table length as the data size
// (maybe_resize_data_dev) and the metadata device's size as the metadata size
// (maybe_resize_metadata_dev). A failure never leaves the pool suspended or a table waiting in its
// inactive slot: the old table is resumed. One resize of a pool at a time (resize-lock.ts).
import { closeSync, fsyncSync, ftruncateSync, openSync, statSync } from 'node:fs';
import type { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceName } from '../dm/names.js';
import { isThinPoolTarget, type ThinPoolTarget } from '../dm/targets.js';
import { setLoopCapacity, type LoopOptions } from '../loop/index.js';
import { DM_SM_METADATA_MAX_BLOCKS } from '../structs/thin-metadata.js';
import { type Bytes, bytes, bytesToSectors, sectorsToBytes } from '../structs/units.js';
import type { CrashHook, CrashPointName } from './crash-points.js';
import { OptionError, PoolStateError } from './errors.js';
import { availableBytes, backingOf, type BackingDevice } from './pool-backing.js';
import { readPoolStatus } from './pool-health.js';
import { blockBytes, METADATA_BLOCK_BYTES, type PoolDevices } from './pool-setup.js';
import { RESIZE_LOCK_DIR, withResizeLock } from './resize-lock.js';

/**
 * The most of a metadata device dm-thin uses (THIN_METADATA_MAX_SECTORS = DM_SM_METADATA_MAX_SECTORS,
 * drivers/md/persistent-data/dm-space-map-metadata.h): the metadata space map's one index block
 * addresses DM_SM_METADATA_MAX_BLOCKS 4 KiB blocks; past that a device's space is never used.
 */
export const THIN_METADATA_MAX_BYTES = bytes(BigInt(DM_SM_METADATA_MAX_BLOCKS) * BigInt(METADATA_BLOCK_BYTES));

/**
 * What to grow to. `dataBytes`: the pool's data size, a multiple of its block size. `metadataBytes`:
 * the metadata device's size, a multiple of 4 KiB, at most THIN_METADATA_MAX_BYTES. A loop file is
 * grown to the size; a block device must hold it already (the kernel then uses the whole device for
 * metadata). Neither given: both grow to what their devices hold now (block devices that grew,
 * loop files grown by another tool).
 */
export interface PoolResizeTarget {
  dataBytes?: Bytes;
  metadataBytes?: Bytes;
}

export interface ResizeOptions {
  /** Loop options (tests pass a fault-injecting transport). */
  loop?: LoopOptions;
  /** Where the resize lock lives (resize-lock.ts). */
  lockDir?: string;
}

/**
 * Grow the pool of a DeviceSet (made by it: on its loop files or its dm.datadev/dm.metadatadev).
 * Compared with the pool's own sizes, so a resize that failed after growing a file can be run again.
 */
export async function resizePool(
  dm: DeviceMapper,
  pool: PoolDevices,
  target: PoolResizeTarget | Bytes,
  step: CrashHook = () => {},
  opts: ResizeOptions = {},
): Promise<void> {
  const t = typeof target === 'bigint' ? { dataBytes: target } : target;
  if (!pool.owned)
    throw new OptionError('resizePool', undefined, `pool ${pool.poolName} is dm.thinpooldev: it is grown by whoever made it`);
  await withResizeLock(pool.poolName, () => grow(dm, pool.poolName, t, step, opts, pool), opts.lockDir ?? RESIZE_LOCK_DIR);
}

/**
 * Grow the pool named `poolName` from the kernel's view alone: its table names the data and
 * metadata devices, loop status their backing files. For a process that does not hold the pool's
 * home (a monitor beside the process that does); the resize lock keeps it from racing with that
 * process's own resizes.
 */
export async function resizePoolByName(
  dm: DeviceMapper,
  poolName: DeviceName,
  target: PoolResizeTarget,
  step: CrashHook = () => {},
  opts: ResizeOptions = {},
): Promise<void> {
  await withResizeLock(poolName, () => grow(dm, poolName, target, step, opts), opts.lockDir ?? RESIZE_LOCK_DIR);
}

/**
 * Reload the pool's table with `change(features)` (the same devices, length and low water mark),
 * under the resize lock, swapped in by suspend + resume and guarded as a resize is. Returns whether
 * the table changed (false: the features were already so).
 */
export async function reloadPoolFeatures(
  dm: DeviceMapper,
  poolName: DeviceName,
  change: (features: readonly string[]) => string[],
  opts: ResizeOptions = {},
): Promise<boolean> {
  return withResizeLock(
    poolName,
    async () => {
      const table = dm.table({ name: poolName })[0];
      if (!table || !isThinPoolTarget(table))
        throw new PoolStateError(poolName, `the pool's table is not a thin-pool (table: ${table?.type ?? 'none'})`);
      const features = change(table.features);
      if (features.join(' ') === table.features.join(' ')) return false;
      dm.loadTable({ name: poolName }, [{ ...table, features }]);
      try {
        await dm.suspend({ name: poolName });
        await dm.resume({ name: poolName });
      } catch (e) {
        throw await restoreLive(dm, poolName, table, e);
      }
      return true;
    },
    opts.lockDir ?? RESIZE_LOCK_DIR,
  );
}

interface Side {
  what: 'data' | 'metadata';
  dev: BackingDevice;
  /** What the pool has now (its table's length; its status's metadata blocks). */
  current: Bytes;
  /** What it grows to (>= current); equal: this side is left alone. */
  want: Bytes;
  points: { grown: CrashPointName; capacity: CrashPointName };
}

async function grow(
  dm: DeviceMapper,
  poolName: DeviceName,
  target: PoolResizeTarget,
  step: CrashHook,
  opts: ResizeOptions,
  pool?: PoolDevices,
): Promise<void> {
  const table = dm.table({ name: poolName })[0];
  if (!table || !isThinPoolTarget(table))
    throw new PoolStateError(poolName, `the pool's table is not a thin-pool (table: ${table?.type ?? 'none'})`);
  const status = readPoolStatus(dm, poolName);
  if (status.state !== 'ok') throw new PoolStateError(poolName, `status is ${status.state}: a failed pool is not grown`);
  // dm-thin skips both growths of a needs_check pool without an error: say so instead.
  if (status.needsCheck) throw new PoolStateError(poolName, 'metadata needs_check: repair it (thin_check/thin_repair) before growing');
  const blockSize = blockBytes(table);
  // A DeviceSet's pool on dm.datadev/dm.metadatadev: block devices, even loops someone else set up.
  const blockOnly = pool !== undefined && pool.dataFile === undefined;
  const data = side('data', backingOf(table.dataDevice, opts.loop, blockOnly), sectorsToBytes(table.lengthSectors));
  const metaNow = bytes(status.totalMetadataBlocks * BigInt(METADATA_BLOCK_BYTES));
  const metadata = side('metadata', backingOf(table.metadataDevice, opts.loop, blockOnly), metaNow);
  if (pool?.dataFile !== undefined) sameFile(poolName, data.dev, pool.dataFile);
  if (pool?.metadataFile !== undefined) sameFile(poolName, metadata.dev, pool.metadataFile);

  const explicit = target.dataBytes !== undefined || target.metadataBytes !== undefined;
  if (target.dataBytes !== undefined) data.want = checkWanted(data, target.dataBytes, blockSize, 'block size');
  if (target.metadataBytes !== undefined) {
    metadata.want = checkWanted(metadata, target.metadataBytes, bytes(METADATA_BLOCK_BYTES), 'metadata block size (4 KiB)');
    if (metadata.want > THIN_METADATA_MAX_BYTES)
      throw new OptionError(
        'metadataBytes',
        String(metadata.want),
        `dm-thin uses at most ${THIN_METADATA_MAX_BYTES} bytes of a metadata device`,
      );
  }
  if (!explicit) {
    // Whatever the devices hold now, in whole blocks; the kernel caps the metadata itself.
    data.want = max(data.current, roundDown(availableBytes(data.dev), blockSize));
    metadata.want = max(
      metadata.current,
      roundDown(min(availableBytes(metadata.dev), THIN_METADATA_MAX_BYTES), bytes(METADATA_BLOCK_BYTES)),
    );
  }
  for (const s of [data, metadata]) {
    if (s.dev.kind !== 'block' || s.want === s.current) continue;
    const has = availableBytes(s.dev);
    if (has < s.want)
      throw new OptionError(`${s.what}Bytes`, String(s.want), `${s.dev.path} holds ${has} bytes: grow the device first, then the pool`);
  }
  if (data.want === data.current && metadata.want === metadata.current) {
    const why = explicit
      ? `the pool's data is already ${data.current} bytes and its metadata ${metadata.current}; they can only grow`
      : `its devices hold no more than the pool has (data ${data.current} bytes, metadata ${metadata.current})`;
    throw new OptionError('resizePool', explicit ? String(target.dataBytes ?? target.metadataBytes) : undefined, `nothing to grow: ${why}`);
  }

  for (const s of [data, metadata]) {
    if (s.dev.kind !== 'loop' || s.want === s.current) continue;
    if (bytes(statSync(s.dev.file, { bigint: true }).size) < s.want) growFile(s.dev.file, s.want);
    step(s.points.grown);
    setLoopCapacity(s.dev.loop, opts.loop);
    step(s.points.capacity);
  }
  const grown: ThinPoolTarget = { ...table, lengthSectors: bytesToSectors(data.want, 'data size') };
  dm.loadTable({ name: poolName }, [grown]);
  try {
    step('resize:table-loaded');
    await dm.suspend({ name: poolName });
    step('resize:suspended');
    await dm.resume({ name: poolName });
  } catch (e) {
    throw await restoreLive(dm, poolName, table, e);
  }
  checkTaken(dm, poolName, blockSize, data.want, metadata);
}

function side(what: Side['what'], dev: BackingDevice, current: Bytes): Side {
  const points: Side['points'] =
    what === 'data'
      ? { grown: 'resize:file-grown', capacity: 'resize:loop-capacity' }
      : { grown: 'resize:metadata-file-grown', capacity: 'resize:metadata-loop-capacity' };
  return { what, dev, current, want: current, points };
}

/** A DeviceSet's pool must still stand on its own loop files. */
function sameFile(poolName: DeviceName, dev: BackingDevice, file: string): void {
  if (dev.kind !== 'loop') throw new PoolStateError(poolName, `the pool's table no longer names the loop device of ${file}`);
  const a = statSync(dev.file, { bigint: true });
  const b = statSync(file, { bigint: true });
  if (a.dev !== b.dev || a.ino !== b.ino) throw new PoolStateError(poolName, `the pool stands on ${dev.file}, not on ${file}`);
}

function checkWanted(s: Side, want: Bytes, unit: Bytes, unitName: string): Bytes {
  const key = `${s.what}Bytes`;
  if (typeof want !== 'bigint' || want <= 0n) throw new OptionError(key, String(want), 'must be a positive bigint byte count');
  if (want % unit !== 0n) throw new OptionError(key, String(want), `must be a multiple of the ${unitName} ${unit}`);
  if (want < s.current)
    throw new OptionError(key, String(want), `the pool's ${s.what} is ${s.current} bytes; it can only grow, never shrink`);
  return want;
}

/** After the resume: the pool's status must show the sizes (dm-thin may skip a growth silently). */
function checkTaken(dm: DeviceMapper, poolName: DeviceName, blockSize: Bytes, dataBytes: Bytes, metadata: Side): void {
  const s = readPoolStatus(dm, poolName);
  if (s.state !== 'ok') throw new PoolStateError(poolName, `status is ${s.state} after the resize`);
  const dataNow = s.totalDataBlocks * blockSize;
  const metaNow = s.totalMetadataBlocks * BigInt(METADATA_BLOCK_BYTES);
  if (dataNow !== dataBytes || metaNow < metadata.want) {
    throw new PoolStateError(
      poolName,
      `resumed, but its status shows data ${dataNow} bytes (want ${dataBytes}) and metadata ${metaNow} (want ${metadata.want}); see the kernel log`,
    );
  }
}

/** The new size made durable before the pool is told of it: a power loss must not shrink the file under the pool. */
function growFile(file: string, sizeBytes: Bytes): void {
  const fd = openSync(file, 'r+');
  try {
    ftruncateSync(fd, Number(sizeBytes));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * After a failed swap: drop the grown table, then resume the live one; what could not be done is
 * added to `e`. A resume whose preresume failed has already swapped the grown table in: the old
 * one is loaded back first.
 */
async function restoreLive(dm: DeviceMapper, poolName: DeviceName, old: ThinPoolTarget, e: unknown): Promise<unknown> {
  const left: string[] = [];
  try {
    const info = dm.info({ name: poolName });
    if (info?.inactiveTable) dm.clearTable({ name: poolName });
    if (info?.suspended) {
      const live = dm.table({ name: poolName })[0];
      const swapped =
        live && isThinPoolTarget(live) && (live.lengthSectors !== old.lengthSectors || live.features.join(' ') !== old.features.join(' '));
      if (swapped) dm.loadTable({ name: poolName }, [old]);
      // Resumed only once the new table is gone: the pool keeps its size, nothing is half-swapped.
      await dm.resume({ name: poolName });
    }
  } catch (err) {
    left.push(`the pool could not be restored (${(err as Error).message}); the next open resumes it`);
  }
  if (left.length > 0 && e instanceof Error) e.message += `; ${left.join('; ')}`;
  return e;
}

const max = (a: Bytes, b: Bytes): Bytes => (a > b ? a : b);
const min = (a: Bytes, b: Bytes): Bytes => (a < b ? a : b);
const roundDown = (n: Bytes, unit: Bytes): Bytes => bytes((n / unit) * unit);
