// Adopting a home made by Docker's devmapper graph driver (/var/lib/docker/devicemapper): the
// layout is already ours (loop files in devicemapper/, one metadata file per device in metadata/),
// the names are `docker-<maj>:<min>-<inode>-...` and the metadata files are Docker's
// (docker-metadata.ts). The first open converts them:
//
//   1. the pool is set up under Docker's name (an active pool Docker left is taken as it is);
//   2. its transaction id is read from the pool, where Docker keeps it;
//   3. Docker's open transaction (open_transaction_id past the pool's) is rolled back as Docker's
//      processPendingTransaction does: the thin id is deleted (already gone is fine) and the
//      device's record dropped. Until step 5 Docker's files are untouched, and Docker's own next
//      start would do the very same to them;
//   4. the converted files are written into metadata.converting/ (each atomic and durable), the
//      pool state last, with device_prefix "docker";
//   5. metadata/ is renamed metadata.docker/ (Docker's files, kept as they were) and
//      metadata.converting/ renamed metadata/, then the home folder is fsynced; a legacy
//      devicemapper/json is renamed json.migrated, as Docker's own migration does.
//
// A failure before step 5 leaves Docker's files as they were (the staging folder is removed); a
// failure later in the same open moves them back. A crash between the two renames of step 5 is
// finished by the next open (the staging folder is complete by then: its pool state is written
// last). The converted files stay readable by Docker (it ignores the fields it does not know:
// hash, filesystem, transaction_id, device_prefix; BaseDeviceUUID and BaseDeviceFilesystem are
// kept), so a home can go back to Docker as long as no transaction is open.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ThinId } from '../dm/names.js';
import { fsyncDir } from './dirs.js';
import {
  DOCKER_LEGACY_FILE,
  DOCKER_MIGRATED_SUFFIX,
  dockerDeviceFiles,
  readDockerMetadata,
  type DockerMetadata,
} from './docker-metadata.js';
import { errnoOf, MetadataError, PoolOptionConflictError } from './errors.js';
import { next as nextId } from './id-allocator.js';
import { BASE_HASH, INTENT_FILE, MetadataStore, POOL_STATE_FILE, readJson, type DeviceRecord } from './metadata-store.js';
import type { Undo } from './undo.js';

/** The prefix of every dm name Docker's driver makes. */
export const DOCKER_PREFIX = 'docker';
/** Where Docker's metadata folder is kept once converted (`.1`, `.2`... when taken). */
export const DOCKER_BACKUP_DIR = 'metadata.docker';
/** The converted metadata folder before it takes metadata/'s place. */
export const CONVERTING_DIR = 'metadata.converting';

export type { DockerDevice, DockerMetadata, DockerTransaction } from './docker-metadata.js';

/** What adopting a Docker home did. */
export interface DockerAdoption {
  /** Docker's metadata folder, kept as it was. */
  backup: string;
  /** devicemapper/json was read and renamed json.migrated. */
  legacyJson: boolean;
  /** The devices adopted (the base among them). */
  devices: number;
  /** The pool's transaction id, now in the pool state. */
  transactionId: bigint;
  /**
   * Docker's last transaction: 'rolled-back' (it was open: its thin id deleted, its record
   * dropped), 'closed' (committed), 'stale' (behind the pool's id: Docker ignores it too).
   */
  transaction: { openTransactionId: bigint; deviceHash: string; deviceId: ThinId; action: 'rolled-back' | 'closed' | 'stale' } | null;
}

/** What the conversion needs of the pool; DeviceSet passes the real one. */
export interface DockerPool {
  transactionId(): Promise<bigint>;
  /** Before a rollback: deactivate the device of `hash` if it is active and unused. */
  release(hash: string): Promise<void>;
  /** Throws an error with code 'ENODATA' if the id does not exist. */
  deleteThin(id: ThinId): Promise<void>;
}

/**
 * Whether `home` holds Docker's metadata not yet converted: a deviceset-metadata without our
 * transaction_id, or (older Docker) the legacy devicemapper/json, a transaction-metadata of
 * Docker's, or device files without one.
 */
export function isDockerHome(home: string): boolean {
  const metaDir = join(home, 'metadata');
  const ds = namingJson(join(metaDir, POOL_STATE_FILE));
  if (ds !== null) return !Object.hasOwn(ds, 'transaction_id');
  if (existsSync(join(home, 'devicemapper', DOCKER_LEGACY_FILE))) return true;
  const tx = namingJson(join(metaDir, INTENT_FILE));
  if (tx !== null) return !Object.hasOwn(tx, 'op');
  const first = dockerDeviceFiles(metaDir)[0];
  // Ours always writes `hash` into a device file (and a pool state before any device).
  return first !== undefined && !Object.hasOwn(namingJson(join(metaDir, first)) ?? {}, 'hash');
}

/**
 * The dm name prefix of `home`: the one its pool state records (an adopted Docker home), else
 * `docker` for a Docker home not yet converted, else `given` (dm.prefix) or `fallback`. A given
 * prefix that contradicts the home's is refused: the names would miss the pool and its devices.
 */
export function homePrefix(home: string, given: string | undefined, fallback: string): string {
  const recorded = recordedPrefix(home) ?? (isDockerHome(home) ? DOCKER_PREFIX : undefined);
  if (recorded === undefined) return given ?? fallback;
  if (given !== undefined && given !== recorded) {
    throw new PoolOptionConflictError('dm.prefix', given, recorded, 'the prefix of the names of its pool and devices');
  }
  return recorded;
}

/**
 * A metadata file read only to tell names: one that does not parse tells nothing. Open reports it
 * (MetadataError, EUCLEAN) when it reads the file for its content; a shutdown must not stop at it.
 */
function namingJson(path: string): Record<string, unknown> | null {
  try {
    return readJson(path);
  } catch (e) {
    if (e instanceof MetadataError) return null;
    throw e;
  }
}

function recordedPrefix(home: string): string | undefined {
  const prefix = namingJson(join(home, 'metadata', POOL_STATE_FILE))?.['device_prefix'];
  return typeof prefix === 'string' ? prefix : undefined;
}

/**
 * Finish or drop what a crash left of a conversion (under the home's lock, before anything reads
 * metadata/): a complete staging folder with no metadata/ takes its place; any other staging
 * folder is removed (Docker's files were not moved yet); a converted home's legacy json is renamed.
 */
export function finishDockerConversion(home: string): void {
  const metaDir = join(home, 'metadata');
  const staging = join(home, CONVERTING_DIR);
  if (existsSync(staging)) {
    const complete = Object.hasOwn(readJson(join(staging, POOL_STATE_FILE)) ?? {}, 'transaction_id');
    if (complete && !existsSync(metaDir)) renameSync(staging, metaDir);
    else rmSync(staging, { recursive: true, force: true });
    fsyncDir(home);
  }
  const legacy = join(home, 'devicemapper', DOCKER_LEGACY_FILE);
  if (recordedPrefix(home) !== undefined && existsSync(legacy)) migrateLegacy(legacy);
}

/** Rename the legacy file as Docker's migration does, durably. */
function migrateLegacy(legacy: string): void {
  renameSync(legacy, legacy + DOCKER_MIGRATED_SUFFIX);
  fsyncDir(join(legacy, '..'));
}

/** Our records from Docker's: snapshots are initialized (Docker never marks them), the base keeps its flag. */
export function convertedRecords(docker: DockerMetadata): DeviceRecord[] {
  return [...docker.devices.values()].map((d) => {
    const rec: DeviceRecord = { ...d, initialized: d.hash === BASE_HASH ? d.initialized : true };
    if (d.hash === BASE_HASH && docker.baseFilesystem !== undefined) rec.filesystem = docker.baseFilesystem;
    return rec;
  });
}

function backupDir(home: string): string {
  for (let n = 0; ; n++) {
    const path = join(home, n === 0 ? DOCKER_BACKUP_DIR : `${DOCKER_BACKUP_DIR}.${n}`);
    if (!existsSync(path)) return path;
  }
}

/**
 * Convert the Docker home `home` (its pool active) into ours: steps 2..5 above. Every step is
 * pushed on `undo`, so a failure later in the same open puts Docker's files back.
 */
export async function adoptDockerHome(home: string, docker: DockerMetadata, pool: DockerPool, undo: Undo): Promise<DockerAdoption> {
  const transactionId = await pool.transactionId();
  const devices = new Map(docker.devices);
  let transaction: DockerAdoption['transaction'] = null;
  const t = docker.transaction;
  if (t !== null) {
    let action: 'rolled-back' | 'closed' | 'stale' = t.openTransactionId === transactionId ? 'closed' : 'stale';
    if (t.openTransactionId > transactionId) {
      await pool.release(t.deviceHash);
      try {
        await pool.deleteThin(t.deviceId);
      } catch (e) {
        // Deleted before the transaction closed; any other refusal stops the adoption here.
        if (errnoOf(e) !== 'ENODATA') throw e;
      }
      devices.delete(t.deviceHash);
      action = 'rolled-back';
    }
    transaction = { ...t, action };
  }

  const metaDir = join(home, 'metadata');
  const staging = join(home, CONVERTING_DIR);
  mkdirSync(staging, { mode: 0o700 });
  fsyncDir(home);
  undo.push(`folder ${staging}`, () => {
    rmSync(staging, { recursive: true, force: true });
    fsyncDir(home);
  });
  const store = MetadataStore.open(staging);
  const records = convertedRecords({ ...docker, devices });
  for (const rec of records) store.writeDevice(rec);
  // Last: a staging folder with its pool state is complete (finishDockerConversion).
  store.writePoolState({
    nextDeviceId: nextId(docker.nextDeviceId),
    transactionId,
    devicePrefix: DOCKER_PREFIX,
    foreign: docker.deviceSetFields,
  });

  const backup = backupDir(home);
  if (!existsSync(metaDir)) mkdirSync(metaDir, { mode: 0o700 });
  renameSync(metaDir, backup);
  renameSync(staging, metaDir);
  fsyncDir(home);
  undo.push(`Docker's metadata in ${backup}`, () => {
    renameSync(metaDir, staging);
    renameSync(backup, metaDir);
    fsyncDir(home);
  });

  const legacy = join(home, 'devicemapper', DOCKER_LEGACY_FILE);
  if (docker.legacy) {
    migrateLegacy(legacy);
    undo.push(`file ${legacy}`, () => {
      renameSync(legacy + DOCKER_MIGRATED_SUFFIX, legacy);
      fsyncDir(join(home, 'devicemapper'));
    });
  }
  return { backup, legacyJson: docker.legacy, devices: records.length, transactionId, transaction };
}

export { readDockerMetadata };
