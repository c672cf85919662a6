// Growing a pool on loop files: the data file, its loop device's capacity, then the pool's table
// (loaded into the inactive slot and swapped in by suspend + resume). A failure never leaves the
// pool suspended or a table waiting in its inactive slot: the old table is resumed.
import { closeSync, fsyncSync, ftruncateSync, openSync, statSync } from 'node:fs';
import type { DeviceMapper } from '../dm/device-mapper.js';
import { isThinPoolTarget } from '../dm/targets.js';
import { findLoopByFile, setLoopCapacity } from '../loop/index.js';
import { type Bytes, bytes, sectorsToBytes } from '../structs/units.js';
import type { CrashHook } from './crash-points.js';
import { OptionError, PoolStateError } from './errors.js';
import { poolTable, type PoolDevices } from './pool-setup.js';

/**
 * Grow the pool to `sizeBytes`, the loop data file with it. Compared with the pool's own length,
 * so a resize that failed after growing the file can be run again.
 */
export async function resizePool(dm: DeviceMapper, pool: PoolDevices, sizeBytes: Bytes, step: CrashHook = () => {}): Promise<void> {
  const file = pool.dataFile;
  const poolName = pool.poolName;
  if (!file || !pool.owned) throw new OptionError('resizePool', String(sizeBytes), 'only a pool on loop files can be resized');
  if (typeof sizeBytes !== 'bigint' || sizeBytes % pool.dataBlockSizeBytes !== 0n) {
    throw new OptionError('resizePool', String(sizeBytes), `must be a multiple of the pool block size ${pool.dataBlockSizeBytes}`);
  }
  const t = dm.table({ name: poolName })[0];
  if (!t || !isThinPoolTarget(t)) throw new PoolStateError(poolName, `the pool's table is not a thin-pool (table: ${t?.type ?? 'none'})`);
  const current = sectorsToBytes(t.lengthSectors);
  if (sizeBytes <= current)
    throw new OptionError('resizePool', String(sizeBytes), `the pool is already ${current} bytes; it can only grow`);
  const loop = (await findLoopByFile(file))[0];
  if (!loop) throw new PoolStateError(poolName, `no loop device backs ${file}`);
  if (bytes(statSync(file, { bigint: true }).size) < sizeBytes) growFile(file, sizeBytes);
  step('resize:file-grown');
  setLoopCapacity(loop);
  step('resize:loop-capacity');
  const table = poolTable(t.metadataDevice, t.dataDevice, sizeBytes, pool.dataBlockSizeBytes);
  table.features = t.features;
  table.lowWaterMarkBlocks = t.lowWaterMarkBlocks;
  dm.loadTable({ name: poolName }, [table]);
  try {
    step('resize:table-loaded');
    await dm.suspend({ name: poolName });
    step('resize:suspended');
    await dm.resume({ name: poolName });
  } catch (e) {
    throw await restoreLive(dm, poolName, e);
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

/** After a failed swap: drop the grown table, then resume the live one; what could not be done is added to `e`. */
async function restoreLive(dm: DeviceMapper, poolName: PoolDevices['poolName'], e: unknown): Promise<unknown> {
  const left: string[] = [];
  try {
    const info = dm.info({ name: poolName });
    if (info?.inactiveTable) dm.clearTable({ name: poolName });
    // Resumed only once the grown table is gone: the pool keeps its size, nothing is half-swapped.
    if (info?.suspended) await dm.resume({ name: poolName });
  } catch (err) {
    left.push(`the pool could not be restored (${(err as Error).message}); the next open resumes it`);
  }
  if (left.length > 0 && e instanceof Error) e.message += `; ${left.join('; ')}`;
  return e;
}
