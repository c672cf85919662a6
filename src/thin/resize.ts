// Growing a pool on loop files: the data file, its loop device's capacity, then the pool's table
// (loaded into the inactive slot and swapped in by suspend + resume).
import { statSync, truncateSync } from 'node:fs';
import type { DeviceMapper } from '../dm/device-mapper.js';
import { isThinPoolTarget } from '../dm/targets.js';
import { findLoopByFile, setLoopCapacity } from '../loop/index.js';
import { type Bytes, bytes } from '../structs/units.js';
import { OptionError, PoolStateError } from './errors.js';
import { poolTable, type PoolDevices } from './pool-setup.js';

/** Grow the loop data file to `sizeBytes` and the pool with it. */
export async function resizePool(dm: DeviceMapper, pool: PoolDevices, sizeBytes: Bytes): Promise<void> {
  const file = pool.dataFile;
  const poolName = pool.poolName;
  if (!file || !pool.owned) throw new OptionError('resizePool', String(sizeBytes), 'only a pool on loop files can be resized');
  const current = bytes(statSync(file, { bigint: true }).size);
  if (typeof sizeBytes !== 'bigint' || sizeBytes % pool.dataBlockSizeBytes !== 0n) {
    throw new OptionError('resizePool', String(sizeBytes), `must be a multiple of the pool block size ${pool.dataBlockSizeBytes}`);
  }
  if (sizeBytes <= current)
    throw new OptionError('resizePool', String(sizeBytes), `the data file is already ${current} bytes; it can only grow`);
  const loop = (await findLoopByFile(file))[0];
  if (!loop) throw new PoolStateError(poolName, `no loop device backs ${file}`);
  truncateSync(file, Number(sizeBytes));
  setLoopCapacity(loop);
  const t = dm.table({ name: poolName })[0];
  if (!t || !isThinPoolTarget(t)) throw new PoolStateError(poolName, `the pool's table is not a thin-pool (table: ${t?.type ?? 'none'})`);
  const table = poolTable(t.metadataDevice, t.dataDevice, sizeBytes, pool.dataBlockSizeBytes);
  table.features = t.features;
  table.lowWaterMarkBlocks = t.lowWaterMarkBlocks;
  dm.loadTable({ name: poolName }, [table]);
  await dm.suspend({ name: poolName });
  await dm.resume({ name: poolName });
}
