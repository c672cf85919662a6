// Shared by the thin/driver kernel tests: small pools in throwaway homes, dmsetup as an
// independent oracle, the thin ids a pool holds (read from its metadata), and a sweeper.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { beforeAll } from 'vitest';
import { requireDeviceMapper, sweep as sweepDevices } from './support/env.js';
import { deviceName } from '../../src/dm/names.js';
import { parseThinPoolStatus } from '../../src/dm/status/thin-pool.js';
import { isThinPoolTarget } from '../../src/dm/targets.js';
import { metadataReadPath, withMetadataSnapshot } from '../../src/thin/index.js';
import { readThinDevices, withMetadataBlocks, type MetadataBlocks, type ThinDeviceInfo } from '../../src/thin/metadata/index.js';

/**
 * Called at the top of each thin/driver test file: the tier's precondition as a failing hook, never
 * a skip (support/env.ts requireDeviceMapper says what is missing).
 */
export function requireKernelTier(): void {
  beforeAll(() => requireDeviceMapper());
}

/** Small sizes: 256 MiB sparse data, 16 MiB metadata, 64 MiB base; every dm name starts `dmtest-`. */
export const SMALL = ['dm.loopdatasize=256M', 'dm.loopmetadatasize=16M', 'dm.basesize=64M', 'dm.prefix=dmtest', 'dm.min_free_space=0%'];

export function newHome(tag = 'thin'): string {
  return mkdtempSync(join(tmpdir(), `dmtest-${tag}-`));
}

export function dmsetup(...args: string[]): string {
  return execFileSync('dmsetup', args, { encoding: 'utf8' }).trim();
}

/** Remove every dm device named dmtest-* (dependents first), keeping the loop devices. */
export async function sweep(): Promise<void> {
  // The tier's one sweeper (support/env.ts): dependents first, suspended devices resumed first.
  await sweepDevices({ loops: false });
}

/** What a live pool's metadata holds, read by our reader (src/thin/metadata). */
export interface PoolThins {
  /** The transaction id of the roots read (what set_transaction_id last committed). */
  transactionId: bigint;
  /** Every thin device, ascending thin id. */
  devices: ThinDeviceInfo[];
  /** 'held': read through a metadata snapshot; 'superblock': a read-only pool's committed roots. */
  root: 'held' | 'superblock';
}

/**
 * The thin devices of the live pool `poolName`, exactly: `reserve_metadata_snap` (the kernel commits
 * and freezes a copy of its roots), our reader over the metadata loop device's backing file through
 * the held roots, `release_metadata_snap` always (withMetadataSnapshot). A read-only pool refuses
 * the message and commits nothing while read-only: its committed roots are read as they are. The
 * table and the messages go through `dm`, or a DeviceMapper of its own when none is given.
 */
export function thinDevicesOf(poolName: string, dm?: DeviceMapper): PoolThins {
  const own = dm ? null : DeviceMapper.open({ udev: 'off' });
  const d = (dm ?? own)!;
  try {
    const ref = { name: deviceName(poolName) };
    const t = d.table(ref)[0];
    if (!t || !isThinPoolTarget(t)) throw new Error(`${poolName} is not a thin-pool: ${t?.type ?? 'no table'}`);
    const path = metadataReadPath(t.metadataDevice);
    const status = parseThinPoolStatus(d.status(ref)[0]!.params);
    if (status.state !== 'ok') throw new Error(`${poolName} is ${status.state}: its metadata cannot be read live`);
    const read = (blocks: MetadataBlocks, root: 'held' | 'superblock'): PoolThins => {
      const md = readThinDevices(blocks, { root });
      return { transactionId: md.roots.transactionId, devices: md.devices, root };
    };
    if (status.mode === 'ro') {
      return withMetadataBlocks(path, (blocks) => read(blocks, 'superblock'));
    }
    return withMetadataSnapshot(d, ref, path, (blocks) => read(blocks, 'held'));
  } finally {
    own?.close();
  }
}

/** Every thin id the live pool `poolName` holds, ascending (thinDevicesOf). */
export function thinIdsOf(poolName: string, dm?: DeviceMapper): number[] {
  return thinDevicesOf(poolName, dm).devices.map((x) => x.thinId);
}

/** The mount at `path`: its file system type and its super options, from /proc/self/mountinfo. */
export function mountAt(path: string): { fsType: string; superOptions: string[] } {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (left?.split(' ')[4] !== path || right === undefined) continue;
    const [fsType, , superOptions] = right.split(' ');
    return { fsType: fsType!, superOptions: (superOptions ?? '').split(',') };
  }
  throw new Error(`${path} is not mounted`);
}
