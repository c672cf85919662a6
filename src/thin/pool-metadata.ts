// The pool's own metadata (dm-thin's on-disk format, read by ./metadata): the thin ids a live
// pool holds with what each maps, read through a metadata snapshot; and the check of an INACTIVE
// pool's metadata before the pool is activated on it (as lvm2 runs thin_check), or on demand.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceName, ThinId } from '../dm/names.js';
import { checkThinMetadata, type MetadataCheck } from './metadata/check.js';
import { openMetadataBlocks, type MetadataBlocks } from './metadata/blocks.js';
import { readThinDevices, readThinUsage, type ThinDeviceUsage } from './metadata/read.js';
import { metadataReadPath, withMetadataSnapshot } from './metadata/snapshot.js';
import { errnoOf, MetadataCheckError, PoolActiveError, PoolFileMissingError, PoolStateError } from './errors.js';
import { checkHomeFolders, HomeLock } from './lock.js';
import type { DeviceRecord } from './metadata-store.js';
import type { PoolOptions } from './options.js';
import { hasThinSuperblock, loopFiles, type PoolDevices } from './pool-setup.js';

/** A thin id of the pool with its usage; `hash` is the device the metadata knows on it, null if none. */
export interface PoolThin extends ThinDeviceUsage {
  hash: string | null;
}

/** DeviceSet.checkMetadata: the check's findings and what was read. */
export interface PoolMetadataCheck extends MetadataCheck {
  poolName: DeviceName;
  /** The metadata file or device read. */
  path: string;
}

/** What to read for the pool's metadata: the loop file we made, else its table's metadata device. */
export function metadataPathOf(pool: PoolDevices): string {
  return pool.metadataFile ?? metadataReadPath(pool.metadataDevice);
}

/**
 * Read the live pool's metadata: through a metadata snapshot (rw), or its committed roots when the
 * pool is read-only (it refuses reserve_metadata_snap, and commits nothing while read-only).
 */
function readLive<T>(
  dm: DeviceMapper,
  pool: PoolDevices,
  readOnly: boolean,
  fn: (blocks: MetadataBlocks, root: 'held' | 'superblock') => T,
): T {
  const path = metadataPathOf(pool);
  if (!readOnly) return withMetadataSnapshot(dm, { name: pool.poolName }, path, (blocks) => fn(blocks, 'held'));
  return withBlocks(path, (blocks) => fn(blocks, 'superblock'));
}

function withBlocks<T>(path: string, fn: (blocks: MetadataBlocks) => T): T {
  const blocks = openMetadataBlocks(path);
  try {
    return fn(blocks);
  } finally {
    blocks.close();
  }
}

/** Every thin id of the pool (ascending) with its mapped, exclusive and shared blocks and our hash. */
export function readPoolThins(dm: DeviceMapper, pool: PoolDevices, records: Iterable<DeviceRecord>, readOnly: boolean): PoolThin[] {
  const hashOf = new Map<number, string>();
  for (const r of records) hashOf.set(r.deviceId, r.hash);
  const devices: ThinDeviceUsage[] = readLive(dm, pool, readOnly, (blocks, root) => readThinUsage(blocks, { root }).devices);
  return devices.map((d) => ({ ...d, hash: hashOf.get(d.thinId) ?? null }));
}

/**
 * The pool's thin ids the metadata does not know (another user's, or one a crash left between the
 * pool's create answer and our record of it): reported, never deleted. Null when they cannot be
 * read without touching what is not ours: a read-only pool, or a snapshot another program holds.
 */
export function unknownThinIds(dm: DeviceMapper, pool: PoolDevices, records: Iterable<DeviceRecord>, readOnly: boolean): ThinId[] | null {
  if (readOnly) return null;
  const ours = new Set<number>();
  for (const r of records) ours.add(r.deviceId);
  try {
    const ids = readLive(dm, pool, false, (blocks, root) => readThinDevices(blocks, { root }).devices.map((d) => d.thinId));
    return ids.filter((id) => !ours.has(id)) as ThinId[];
  } catch (e) {
    if (errnoOf(e) === 'EBUSY') return null;
    throw e;
  }
}

/** Open/init of an inactive pool: the metadata it would be activated on. */
export interface InactivePool {
  dm: DeviceMapper;
  poolName: DeviceName;
  /** <home>/devicemapper, where loop files live. */
  root: string;
  opts: PoolOptions;
  /** No pool state yet: a metadata device without a superblock is zeroed, not checked. */
  newPool: boolean;
}

/**
 * Before an inactive pool is activated: check its metadata, and refuse (MetadataCheckError,
 * EUCLEAN) with nothing touched if it fails. Skipped with dm.thin_check=false, for a pool that is
 * active already or not ours to make (dm.thinpooldev), and for a new pool's unwritten metadata.
 */
export function checkBeforeActivate(p: InactivePool): void {
  const { opts } = p;
  if (!opts.thinCheck || opts.thinPoolDevice !== undefined || p.dm.info({ name: p.poolName }) !== null) return;
  const path = opts.metadataDevice ?? loopFiles(p.root).metadata;
  if (!existsSync(path)) return; // made now, or refused by set-up
  if (p.newPool && !hasThinSuperblock(path)) return;
  const check = withBlocks(path, checkThinMetadata);
  if (!check.ok) throw new MetadataCheckError(p.poolName, path, check.problems);
}

/**
 * Check the metadata of the pool of `home`, which must be inactive (PoolActiveError, EBUSY: the
 * kernel writes a live pool's metadata, as thin_check refuses). Holds the home's lock meanwhile,
 * so no other process of ours activates it.
 */
export function checkInactivePool(dm: DeviceMapper, home: string, poolName: DeviceName, opts: PoolOptions): PoolMetadataCheck {
  const active = (): void => {
    if (dm.info({ name: poolName }) !== null) throw new PoolActiveError(poolName, 'checking its metadata');
  };
  active();
  if (opts.thinPoolDevice !== undefined) {
    throw new PoolStateError(poolName, `dm.thinpooldev ${poolName} does not exist: which metadata device it had is not known here`);
  }
  checkHomeFolders(home);
  const lock = HomeLock.acquire(join(home, 'lock'));
  try {
    active();
    const path = opts.metadataDevice ?? loopFiles(join(home, 'devicemapper')).metadata;
    if (!existsSync(path)) throw new PoolFileMissingError(path, 'the pool has no metadata to check');
    return { ...withBlocks(path, checkThinMetadata), poolName, path };
  } finally {
    lock.release();
  }
}
