// Options that shape a pool when it is made and can never change it afterwards: the base size, the
// loop files' sizes, the data block size and the base's file system. Given to an existing pool with
// another value they are refused (never silently ignored), judged from what the pool itself has:
// the base's record, the loop files, the pool's table or its metadata superblock.
import { existsSync, statSync } from 'node:fs';
import type { DeviceMapper } from '../dm/device-mapper.js';
import { isThinPoolTarget } from '../dm/targets.js';
import type { DeviceName } from '../dm/names.js';
import { PoolOptionConflictError } from './errors.js';
import type { DeviceRecord } from './metadata-store.js';
import { formatSize, type PoolOptions, type PoolOptionsInput } from './options.js';
import { type Bytes, bytes } from '../structs/units.js';
import { blockBytes, loopFiles, superblockDataBlockBytes } from './pool-setup.js';

export interface ExistingPool {
  dm: DeviceMapper;
  poolName: DeviceName;
  /** <home>/devicemapper, where loop files live. */
  root: string;
  /** The base device's record, if the metadata has one. */
  base: DeviceRecord | null;
}

/** Throws PoolOptionConflictError for the first option given in `input` that the pool contradicts. */
export function checkFixedOptions(input: PoolOptionsInput, opts: PoolOptions, pool: ExistingPool): void {
  const conflict = (key: string, given: string, current: string, why: string): never => {
    throw new PoolOptionConflictError(key, given, current, why);
  };
  const base = pool.base;
  if (input.baseSize !== undefined && base && base.sizeBytes !== opts.baseSizeBytes) {
    conflict('dm.basesize', formatSize(opts.baseSizeBytes), formatSize(base.sizeBytes), 'the size of its base device; every layer has it');
  }
  if (input.fs !== undefined && base?.filesystem !== undefined && base.filesystem !== opts.fs) {
    conflict('dm.fs', opts.fs, base.filesystem, 'the file system of its base device; every layer is a snapshot of it');
  }
  const loopback = opts.dataDevice === undefined && opts.thinPoolDevice === undefined;
  const files = loopFiles(pool.root);
  if (loopback) {
    const sizes: [keyof PoolOptionsInput, string, string, Bytes][] = [
      ['loopDataSize', 'dm.loopdatasize', files.data, opts.loopDataSizeBytes],
      ['loopMetadataSize', 'dm.loopmetadatasize', files.metadata, opts.loopMetadataSizeBytes],
    ];
    for (const [field, key, file, want] of sizes) {
      if (input[field] === undefined || !existsSync(file)) continue;
      const have = bytes(statSync(file, { bigint: true }).size);
      // Either file may have grown since it was made with this size (resizePool): not a conflict.
      if (want > have) conflict(key, formatSize(want), formatSize(have), `the size of ${file}; grow the pool with 'pool resize'`);
    }
  }
  if (input.blockSize !== undefined) {
    const have = poolBlockBytes(pool, opts, files.metadata);
    if (have !== null && have !== opts.dataBlockSizeBytes) {
      conflict('dm.blocksize', formatSize(opts.dataBlockSizeBytes), formatSize(have), 'the data block size its metadata records');
    }
  }
}

/** The pool's data block size: from its live table, else from its metadata's superblock. */
function poolBlockBytes(pool: ExistingPool, opts: PoolOptions, metadataFile: string): Bytes | null {
  if (pool.dm.info({ name: pool.poolName }) !== null) {
    const t = pool.dm.table({ name: pool.poolName })[0];
    if (t && isThinPoolTarget(t)) return blockBytes(t);
  }
  const meta = opts.metadataDevice ?? metadataFile;
  return existsSync(meta) ? superblockDataBlockBytes(meta) : null;
}
