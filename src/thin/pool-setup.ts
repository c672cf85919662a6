// Finding or making the pool: loop files (sparse, attached with autoclear so a crash before the
// pool holds them leaks no loop device), given block devices, or an existing pool by name.
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { blockDeviceSizeBytes } from '../blk/index.js';
import type { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceInfo } from '../dm/info.js';
import { isThinPoolTarget, type ThinPoolTarget } from '../dm/targets.js';
import { attachLoop, detachLoop, findLoopByFile, releaseLoop, type LoopDevice, type LoopOptions } from '../loop/index.js';
import { formatDev } from '../structs/dev.js';
import { THIN_SUPERBLOCK_MAGIC } from '../structs/thin-metadata.js';
import { type Bytes, bytesToSectors, sectors, sectorsToBytes } from '../structs/units.js';
import type { DeviceName } from '../dm/names.js';
import { fsyncDir } from './dirs.js';
import type { CrashHook } from './crash-points.js';
import { checkNewMetadataDevice, metadataHeaderOf, SUPERBLOCK_MAGIC_OFFSET } from './metadata-device.js';
import { PoolFileMissingError, PoolStateError } from './errors.js';
import type { PoolOptions } from './options.js';
import type { Undo } from './undo.js';

/** dm-thin metadata blocks are 4 KiB (THIN_METADATA_BLOCK_SIZE). */
export const METADATA_BLOCK_BYTES = 4096;

export interface PoolDevices {
  poolName: DeviceName;
  /** Whether we made the pool (and so remove it on shutdown); false for dm.thinpooldev. */
  owned: boolean;
  dataBlockSizeBytes: Bytes;
  /** Loop devices (loopback set-up) or the given block devices; '' for an existing pool. */
  dataDevice: string;
  metadataDevice: string;
  dataFile?: string;
  metadataFile?: string;
  /** The pool was created by this open on a zeroed metadata device. */
  fresh: boolean;
}

export function loopFiles(root: string): { data: string; metadata: string } {
  return { data: join(root, 'data'), metadata: join(root, 'metadata') };
}

/**
 * Which loop files are to be made: both ('create': a new pool, no pool state and neither file),
 * the metadata file only ('create-metadata': a new pool whose set-up was cut off after the data
 * file, which is made first, e.g. by a power loss) or none ('adopt': both there). Any other missing
 * file is refused: with pool state a new data file would map every layer to holes and a new
 * metadata file would lose the pool; without it, a metadata file (made second) is there, so the
 * data file was removed. Nothing is touched either way.
 */
export function checkLoopFiles(files: { data: string; metadata: string }, newPool: boolean): 'create' | 'create-metadata' | 'adopt' {
  const data = existsSync(files.data);
  const metadata = existsSync(files.metadata);
  if (data && metadata) return 'adopt';
  if (newPool && !metadata) return data ? 'create-metadata' : 'create';
  const missing = data ? files.metadata : files.data;
  const why = newPool ? `${data ? files.data : files.metadata} is there, so this is an existing pool` : 'the metadata folder holds a pool';
  throw new PoolFileMissingError(missing, `${why}; it is never made again (restore it, or remove the home for a new pool)`);
}

/** Create a sparse file of `sizeBytes` (it must not exist). */
function createSparseFile(path: string, sizeBytes: Bytes, undo: Undo): void {
  const fd = openSync(path, 'wx', 0o600);
  undo.file(path);
  try {
    ftruncateSync(fd, Number(sizeBytes));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * thin_disk_superblock.data_block_size (__le32, sectors): after magic, version, time, trans_id,
 * held_root, data_space_map_root[SPACE_MAP_ROOT_SIZE = 128], metadata_space_map_root[128],
 * data_mapping_root and device_details_root.
 */
const SUPERBLOCK_DATA_BLOCK_SIZE_OFFSET = 32 + 8 + 4 + 4 + 8 + 8 + 128 + 128 + 8 + 8;

/** The data block size (bytes) a pool's metadata records, or null when it holds no pool. */
export function superblockDataBlockBytes(path: string): Bytes | null {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(SUPERBLOCK_DATA_BLOCK_SIZE_OFFSET + 4);
    const n = readSync(fd, buf, 0, buf.length, 0);
    if (n !== buf.length || buf.readBigUInt64LE(SUPERBLOCK_MAGIC_OFFSET) !== THIN_SUPERBLOCK_MAGIC) return null;
    return sectorsToBytes(sectors(buf.readUInt32LE(SUPERBLOCK_DATA_BLOCK_SIZE_OFFSET)));
  } finally {
    closeSync(fd);
  }
}

/** Whether a metadata device already holds a pool's superblock (then it is adopted, never formatted). */
export function hasThinSuperblock(path: string): boolean {
  return metadataHeaderOf(path) === 'superblock';
}

function majMin(path: string): string {
  const st = statSync(path);
  if (!st.isBlockDevice()) throw new PoolStateError(path, `${path} is not a block device`);
  const rdev = st.rdev;
  const major = ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >> 12) & ~0xff);
  return formatDev({ major, minor });
}

/** The loop device of `file`, attached (autoclear) if none is; an attached one is detached by `undo`. */
async function loopFor(file: string, undo: Undo, loopOpts: LoopOptions): Promise<{ dev: LoopDevice; attached: boolean }> {
  const found = await findLoopByFile(file, loopOpts);
  if (found[0]) return { dev: found[0], attached: false };
  const dev = await attachLoop(file, { ...loopOpts, autoclear: true });
  undo.push(`loop device ${dev.path}`, async () => {
    // Autoclear detached it when its last holder let go; detach it here if it is still bound.
    releaseLoop(dev);
    if ((await findLoopByFile(file, loopOpts)).some((l) => l.number === dev.number)) {
      await detachLoop(dev, { ...loopOpts, expectBackingFile: file });
    }
  });
  return { dev, attached: true };
}

/** A thin-pool table's data block size in bytes. */
export function blockBytes(tp: ThinPoolTarget): Bytes {
  return sectorsToBytes(sectors(tp.dataBlockSizeSectors));
}

/** The pool's table line. Low water mark: Docker's 32768 blocks, capped for small pools. */
export function poolTable(metadataDevice: string, dataDevice: string, dataSizeBytes: Bytes, blockSizeBytes: Bytes): ThinPoolTarget {
  const blockSectors = bytesToSectors(blockSizeBytes, 'data block size');
  const lengthSectors = bytesToSectors(dataSizeBytes, 'data size');
  const blocks = lengthSectors / blockSectors;
  const lwm = blocks / 10n < 32768n ? blocks / 10n : 32768n;
  return {
    type: 'thin-pool',
    startSector: sectors(0),
    lengthSectors,
    metadataDevice,
    dataDevice,
    dataBlockSizeSectors: Number(blockSectors),
    lowWaterMarkBlocks: lwm,
    // As Docker: new blocks are not zeroed (every file system writes before it reads). And a full
    // pool fails writes at once instead of queueing them for no_space_timeout (60 s): a caller
    // sees ENOSPC/EIO and status says out_of_data_space, nothing hangs.
    features: ['skip_block_zeroing', 'error_if_no_space'],
  };
}

/**
 * A pool a failed or killed resize left suspended would hang every I/O of its thin devices: its
 * inactive table (one we never checked) is cleared and the live one resumed. An inactive table
 * left on a running pool is cleared too, so no later resume swaps it in.
 */
async function recoverSuspended(dm: DeviceMapper, poolName: DeviceName, info: DeviceInfo): Promise<void> {
  try {
    if (info.inactiveTable) dm.clearTable({ name: poolName });
    if (info.suspended) await dm.resume({ name: poolName });
  } catch (e) {
    const what = info.suspended ? 'is suspended and could not be resumed' : 'has an inactive table that could not be cleared';
    throw new PoolStateError(poolName, `${what}: ${(e as Error).message}`);
  }
}

/**
 * Find the pool `poolName` if active, else make it. `newPool` says the metadata folder has no pool
 * state yet, i.e. the metadata device may be zeroed.
 */
export async function setUpPool(
  dm: DeviceMapper,
  root: string,
  poolName: DeviceName,
  opts: PoolOptions,
  newPool: boolean,
  undo: Undo,
  loopOpts: LoopOptions = {},
  step: CrashHook = () => {},
): Promise<PoolDevices> {
  if (opts.thinPoolDevice !== undefined) {
    const name = opts.thinPoolDevice;
    if (dm.info({ name }) === null) throw new PoolStateError(name, `dm.thinpooldev ${name} does not exist`);
    const tp = dm.table({ name })[0];
    if (!tp || !isThinPoolTarget(tp))
      throw new PoolStateError(name, `dm.thinpooldev ${name} is not a thin-pool (table: ${tp?.type ?? 'none'})`);
    return {
      poolName: name,
      owned: false,
      dataBlockSizeBytes: blockBytes(tp),
      dataDevice: tp.dataDevice,
      metadataDevice: tp.metadataDevice,
      fresh: false,
    };
  }

  const files = loopFiles(root);
  const loopback = opts.dataDevice === undefined;
  const info = dm.info({ name: poolName });
  if (info !== null) {
    const tp = dm.table({ name: poolName })[0];
    if (!tp || !isThinPoolTarget(tp)) throw new PoolStateError(poolName, `device ${poolName} exists but is not a thin-pool`);
    await recoverSuspended(dm, poolName, info);
    const out: PoolDevices = {
      poolName,
      owned: true,
      dataBlockSizeBytes: blockBytes(tp),
      dataDevice: tp.dataDevice,
      metadataDevice: tp.metadataDevice,
      fresh: false,
    };
    if (loopback) {
      out.dataFile = files.data;
      out.metadataFile = files.metadata;
    }
    return out;
  }

  let dataDev: string;
  let metaDev: string;
  let dataSize: Bytes;
  const release: LoopDevice[] = [];
  let fresh = false;
  try {
    if (loopback) {
      const make = checkLoopFiles(files, newPool);
      const created = make !== 'adopt';
      if (make === 'create') createSparseFile(files.data, opts.loopDataSizeBytes, undo);
      if (created) {
        createSparseFile(files.metadata, opts.loopMetadataSizeBytes, undo);
        fsyncDir(root);
      }
      // Our own files: made sparse (all zero) just now, or by an open cut off before its pool
      // state; one with a pool's superblock is adopted, one with anything else refused.
      if (created || (newPool && checkNewMetadataDevice(files.metadata) === 'fresh')) fresh = true;
      const d = await loopFor(files.data, undo, loopOpts);
      if (d.attached) release.push(d.dev);
      const m = await loopFor(files.metadata, undo, loopOpts);
      if (m.attached) release.push(m.dev);
      dataDev = formatDev(d.dev);
      metaDev = formatDev(m.dev);
      dataSize = blockDeviceSizeBytes(d.dev.path);
      step('open:loops-attached');
    } else {
      dataDev = majMin(opts.dataDevice!);
      metaDev = majMin(opts.metadataDevice!);
      // Never written here: zeroed by the user, or a pool's superblock to adopt (metadata-device.ts).
      if (newPool && checkNewMetadataDevice(opts.metadataDevice!) === 'fresh') fresh = true;
      dataSize = blockDeviceSizeBytes(opts.dataDevice!);
    }
    await dm.create(poolName, { table: [poolTable(metaDev, dataDev, dataSize, opts.dataBlockSizeBytes)] });
    undo.push(`pool ${poolName}`, () => dm.remove({ name: poolName }, { retry: true }));
    step('open:pool-created');
  } finally {
    // With autoclear, the loops now live as long as the pool holds them (or vanish if it failed).
    for (const l of release) releaseLoop(l);
  }
  const out: PoolDevices = {
    poolName,
    owned: true,
    dataBlockSizeBytes: opts.dataBlockSizeBytes,
    dataDevice: dataDev,
    metadataDevice: metaDev,
    fresh,
  };
  if (loopback) {
    out.dataFile = files.data;
    out.metadataFile = files.metadata;
  }
  return out;
}
