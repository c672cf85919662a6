// The metadata files of a home made by Docker's devmapper graph driver, read by field name (the
// json tags of its Go structs), so that the pool manager can adopt the pool and layers they name:
//
//   <home>/metadata/<hash>, .../base       {"device_id", "size", "transaction_id", "initialized", "deleted"}
//   <home>/metadata/deviceset-metadata     {"next_device_id", "BaseDeviceUUID", "BaseDeviceFilesystem"}
//   <home>/metadata/transaction-metadata   {"open_transaction_id", "device_hash", "device_id"}
//   <home>/devicemapper/json               the older single file: {"Devices": {<hash>: <device>}},
//                                          the base under "" (Docker moves it into per-device files
//                                          and renames it json.migrated on start)
//
// Docker keeps the pool's transaction id in the pool alone (thin-pool status), never in a file; a
// device's transaction_id is the pool's id once its create was committed. next_device_id is the
// last thin id Docker handed out (it increments before use) and is saved only with the base's UUID
// and at shutdown, so it may be behind: the ids in use are those of the device files. A device
// whose delete found it busy (deferred deletion) keeps its file with "deleted": true and its thin
// id in the pool. transaction-metadata is left behind by every transaction: it names an open one
// only while open_transaction_id is past the pool's transaction id.
//
// Go's encoding/json matches a key exactly, else case-insensitively, and leaves a missing or null
// field at its zero value; a field of the wrong type fails the whole file.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { THIN_ID_MAX, type ThinId } from '../dm/names.js';
import { bytes } from '../structs/units.js';
import { MetadataError } from './errors.js';
import { BASE_HASH, type DeviceRecord, INTENT_FILE, POOL_STATE_FILE, readJson, validateHash } from './metadata-store.js';

/** The older single metadata file, in the loop files' folder. */
export const DOCKER_LEGACY_FILE = 'json';
/** The suffix Docker gives the legacy file once migrated (and skips in the metadata folder). */
export const DOCKER_MIGRATED_SUFFIX = '.migrated';
const BASE_FILE = 'base';

/** One of Docker's devInfo records: the fields of ours but the base's file system. */
export type DockerDevice = Omit<DeviceRecord, 'filesystem'>;

/** Docker's transaction record: the last transaction it opened. */
export interface DockerTransaction {
  openTransactionId: bigint;
  deviceHash: string;
  deviceId: ThinId;
}

/** Everything Docker's files say about its pool. */
export interface DockerMetadata {
  /** hash -> device ('' = the base): the per-device files, with the legacy file's entries over them. */
  devices: Map<string, DockerDevice>;
  /** <home>/devicemapper/json was there (not yet migrated). */
  legacy: boolean;
  /** next_device_id: the last id handed out; 0 when deviceset-metadata is missing. */
  nextDeviceId: ThinId;
  /** BaseDeviceFilesystem, when it is a file system the pool manager mounts. */
  baseFilesystem?: 'ext4' | 'xfs';
  /** deviceset-metadata's other fields (BaseDeviceUUID, BaseDeviceFilesystem), verbatim. */
  deviceSetFields: Record<string, unknown>;
  transaction: DockerTransaction | null;
}

/** A field as Go's encoding/json finds it: the exact key, else one equal to it ignoring case. */
function goField(o: Record<string, unknown>, key: string): unknown {
  if (Object.hasOwn(o, key)) return o[key];
  const lower = key.toLowerCase();
  const found = Object.keys(o).find((k) => k.toLowerCase() === lower);
  return found === undefined ? undefined : o[found];
}

/** A Go integer field (int or uint64): missing or null is 0; anything but a whole number fails. */
function goUint(path: string, o: Record<string, unknown>, key: string): number {
  const v = goField(o, key);
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new MetadataError(path, `${key} is not a non-negative integer`);
  return v;
}

function goThinId(path: string, o: Record<string, unknown>, key: string): ThinId {
  const v = goUint(path, o, key);
  // Docker refuses such a file too (loadMetadata: "Ignoring Invalid DeviceId"), failing its start.
  if (v > THIN_ID_MAX) throw new MetadataError(path, `${key} ${v} is over 24 bits`);
  return v as ThinId;
}

function goBool(path: string, o: Record<string, unknown>, key: string): boolean {
  const v = goField(o, key);
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw new MetadataError(path, `${key} is not a boolean`);
  return v;
}

function goString(path: string, o: Record<string, unknown>, key: string): string {
  const v = goField(o, key);
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new MetadataError(path, `${key} is not a string`);
  return v;
}

function checkedHash(path: string, hash: string): string {
  if (hash === BASE_HASH) return hash;
  try {
    return validateHash(hash);
  } catch (e) {
    throw new MetadataError(path, `names a device the pool manager cannot hold: ${(e as Error).message}`);
  }
}

/** One devInfo object (a per-device file, or an entry of the legacy file). */
export function parseDockerDevice(path: string, hash: string, v: unknown): DockerDevice {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new MetadataError(path, `the record of ${JSON.stringify(hash)} is not a JSON object`);
  const o = v as Record<string, unknown>;
  return {
    hash: checkedHash(path, hash),
    deviceId: goThinId(path, o, 'device_id'),
    sizeBytes: bytes(goUint(path, o, 'size')),
    transactionId: BigInt(goUint(path, o, 'transaction_id')),
    initialized: goBool(path, o, 'initialized'),
    deleted: goBool(path, o, 'deleted'),
  };
}

/** The legacy single file's devices: {"Devices": {<hash>: <device>}}. */
export function parseDockerLegacy(path: string, o: Record<string, unknown>): DockerDevice[] {
  const devices = goField(o, 'Devices');
  if (devices === undefined || devices === null) return [];
  if (typeof devices !== 'object' || Array.isArray(devices)) throw new MetadataError(path, 'Devices is not a JSON object');
  return Object.entries(devices as Record<string, unknown>).map(([hash, rec]) => parseDockerDevice(path, hash, rec));
}

export function parseDockerTransaction(path: string, o: Record<string, unknown>): DockerTransaction {
  return {
    openTransactionId: BigInt(goUint(path, o, 'open_transaction_id')),
    deviceHash: checkedHash(path, goString(path, o, 'device_hash')),
    deviceId: goThinId(path, o, 'device_id'),
  };
}

/** The names in the metadata folder Docker reads as device files. */
export function dockerDeviceFiles(metaDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(metaDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  return names
    .filter((n) => !n.startsWith('.') && !n.endsWith(DOCKER_MIGRATED_SUFFIX) && n !== POOL_STATE_FILE && n !== INTENT_FILE)
    .filter((n) => statSync(join(metaDir, n)).isFile())
    .sort();
}

/** Read Docker's metadata of `home` (which must be a Docker home: see docker-home.ts). */
export function readDockerMetadata(home: string): DockerMetadata {
  const metaDir = join(home, 'metadata');
  const devices = new Map<string, DockerDevice>();
  for (const name of dockerDeviceFiles(metaDir)) {
    const path = join(metaDir, name);
    const hash = name === BASE_FILE ? BASE_HASH : name;
    devices.set(hash, parseDockerDevice(path, hash, readJson(path)));
  }
  // As Docker's migration: the legacy file's entries are written over the per-device files.
  const legacyPath = join(home, 'devicemapper', DOCKER_LEGACY_FILE);
  const legacy = readJson(legacyPath);
  if (legacy !== null) for (const d of parseDockerLegacy(legacyPath, legacy)) devices.set(d.hash, d);

  const dsPath = join(metaDir, POOL_STATE_FILE);
  const ds = readJson(dsPath) ?? {};
  const deviceSetFields = Object.fromEntries(Object.entries(ds).filter(([k]) => k.toLowerCase() !== 'next_device_id'));
  const fs = goString(dsPath, ds, 'BaseDeviceFilesystem');

  const txPath = join(metaDir, INTENT_FILE);
  const tx = readJson(txPath);
  const out: DockerMetadata = {
    devices,
    legacy: legacy !== null,
    nextDeviceId: goThinId(dsPath, ds, 'next_device_id'),
    deviceSetFields,
    transaction: tx === null ? null : parseDockerTransaction(txPath, tx),
  };
  if (fs === 'ext4' || fs === 'xfs') out.baseFilesystem = fs;
  return out;
}
