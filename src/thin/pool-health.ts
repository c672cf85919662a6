// The pool's health and space as the kernel reports them (thin-pool status): the checks before a
// new device, the status callers print, and the transaction protocol's view of the pool.
import type { DeviceMapper } from '../dm/device-mapper.js';
import { parseThinPoolStatus, type ThinPoolStatus } from '../dm/status/thin-pool.js';
import { createSnap, createThin, deleteThin, setTransactionId } from '../dm/thin-messages.js';
import type { DeviceName } from '../dm/names.js';
import { type Bytes, bytes } from '../structs/units.js';
import { PoolSpaceError, PoolStateError } from './errors.js';
import { METADATA_BLOCK_BYTES, type PoolDevices } from './pool-setup.js';
import type { PoolMessenger } from './transaction.js';

export interface DiskUsage {
  usedBytes: Bytes;
  totalBytes: Bytes;
}

export interface PoolStatus {
  poolName: DeviceName;
  dataFile: string;
  metadataFile: string;
  dataDevice: string;
  metadataDevice: string;
  data: DiskUsage;
  metadata: DiskUsage;
  /** The pool's data block size in bytes (Docker calls it SectorSize). */
  sectorSizeBytes: Bytes;
  transactionId: bigint;
  state: ThinPoolStatus['state'];
  mode?: 'rw' | 'ro' | 'out_of_data_space';
  needsCheck?: boolean;
}

export function readPoolStatus(dm: DeviceMapper, poolName: DeviceName): ThinPoolStatus {
  const line = dm.status({ name: poolName })[0];
  if (line?.type !== 'thin-pool') throw new PoolStateError(poolName, 'has no thin-pool target');
  return parseThinPoolStatus(line.params);
}

export function poolStatusOf(dm: DeviceMapper, pool: PoolDevices, transactionId: bigint): PoolStatus {
  const s = readPoolStatus(dm, pool.poolName);
  const out: PoolStatus = {
    poolName: pool.poolName,
    dataFile: pool.dataFile ?? '',
    metadataFile: pool.metadataFile ?? '',
    dataDevice: pool.dataDevice,
    metadataDevice: pool.metadataDevice,
    data: { usedBytes: bytes(0), totalBytes: bytes(0) },
    metadata: { usedBytes: bytes(0), totalBytes: bytes(0) },
    sectorSizeBytes: pool.dataBlockSizeBytes,
    transactionId,
    state: s.state,
  };
  if (s.state === 'ok') {
    const block = pool.dataBlockSizeBytes;
    const meta = BigInt(METADATA_BLOCK_BYTES);
    out.data = { usedBytes: bytes(s.usedDataBlocks * block), totalBytes: bytes(s.totalDataBlocks * block) };
    out.metadata = { usedBytes: bytes(s.usedMetadataBlocks * meta), totalBytes: bytes(s.totalMetadataBlocks * meta) };
    out.mode = s.mode;
    out.needsCheck = s.needsCheck;
  }
  return out;
}

/** Before a create: the pool must be healthy, writable and (unless `minFreePercent` is null) above it. */
export function checkSpace(dm: DeviceMapper, poolName: DeviceName, minFreePercent: number | null): void {
  const s = readPoolStatus(dm, poolName);
  if (s.state !== 'ok') throw new PoolStateError(poolName, `status is ${s.state}: the pool has failed`);
  if (s.needsCheck) throw new PoolStateError(poolName, 'metadata needs_check: run thin_check/thin_repair');
  if (s.mode === 'out_of_data_space') throw new PoolSpaceError(poolName, 'out of data space');
  if (s.mode === 'ro') throw new PoolStateError(poolName, 'read-only (metadata error or out of metadata space)');
  if (minFreePercent === null) return;
  const min = BigInt(minFreePercent);
  const check = (what: string, used: bigint, total: bigint) => {
    if (total === 0n) return;
    const free = total - used;
    if (free * 100n < min * total) {
      throw new PoolSpaceError(poolName, `free ${what} space ${free}/${total} blocks is under dm.min_free_space ${min}%`);
    }
  };
  check('data', s.usedDataBlocks, s.totalDataBlocks);
  check('metadata', s.usedMetadataBlocks, s.totalMetadataBlocks);
}

/** The transaction protocol's view of the pool: its status and its messages. */
export function poolMessenger(dm: DeviceMapper, poolName: DeviceName): PoolMessenger {
  const ref = { name: poolName };
  return {
    poolTransactionId: async () => {
      const s = readPoolStatus(dm, poolName);
      if (s.state !== 'ok') throw new PoolStateError(poolName, `status is ${s.state}`);
      return s.transactionId;
    },
    createThin: async (id) => createThin(dm, ref, id),
    createSnap: async (id, origin) => createSnap(dm, ref, id, origin),
    deleteThin: async (id) => deleteThin(dm, ref, id),
    setTransactionId: async (o, n) => setTransactionId(dm, ref, o, n),
  };
}
