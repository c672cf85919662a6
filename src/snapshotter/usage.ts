// Usage: what a snapshot holds beyond its parent, from the pool's own metadata. A thin snapshot
// starts sharing every mapping of its origin; a write remaps the virtual block to a new data
// block. So its usage is the blocks it maps where its parent (the base, for a parentless one) maps
// nothing or another data block, times the pool's block size. Read through a metadata snapshot
// (the kernel rewrites the live btrees), synchronously: nothing else of ours runs meanwhile.
import type { DeviceMapper } from '../dm/index.js';
import { type DeviceSet, forEachMapping, metadataReadPath, readThinDevices, withMetadataSnapshot } from '../thin/index.js';
import { SnapshotError } from './errors.js';

/** Blocks of `mapping` whose data block differs from `parent`'s at the same virtual block. */
export function differingBlocks(child: Iterable<[number, number]>, parent: ReadonlyMap<number, number>): number {
  let n = 0;
  for (const [vblock, dblock] of child) if (parent.get(vblock) !== dblock) n++;
  return n;
}

export function snapshotUsage(dm: DeviceMapper, set: DeviceSet, id: string, parentId: string): bigint {
  const records = set.deviceRecords();
  const thinOf = (hash: string): number => {
    const r = records.find((d) => d.hash === hash && !d.deleted);
    if (!r) throw new SnapshotError('NotFound', `the pool has no device ${hash}`);
    return r.deviceId;
  };
  const thin = thinOf(id);
  const parentThin = thinOf(parentId);
  const status = set.status();
  const path = status.metadataFile !== '' ? status.metadataFile : metadataReadPath(status.metadataDevice);
  const blocks = withMetadataSnapshot(dm, { name: set.poolName }, path, (md) => {
    const { roots } = readThinDevices(md, { root: 'held' });
    const parent = new Map<number, number>();
    forEachMapping(md, roots, parentThin, (v, d) => parent.set(v, d));
    const child: [number, number][] = [];
    forEachMapping(md, roots, thin, (v, d) => child.push([v, d]));
    return differingBlocks(child, parent);
  });
  return BigInt(blocks) * status.sectorSizeBytes;
}
