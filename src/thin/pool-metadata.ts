// The pool's own metadata (dm-thin's on-disk format, read by ./metadata): the thin ids a live
// pool holds with what each maps, read through a metadata snapshot; and the check of an INACTIVE
// pool's metadata before the pool is activated on it (as lvm2 runs thin_check), or on demand.
// Open reads an inactive pool's thin ids from its file, never through a snapshot: a power loss
// between reserve_metadata_snap and its release would leave the snapshot held for good.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { DeviceMapper } from '../dm/device-mapper.js';
import { thinId, type DeviceName, type ThinId } from '../dm/names.js';
import { ThinMetadataError } from '../structs/index.js';
import { checkThinMetadata, type MetadataCheck } from './metadata/check.js';
import { type MetadataBlocks, withMetadataBlocks } from './metadata/blocks.js';
import { readThinDevices, readThinUsage, type ThinDeviceUsage } from './metadata/read.js';
import { metadataReadPath, withMetadataSnapshot } from './metadata/snapshot.js';
import { errnoOf, MetadataCheckError, PoolActiveError, PoolFileMissingError, PoolStateError } from './errors.js';
import { checkHomeFolders, HomeLock } from './lock.js';
import type { DeviceRecord } from './metadata-store.js';
import type { PoolOptions } from './options.js';
import { hasThinSuperblock, loopFiles, type PoolDevices } from './pool-setup.js';
import type { ReconcileResult } from './transaction.js';

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
  return withMetadataBlocks(path, (blocks) => fn(blocks, 'superblock'));
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
 * pool's create answer and our record of it): reported, never deleted. `before` is what the pool
 * held before open activated it (readBeforeActivate), less what reconcile then deleted; without it
 * (a pool active already) they are read through a metadata snapshot. Null when they cannot be read
 * without touching what is not ours: a read-only pool, or a snapshot another program holds.
 */
export function unknownThinIds(
  dm: DeviceMapper,
  pool: PoolDevices,
  records: Iterable<DeviceRecord>,
  readOnly: boolean,
  before: { ids: ThinId[] | null; reconciled: ReconcileResult },
): ThinId[] | null {
  if (readOnly) return null;
  const ours = new Set<number>();
  for (const r of records) ours.add(r.deviceId);
  if (before.ids !== null) {
    const gone = deletedByReconcile(before.reconciled);
    return before.ids.filter((id) => !ours.has(id) && id !== gone);
  }
  try {
    const ids = readLive(dm, pool, false, (blocks, root) => readThinDevices(blocks, { root }).devices.map((d) => d.thinId));
    return ids.filter((id) => !ours.has(id)) as ThinId[];
  } catch (e) {
    if (errnoOf(e) === 'EBUSY') return null;
    throw e;
  }
}

/** The thin id reconcile deleted from the pool: a create it rolled back (only one the pool answered), or a delete it finished. */
function deletedByReconcile(r: ReconcileResult): ThinId | null {
  if (r.action === 'rolled-back' && r.intent.created === true) return r.intent.thinId;
  if (r.action === 'rolled-forward' && r.intent.op === 'delete') return r.intent.thinId;
  return null;
}

/** An inactive pool's metadata: dm.metadatadev, else the loop file under `root` (<home>/devicemapper). */
function inactiveMetadataPath(root: string, opts: PoolOptions): string {
  return opts.metadataDevice ?? loopFiles(root).metadata;
}

/** Open/init of an inactive pool: the metadata it would be activated on. */
export interface InactivePool {
  dm: DeviceMapper;
  poolName: DeviceName;
  /** <home>/devicemapper, where loop files live. */
  root: string;
  opts: PoolOptions;
  /** No pool state yet: a metadata device without a superblock is a new pool's (zeroed), not checked. */
  newPool: boolean;
}

/**
 * Before an inactive pool is activated: check its metadata, and refuse (MetadataCheckError,
 * EUCLEAN) with nothing touched if it fails; answer the thin ids it holds, read from block 0's
 * roots (what the kernel will load), so that open needs no metadata snapshot. The check is skipped
 * with dm.thin_check=false, for a new pool's unwritten metadata (no ids), and, with the ids (null),
 * for a pool that is active already or not ours to make (dm.thinpooldev).
 */
export function readBeforeActivate(p: InactivePool): ThinId[] | null {
  const { opts } = p;
  if (opts.thinPoolDevice !== undefined || p.dm.info({ name: p.poolName }) !== null) return null;
  const path = inactiveMetadataPath(p.root, opts);
  if (!existsSync(path)) return p.newPool ? [] : null; // made now, or refused by set-up
  if (p.newPool && !hasThinSuperblock(path)) return [];
  return withMetadataBlocks(path, (blocks) => {
    if (opts.thinCheck) {
      const check = checkThinMetadata(blocks);
      if (!check.ok) throw new MetadataCheckError(p.poolName, path, check.problems);
    }
    try {
      return readThinDevices(blocks).devices.map((d) => thinId(d.thinId));
    } catch (e) {
      if (opts.thinCheck || !(e instanceof ThinMetadataError)) throw e;
      return null; // unchecked on request, and unreadable: the kernel is the judge
    }
  });
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
    const path = inactiveMetadataPath(join(home, 'devicemapper'), opts);
    if (!existsSync(path)) throw new PoolFileMissingError(path, 'the pool has no metadata to check');
    return { ...withMetadataBlocks(path, checkThinMetadata), poolName, path };
  } finally {
    lock.release();
  }
}
